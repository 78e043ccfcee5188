/**
 * Process settings of `fedmq node` for constrained devices (docs/scale.md, "Edge footprint"),
 * applied by entry.ts before the node's modules load.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

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

/**
 * V8's full garbage collection as a function, without starting Node with `--expose-gc` (the flag
 * set at run time, `gc` taken from a fresh context). `fedmq node` runs it once after each answer
 * it published: the model-sized buffers of a round (the received model, the trained weights, the
 * encoded update) outlive several minor GCs while the round runs, and V8 would collect them only
 * after some 64 MB of them had piled up (its external-memory soft limit), round after round.
 * A full GC of the node's heap takes tens of milliseconds, once per round.
 */
export function fullGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
