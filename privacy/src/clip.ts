import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/**
 * L2 clipping of a whole model delta (all tensors together), the per-client clipping of
 * DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018, "Learning Differentially Private Recurrent
 * Language Models", Algorithm 1: Δ ← Δ · min(1, S/‖Δ‖)). docs/privacy.md, "Clipping".
 *
 * The guarantee is exact, in real arithmetic, on the float32 values left in the tensors:
 * √(Σ y_i²) ≤ C. A plain `x_i · C/‖x‖` does not give it: rounding each product to float32 can
 * push the norm up to 2^-24 relative above C, and the float64 norm itself carries rounding
 * error. So the target is shrunk by the margin {@link CLIP_MARGIN} = 2^-21:
 *
 * - N̂ = fl(√fl(Σ x_i²)) in float64 (each square of a float32 is exact in float64; summing
 *   n ≤ 2^30 non-negative terms errs by at most (n−1)·2^-53 relative ≤ 2^-23, the square root,
 *   the product C·(1 − 2^-21) and the division add a few 2^-53);
 * - if N̂ ≤ T = C·(1 − 2^-21) nothing is changed (then ‖x‖ ≤ T·(1 + 2^-23 + 2^-52) < C);
 * - otherwise every value is multiplied by s = T/N̂ and rounded to float32: each rounding errs by
 *   at most 2^-24 relative, or 2^-150 absolute when the result is subnormal, so
 *   ‖y‖ ≤ T·(1 + 2^-23 + 2^-52)·(1 + 2^-24 + 2^-53) + √n·2^-150, which is < C because
 *   (1 − 2^-21)(1 + 2^-23 + 2^-24 + 2^-50) < 1 − 2^-23 and √n·2^-150 ≤ 2^-135 ≤ 2^-35·C
 *   (C ≥ {@link MIN_CLIP_NORM} = 2^-100, n ≤ 2^30).
 *
 * The margin shrinks clipped deltas by a relative 4.8e-7, far below anything training notices,
 * and far below the float32 rounding of the noise that follows.
 */

/** Relative margin by which the clipping target sits below C (2^-21 ≈ 4.8e-7). */
export const CLIP_MARGIN = 2 ** -21;
/** Smallest clip norm accepted (2^-100), so float32 subnormal rounding stays inside the margin. */
export const MIN_CLIP_NORM = 2 ** -100;
/** Most values clipL2 accepts in one delta (2^30), so the float64 norm's error stays inside the margin. */
export const MAX_CLIP_ELEMENTS = 2 ** 30;

/** What {@link clipL2} measured and did. */
export interface ClipResult {
  /** ‖Δ‖₂ before clipping, in float64 (the deltas' units). */
  norm: number;
  /** The factor every value was multiplied by: 1 when not clipped, else C·(1 − 2^-21)/norm < 1. */
  scale: number;
  /**
   * True when the delta was scaled, i.e. norm > C·(1 − 2^-21). Adaptive clipping (Andrew et al.
   * 2021) needs the bit 1[‖Δ‖ ≤ C]: compute it from `norm`, not from this flag, which also
   * counts the norms in the 2^-21-wide band just below C.
   */
  clipped: boolean;
}

/**
 * Clips a delta to L2 norm at most C, in place, over all tensors together:
 * Δ ← Δ · min(1, C(1 − 2^-21)/‖Δ‖₂), with the norm computed in float64. Afterwards the float32
 * values satisfy √(Σ y_i²) ≤ C exactly (the argument is in the module comment above).
 *
 * All values are checked before any is written, so a refused delta is left untouched.
 *
 * @param tensors the delta's tensors (e.g. `NamedTensor`s); only `data` is read and written
 * @param clipNorm C, the clip norm in the deltas' units: finite, ≥ 2^-100
 * @returns the norm before clipping, the scale applied, and whether the delta was scaled
 * @throws FedmqError FEDMQ_NON_FINITE when a value is NaN or ±Infinity (details: tensor, index);
 *   FEDMQ_BAD_CONFIG when C is not a finite number ≥ 2^-100 or the delta holds more than 2^30 values
 */
export function clipL2(tensors: ReadonlyArray<{ data: Float32Array }>, clipNorm: number): ClipResult {
  if (typeof clipNorm !== 'number' || !Number.isFinite(clipNorm) || clipNorm < MIN_CLIP_NORM) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `clip norm must be a finite number ≥ 2^-100, got ${clipNorm}`, { clipNorm });
  }
  let total = 0;
  let sumSq = 0;
  for (let t = 0; t < tensors.length; t++) {
    const d = tensors[t].data;
    total += d.length;
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      if (!Number.isFinite(v)) throw new FedmqError(ErrorCodes.NON_FINITE, `delta tensor ${t} value ${i} is ${v}`, { tensor: t, index: i });
      sumSq += v * v; // exact square of a float32 in float64; ≤ 2^30 · 2^256: no overflow
    }
  }
  if (total > MAX_CLIP_ELEMENTS) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `clipL2 takes at most 2^30 values, got ${total}`, { values: total });
  }
  const norm = Math.sqrt(sumSq);
  const target = clipNorm * (1 - CLIP_MARGIN); // rounded by ≤ 2^-53 relative, inside the margin
  if (norm <= target) return { norm, scale: 1, clipped: false };
  const scale = target / norm;
  for (const { data } of tensors) {
    for (let i = 0; i < data.length; i++) data[i] *= scale;
  }
  return { norm, scale, clipped: true };
}
