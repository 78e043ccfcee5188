/**
 * Process settings of `fedmq node` for constrained devices (docs/scale.md, "Edge footprint"),
 * applied by entry.ts before the node's modules load.
 */
import { setFlagsFromString } from 'node:v8';

/** What {@link tuneForEdge} changed. */
export interface EdgeTuning {
  /** Node's source-map cache was turned off. */
  sourceMapsOff: boolean;
  /** V8's young generation was kept at its initial size. */
  youngGenerationCapped: boolean;
}

/**
 * Lowers the node process's memory without changing what it computes:
 *
 * - Node's source-map cache off: tsx turns source maps on, and Node then parses and keeps the map
 *   of every module it loads (tfjs ships multi-megabyte maps); stack traces then name the
 *   transpiled lines instead of the .ts ones. Kept on when `--enable-source-maps` is given (on
 *   the command line or in `NODE_OPTIONS`).
 * - V8's young generation kept at its initial size (`--semi-space-growth-factor=1`): by default it
 *   grows to 2 × 16 MiB semi-spaces while modules load and training allocates, and stays there.
 *   Minor GCs become more frequent; each one is smaller. Left alone when `--max-semi-space-size`
 *   is given.
 *
 * Call it before importing anything large: a grown young generation does not shrink back.
 */
export function tuneForEdge(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): EdgeTuning {
  const given = (flag: string) => execArgv.some((a) => a.startsWith(flag)) || nodeOptions.includes(flag);
  const sourceMapsOff = !given('--enable-source-maps');
  if (sourceMapsOff) process.setSourceMapsEnabled(false);
  const youngGenerationCapped = !given('--max-semi-space-size');
  if (youngGenerationCapped) setFlagsFromString('--semi-space-growth-factor=1');
  return { sourceMapsOff, youngGenerationCapped };
}
