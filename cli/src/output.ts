import prettyBytes from 'pretty-bytes';
import type { PrivacyRecord, RoundRecord } from '@fedmq/protocol';

const COLS = ['round', 'nodes', 'train loss', 'test acc', 'bytes down', 'bytes up', 'seconds'] as const;
const WIDTHS = [5, 7, 10, 8, 10, 10, 7];
/** With federated evaluation: the weighted accuracy on the nodes' held-out data and its 10th–90th percentile spread. */
const FED_COLS = ['fed acc', 'p10–p90'] as const;
const FED_WIDTHS = [7, 11];

/** What the round table shows besides the fixed columns. */
export interface RoundTableOptions {
  /** Federated evaluation columns. */
  federated?: boolean;
}

/** Header of the round table. */
export function roundHeader(o: RoundTableOptions = {}): string {
  const cols: readonly string[] = o.federated ? [...COLS.slice(0, 4), ...FED_COLS, ...COLS.slice(4)] : COLS;
  const widths = o.federated ? [...WIDTHS.slice(0, 4), ...FED_WIDTHS, ...WIDTHS.slice(4)] : WIDTHS;
  return cols.map((c, i) => c.padStart(widths[i])).join('  ');
}

/** 3 significant digits, no trailing zeros (`2.31`, `3`); `∞` for null. As `formatEpsilon` of the monitor's terminal format. */
const sig3 = (x: number | null) => (x === null ? '∞' : String(Number(x.toPrecision(3))));

/**
 * The privacy budget spent after a round, as the monitor's round summary writes it:
 * `ε 2.31 (δ 1e-5)`, `ε 2.31/3 (δ 1e-5)` with a budget, `ε ∞ (δ 1e-5)` while unbounded.
 */
export function privacyCell(p: PrivacyRecord): string {
  return `ε ${sig3(p.epsilon)}${p.maxEpsilon !== null ? `/${sig3(p.maxEpsilon)}` : ''} (δ ${Number(p.delta.toPrecision(3)).toExponential()})`;
}

/**
 * One line of the round table: round, reported/selected (`!` when the round failed and is
 * retried), mean train loss, test accuracy, bytes, seconds; with differential privacy the
 * budget spent after the round ({@link privacyCell}) after the last column (it has no header:
 * the header is printed before the first round).
 */
export function roundLine(r: RoundRecord, o: RoundTableOptions = {}): string {
  const cells = [
    String(r.round),
    `${r.reported}/${r.selected}${r.accepted ? '' : '!'}`,
    r.trainLoss === null ? '-' : r.trainLoss.toFixed(4),
    r.testAccuracy === null ? '-' : r.testAccuracy.toFixed(4),
    prettyBytes(r.bytesDown),
    prettyBytes(r.bytesUp),
    (r.durationMs / 1000).toFixed(1),
  ];
  let widths = WIDTHS;
  if (o.federated) {
    const f = r.federatedEval;
    cells.splice(4, 0, f ? f.accuracy.toFixed(4) : '-', f ? `${f.accuracySpread.p10.toFixed(2)}–${f.accuracySpread.p90.toFixed(2)}` : '-');
    widths = [...WIDTHS.slice(0, 4), ...FED_WIDTHS, ...WIDTHS.slice(4)];
  }
  let line = cells.map((c, i) => c.padStart(widths[i])).join('  ');
  if (r.privacy) line = `${line}  ${privacyCell(r.privacy)}`;
  return r.secagg ? `${line}  ${secaggCell(r.secagg)}` : line;
}

/**
 * A secure-aggregation round in one cell: each stage's cohort (answered/sent) and seconds, e.g.
 * `secagg k=19 t=10 b=21: keys 20/20 0.2s, shares 20/20 0.3s, masked 20/20 2.9s, unmask 20/20 0.1s` (+ `recovered N`, or the abort code).
 */
export function secaggCell(s: NonNullable<RoundRecord['secagg']>): string {
  const name: Record<string, string> = { 'advertise-keys': 'keys', 'share-keys': 'shares', fit: 'masked', unmask: 'unmask', aggregate: 'sum' };
  const stages = s.stages.map((x) => `${name[x.stage] ?? x.stage} ${x.answered}/${x.cohort} ${(x.durationMs / 1000).toFixed(1)}s`).join(', ');
  const tail = s.aborted ? ` — aborted ${s.aborted}` : s.recovered > 0 ? `, recovered ${s.recovered}` : '';
  return `secagg k=${s.neighbours} t=${s.threshold} b=${s.bits}: ${stages}${tail}`;
}
