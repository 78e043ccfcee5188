import prettyBytes from 'pretty-bytes';
import type { RoundRecord } from '@fedmq/coordinator';

const COLS = ['round', 'nodes', 'train loss', 'test acc', 'bytes down', 'bytes up', 'seconds'] as const;
const WIDTHS = [5, 7, 10, 8, 10, 10, 7];

/** Header of the round table. */
export function roundHeader(): string {
  return COLS.map((c, i) => c.padStart(WIDTHS[i])).join('  ');
}

/** One line of the round table: round, selected/reported, mean train loss, test accuracy, bytes, seconds. */
export function roundLine(r: RoundRecord): string {
  const cells = [
    String(r.round),
    `${r.reported}/${r.selected}`,
    r.trainLoss === null ? '-' : r.trainLoss.toFixed(4),
    r.testAccuracy === null ? '-' : r.testAccuracy.toFixed(4),
    prettyBytes(r.bytesDown),
    prettyBytes(r.bytesUp),
    (r.durationMs / 1000).toFixed(1),
  ];
  return cells.map((c, i) => c.padStart(WIDTHS[i])).join('  ');
}
