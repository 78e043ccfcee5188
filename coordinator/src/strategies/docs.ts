/**
 * Regenerates the strategy tables of docs/strategies.md from the descriptors:
 *
 *   npx tsx coordinator/src/strategies/docs.ts
 *
 * rewrites the region between `<!-- strategies:start -->` and `<!-- strategies:end -->` with
 * {@link strategiesMarkdown}; docs.test.ts fails when the file is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { strategiesMarkdown } from './index.ts';

/** Marker that opens the generated region. */
export const DOCS_START = '<!-- strategies:start -->';
/** Marker that closes the generated region. */
export const DOCS_END = '<!-- strategies:end -->';
/** docs/strategies.md of this repository. */
export const STRATEGIES_DOC = fileURLToPath(new URL('../../../docs/strategies.md', import.meta.url));

/**
 * `doc` with the region between the markers replaced by `markdown` (one newline after the start
 * marker and one before the end marker); the rest of the text is kept as it is.
 * @throws Error when the markers are missing, repeated or out of order.
 */
export function replaceStrategiesRegion(doc: string, markdown: string = strategiesMarkdown()): string {
  const start = doc.indexOf(DOCS_START);
  const end = doc.indexOf(DOCS_END);
  if (start < 0 || end < 0 || end < start || doc.indexOf(DOCS_START, start + 1) >= 0 || doc.indexOf(DOCS_END, end + 1) >= 0) {
    throw new Error(`expected one ${DOCS_START} followed by one ${DOCS_END}`);
  }
  return `${doc.slice(0, start + DOCS_START.length)}\n${markdown}\n${doc.slice(end)}`;
}

/**
 * Rewrites the generated region of `path` (default {@link STRATEGIES_DOC}).
 * @returns true when the file changed.
 * @throws Error as {@link replaceStrategiesRegion}, or when the file cannot be read or written.
 */
export function writeStrategiesDoc(path: string = STRATEGIES_DOC): boolean {
  const doc = readFileSync(path, 'utf8');
  const next = replaceStrategiesRegion(doc);
  if (next === doc) return false;
  writeFileSync(path, next);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const changed = writeStrategiesDoc();
  process.stdout.write(`${STRATEGIES_DOC}: ${changed ? 'regenerated' : 'already up to date'}\n`);
}
