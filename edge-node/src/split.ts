import { ErrorCodes, FedmqError, fnv1a32 } from '@fedmq/protocol';
import { createRng, permutation, subset, type LocalDataset } from '@fedmq/ml';

/**
 * A node's held-out split (protocol v2, docs/protocol.md §5.4, "valFraction"): the examples it
 * evaluates on and never trains on, and the examples it trains on.
 */
export interface DataSplit {
  /** Examples trained on: the node's examples minus the held-out ones, in their original order. With valFraction 0, the node's dataset object itself. */
  train: LocalDataset;
  /** Held-out examples, in permutation order; `undefined` when none are held out (valFraction 0, or fewer than 2 examples). */
  heldOut: LocalDataset | undefined;
}

/** 32-bit FNV-1a of a node id (@fedmq/protocol's `fnv1a32`): seeds a node's training shuffles and its held-out split. */
export const fnv1a: (s: string) => number = fnv1a32;

/**
 * How many of `numExamples` examples a node holds out for `valFraction`: `Math.round(f · n)`,
 * clamped to [1, n − 1] when f > 0 and n ≥ 2; 0 when f = 0 or n < 2.
 * @throws FedmqError FEDMQ_BAD_CONFIG when `valFraction` is not in [0, 1) or `numExamples` is not a non-negative integer.
 */
export function heldOutCount(numExamples: number, valFraction: number): number {
  if (!(Number.isFinite(valFraction) && valFraction >= 0 && valFraction < 1)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `valFraction must be in [0, 1), got ${valFraction}`, { valFraction });
  }
  if (!(Number.isSafeInteger(numExamples) && numExamples >= 0)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `numExamples must be a non-negative integer, got ${numExamples}`, { numExamples });
  }
  if (valFraction === 0 || numExamples < 2) return 0;
  return Math.min(numExamples - 1, Math.max(1, Math.round(valFraction * numExamples)));
}

/**
 * The indices of a node's held-out and training splits (docs/protocol.md §5.4): the permutation
 * `permutation(n, createRng(fnv1a(nodeId)))` of `@fedmq/ml` (Fisher–Yates from the last index,
 * j = ⌊u·(i + 1)⌋, u from mulberry32 on the mixed seed of `createRng`) — its first
 * {@link heldOutCount} entries are held out, in permutation order; the rest train, in ascending
 * (original) order. Fixed per node id and dataset size: the same on every run and platform.
 * @throws FedmqError FEDMQ_BAD_CONFIG as {@link heldOutCount}.
 */
export function splitIndices(nodeId: string, numExamples: number, valFraction: number): { heldOut: Int32Array; train: Int32Array } {
  const k = heldOutCount(numExamples, valFraction);
  if (k === 0) return { heldOut: new Int32Array(0), train: Int32Array.from({ length: numExamples }, (_, i) => i) };
  const perm = permutation(numExamples, createRng(fnv1a(nodeId)));
  const heldOut = perm.slice(0, k);
  const isHeldOut = new Uint8Array(numExamples);
  for (const i of heldOut) isHeldOut[i] = 1;
  const train = new Int32Array(numExamples - k);
  let j = 0;
  for (let i = 0; i < numExamples; i++) if (!isHeldOut[i]) train[j++] = i;
  return { heldOut, train };
}

/**
 * Splits a node's dataset by {@link splitIndices}. With valFraction 0 (or fewer than 2
 * examples) `train` is `data` itself, unchanged, so training is bit-identical to protocol v1;
 * otherwise both splits are copies (of the same kind: float32 or bytes).
 * @throws FedmqError FEDMQ_BAD_CONFIG as {@link heldOutCount}.
 */
export function splitDataset(nodeId: string, data: LocalDataset, valFraction: number): DataSplit {
  if (heldOutCount(data.numExamples, valFraction) === 0) return { train: data, heldOut: undefined };
  const { heldOut, train } = splitIndices(nodeId, data.numExamples, valFraction);
  return { train: subset(data, train), heldOut: subset(data, heldOut) };
}
