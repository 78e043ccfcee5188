/** Output folders of the `fedmq` commands (`--out`): never written over without being asked to. */
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, FedmqError, ID_PATTERN } from '@fedmq/protocol';

/**
 * Makes `dir` ready to be written: created (with its parents) when missing, accepted when it is an
 * empty folder or `force` is set.
 * @param dir the folder (absolute or relative to the working directory).
 * @param o `force`: write into a folder that is not empty (its files of the same names are
 *   replaced); `flag`: the option named in the error (default `--out`).
 * @throws FedmqError FEDMQ_BAD_CONFIG when `dir` is a file, or a folder that is not empty and
 *   `force` is not set; nothing is written then.
 */
export async function prepareOutDir(dir: string, o: { force?: boolean; flag?: string } = {}): Promise<void> {
  const flag = o.flag ?? '--out';
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true });
    return;
  }
  if (!isDir) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${flag} ${dir} is a file, not a folder`, { dir });
  const entries = await readdir(dir);
  if (entries.length > 0 && !o.force) {
    const some = entries.slice(0, 3).join(', ') + (entries.length > 3 ? ', …' : '');
    throw new FedmqError(
      ErrorCodes.BAD_CONFIG,
      `${flag} ${dir} is not empty (${some}): give --force to write into it anyway, or another folder`,
      { dir },
    );
  }
}

/**
 * The default run folder of a job, `runs/<job>-<YYYYMMDD-HHMMSS>` (UTC), or with `-2`, `-3`, …
 * appended when a run of the same job started in the same second already has that folder.
 * @throws FedmqError FEDMQ_BAD_CONFIG when `job` is not a valid job id (see {@link assertJobId}).
 */
export function defaultRunDir(job: string, now = new Date(), root = 'runs'): string {
  assertJobId(job);
  const base = join(root, `${job}-${now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')}`);
  let dir = base;
  for (let i = 2; existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}

/**
 * Checks a job id given on the command line before anything is written: the rule of the job level
 * of every topic (`ID_PATTERN` of @fedmq/protocol: 1–64 of `A–Z a–z 0–9 _ . -`, so never a path).
 * @throws FedmqError FEDMQ_BAD_CONFIG when it is not one.
 */
export function assertJobId(job: string, flag = '--job'): void {
  if (!ID_PATTERN.test(job)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `${flag} ${JSON.stringify(job)}: a job id is 1-64 of A-Z a-z 0-9 _ . - (docs/protocol.md §2)`, { job });
  }
}
