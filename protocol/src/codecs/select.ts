/**
 * Top-k selection by magnitude in O(n) average time (quickselect with a three-way partition, so
 * runs of equal magnitudes — e.g. the zero deltas of never-active input pixels — cost nothing
 * extra), and the error-feedback bookkeeping shared by `topk` and `topk-int8`.
 */
import { ErrorCodes, FedmqError } from '../errors.ts';
import type { NamedTensor } from '../tensor.ts';
import type { CodecState } from './types.ts';
import { checkDelta, nonFinite } from './wire.ts';

/**
 * Value at position `pos` (0-based) of `a` sorted ascending; reorders `a`. Expected O(n):
 * pseudo-random pivots from a fixed-seed xorshift (the result does not depend on the pivots).
 */
export function selectNth(a: Float32Array, pos: number): number {
  let lo = 0;
  let hi = a.length - 1;
  let seed = 0x2545f491;
  while (hi > lo) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const p = a[lo + ((seed >>> 0) % (hi - lo + 1))];
    // Three-way partition: [lo, lt) < p, [lt, gt] = p, (gt, hi] > p.
    let lt = lo;
    let gt = hi;
    let i = lo;
    while (i <= gt) {
      const v = a[i];
      if (v < p) {
        a[i] = a[lt];
        a[lt] = v;
        lt++;
        i++;
      } else if (v > p) {
        a[i] = a[gt];
        a[gt] = v;
        gt--;
      } else i++;
    }
    if (pos < lt) hi = lt - 1;
    else if (pos > gt) lo = gt + 1;
    else return p;
  }
  return a[lo];
}

/** Number of coordinates top-k keeps of a tensor of `n` values: `max(1, ceil(k·n))` (0 when n = 0), capped at n. */
export function keptCount(n: number, k: number): number {
  if (n === 0) return 0;
  // Guard ceil against floating-point noise: 0.07 × 100 = 7.000000000000001 must keep 7.
  const c = Math.ceil(k * n * (1 - 4 * Number.EPSILON));
  return Math.min(n, Math.max(1, c));
}

/**
 * Indices (strictly increasing) of the `count` largest |x|; ties at the threshold go to the lower
 * indices, so the choice is deterministic.
 */
export function topKIndices(x: Float32Array, count: number): Uint32Array {
  const n = x.length;
  const idx = new Uint32Array(count);
  if (count === 0) return idx;
  if (count === n) {
    for (let i = 0; i < n; i++) idx[i] = i;
    return idx;
  }
  const mags = new Float32Array(n);
  for (let i = 0; i < n; i++) mags[i] = Math.abs(x[i]);
  const threshold = selectNth(mags, n - count);
  let above = 0;
  for (let i = 0; i < n; i++) if (Math.abs(x[i]) > threshold) above++;
  let ties = count - above;
  let j = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs(x[i]);
    if (a > threshold || (a === threshold && ties-- > 0)) idx[j++] = i;
  }
  return idx;
}

/**
 * `fround(delta + residual)` for one tensor, the residual taken from `state` (zeros when none).
 * Does not modify `state`.
 * @throws FedmqError FEDMQ_BAD_TENSOR / FEDMQ_NON_FINITE on a bad delta or sum;
 *   FEDMQ_MODEL_MISMATCH when the stored residual has another length.
 */
export function corrected(t: NamedTensor, state: CodecState | undefined): Float32Array {
  const n = checkDelta(t);
  const r = state?.residual?.get(t.name);
  const c = new Float32Array(n);
  if (r === undefined) {
    c.set(t.data);
    return c;
  }
  if (r.length !== n) {
    throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${JSON.stringify(t.name)}: stored residual has ${r.length} values, delta ${n}`, { name: t.name });
  }
  const d = t.data;
  for (let i = 0; i < n; i++) {
    const v = (c[i] = d[i] + r[i]);
    if (!Number.isFinite(v)) throw nonFinite(t.name, i);
  }
  return c;
}
