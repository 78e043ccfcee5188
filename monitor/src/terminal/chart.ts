import asciichart from 'asciichart';

const BARS = '▁▂▃▄▅▆▇█';

/**
 * A one-line sparkline of `values` (one character each; the last `width` values when there are
 * more), scaled between their min and max. Non-finite values are drawn as a space.
 */
export function sparkline(values: readonly (number | null)[], width = values.length): string {
  const shown = values.slice(Math.max(0, values.length - Math.max(0, width)));
  const finite = shown.filter((x): x is number => x !== null && Number.isFinite(x));
  if (finite.length === 0) return ' '.repeat(shown.length);
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  return shown
    .map((x) => {
      if (x === null || !Number.isFinite(x)) return ' ';
      const i = max === min ? 3 : Math.round(((x - min) / (max - min)) * (BARS.length - 1));
      return BARS[i];
    })
    .join('');
}

/** Linear resampling of `values` to `n ≥ 2` points (the first and last are kept). */
export function resample(values: readonly number[], n: number): number[] {
  if (values.length < 2 || n <= values.length) return [...values];
  return Array.from({ length: n }, (_, i) => {
    const x = (i * (values.length - 1)) / (n - 1);
    const lo = Math.floor(x);
    const hi = Math.min(values.length - 1, lo + 1);
    return values[lo] + (values[hi] - values[lo]) * (x - lo);
  });
}

/**
 * A line chart (asciichart) of `values` over rounds, `height` rows high and at most `width`
 * columns wide including the 8-column axis labels; null values are dropped. Returns the lines
 * (none when there is nothing to plot).
 */
export function lineChart(values: readonly (number | null)[], opts: { width: number; height: number; decimals?: number }): string[] {
  const ys = values.filter((x): x is number => x !== null && Number.isFinite(x));
  if (ys.length === 0 || opts.width < 12 || opts.height < 2) return [];
  const labelWidth = 8;
  const plotWidth = opts.width - labelWidth - 2;
  const series = ys.length > plotWidth ? ys.slice(ys.length - plotWidth) : resample(ys, plotWidth);
  const min = Math.min(...series);
  const max = Math.max(...series);
  const pad = max === min ? Math.max(Math.abs(max) * 0.01, 1e-3) : 0;
  const d = opts.decimals ?? 3;
  const text = asciichart.plot(series, {
    height: opts.height - 1,
    min: min - pad,
    max: max + pad,
    format: (x: number) => x.toFixed(d).padStart(labelWidth - 1).slice(-(labelWidth - 1)),
  });
  return text.split('\n').map((l) => l.replace(/\s+$/, ''));
}
