import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderReport, type ReportInput } from '@fedmq/monitor';

/**
 * Writes `dir/report.html`: the run's charts, table and configuration in one self-contained page
 * (docs/dashboard.md, "Run report"), from what the coordinator recorded. Written to a temporary
 * file first and renamed, so a reader never sees half a report.
 */
export async function writeReport(dir: string, run: ReportInput): Promise<void> {
  const file = join(dir, 'report.html');
  await writeFile(`${file}.tmp`, renderReport(run));
  await rename(`${file}.tmp`, file);
}
