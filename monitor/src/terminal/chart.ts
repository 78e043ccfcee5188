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

/** ANSI colours for the series of {@link lineChart}. */
const ANSI: Record<string, string> = {
  green: '\x1b[32m', yellow: '\x1b[33m', blue: '\x1b[34m', magenta: '\x1b[35m', cyan: '\x1b[36m', red: '\x1b[31m', gray: '\x1b[90m',
};
const ANSI_RE = /\x1b\[[0-9;]*m/g;

/** Length of `s` on screen: without ANSI colour sequences. */
export function visibleLength(s: string): number {
  return s.replace(ANSI_RE, '').length;
}

/**
 * Fills the gaps of a series aligned on shared x positions: a missing value is interpolated
 * between its known neighbours and held at the ends. Null when the series has no value.
 */
function fillGaps(values: readonly (number | null)[]): number[] | null {
  const known = values.map((x, i) => [i, x] as const).filter((p): p is readonly [number, number] => p[1] !== null && Number.isFinite(p[1]));
  if (known.length === 0) return null;
  let k = 0;
  return values.map((_, i) => {
    while (k + 1 < known.length && known[k + 1][0] <= i) k++;
    const [i0, y0] = known[k];
    if (i <= i0 || k + 1 >= known.length) return y0;
    const [i1, y1] = known[k + 1];
    return y0 + ((y1 - y0) * (i - i0)) / (i1 - i0);
  });
}

/**
 * A line chart (asciichart) over rounds, `height` rows high and at most `width` columns wide
 * including the 8-column axis labels. `series` is one series or several aligned ones (index =
 * round): rounds where no series has a value are dropped, and a series' own gaps are
 * interpolated; a series with no value at all is left out. With several series, `colors`
 * (`green`, `cyan`, `yellow` …, one per series) colours them with ANSI sequences (measure lines
 * with {@link visibleLength}). Returns the lines (none when there is nothing to plot).
 */
export function lineChart(
  series: readonly (number | null)[] | readonly (readonly (number | null)[])[],
  opts: { width: number; height: number; decimals?: number; colors?: readonly string[] },
): string[] {
  const all = (series.length > 0 && Array.isArray(series[0]) ? series : [series]) as readonly (readonly (number | null)[])[];
  const length = Math.max(0, ...all.map((s) => s.length));
  const ok = (x: number | null | undefined): x is number => x !== null && x !== undefined && Number.isFinite(x);
  const xs = Array.from({ length }, (_, i) => i).filter((i) => all.some((s) => ok(s[i])));
  if (xs.length === 0 || opts.width < 12 || opts.height < 2) return [];
  const labelWidth = 8;
  const plotWidth = opts.width - labelWidth - 2;
  const lines: number[][] = [];
  const colors: (string | undefined)[] = [];
  all.forEach((s, j) => {
    const filled = fillGaps(xs.map((i) => (ok(s[i]) ? s[i] : null)));
    if (!filled) return;
    lines.push(filled.length > plotWidth ? filled.slice(filled.length - plotWidth) : resample(filled, plotWidth));
    colors.push(all.length > 1 ? ANSI[opts.colors?.[j] ?? ''] : undefined);
  });
  const min = Math.min(...lines.flat());
  const max = Math.max(...lines.flat());
  const pad = max === min ? Math.max(Math.abs(max) * 0.01, 1e-3) : 0;
  const d = opts.decimals ?? 3;
  const text = asciichart.plot(lines, {
    height: opts.height - 1,
    min: min - pad,
    max: max + pad,
    format: (x: number) => x.toFixed(d).padStart(labelWidth - 1).slice(-(labelWidth - 1)),
    ...(colors.some((c) => c !== undefined) ? { colors: colors.map((c) => c ?? '\x1b[39m') } : {}),
  });
  return text.split('\n').map((l) => l.replace(/\s+$/, ''));
}
