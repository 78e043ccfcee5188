// asciichart 1.5 ships no type declarations; this is the part the terminal monitor uses.
declare module 'asciichart' {
  /** Options of {@link plot}. */
  export interface PlotConfig {
    /** Rows of the plot area. */
    height?: number;
    min?: number;
    max?: number;
    /** Width of the label column is set by `format`/`padding`. */
    offset?: number;
    padding?: string;
    format?: (x: number, i: number) => string;
    colors?: string[];
    symbols?: string[];
  }
  /** Plots one or more series as lines of text joined by `\n`. */
  export function plot(series: number[] | number[][], cfg?: PlotConfig): string;
  const asciichart: { plot: typeof plot };
  export default asciichart;
}
