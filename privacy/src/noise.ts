import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from './random.ts';

/**
 * The continuous Gaussian noise of DP-FedAvg (McMahan et al. 2018): N(0, σ²) added to float32
 * deltas (docs/privacy.md, "Noise").
 *
 * Method: Box–Muller (Box & Muller 1958) on two independent 53-bit uniforms u1, u2 ∈ (0, 1) from
 * the CSPRNG: R = √(−2 ln u1), Θ = 2π u2, and (R cos Θ, R sin Θ) are two independent N(0, 1)
 * draws (exact in distribution over the reals). Chosen over the polar method and the Ziggurat
 * because it has no rejection loop (exactly 2 uniforms per 2 normals: the randomness consumed and
 * the control flow do not depend on the values) and is short enough to audit; its cost (a log, a
 * sqrt, a sin and a cos per pair) is milliseconds for 10^5–10^6 parameters.
 *
 * Floating point: the draws are doubles computed with V8's Math.log/sqrt/cos/sin (fdlibm ports,
 * errors of about 1 ulp), so the realized distribution is a discrete set of doubles close to, not
 * equal to, N(0, 1). Because u1 ≥ 2^-53, R ≤ √(106 ln 2) ≈ 8.57: the Gaussian beyond that radius
 * (probability exactly 2^-53 per pair for the true R) is missing. Mironov 2012 ("On Significance
 * of the Least Significant Bits for Differential Privacy", CCS 2012) showed that such
 * floating-point samplers can leak the unnoised value through which outputs are representable or
 * reachable; this module does NOT defend against that attack, and docs/privacy.md says exactly
 * what is and is not done (the exact integer path is the discrete Gaussian, discrete-gaussian.ts).
 */

const TWO_PI = 2 * Math.PI;

/**
 * One N(0, 1) draw (Box–Muller; the second value of the pair is discarded — use
 * {@link fillGaussian} or {@link addGaussianNoise} for many draws).
 * @param rng the random source (default: the process CSPRNG)
 * @returns a double, |value| ≤ 8.57
 */
export function gaussian(rng: RandomSource = cryptoRandom()): number {
  const r = Math.sqrt(-2 * Math.log(rng.nextDouble()));
  return r * Math.cos(TWO_PI * rng.nextDouble());
}

/**
 * Fills `out` with independent N(0, 1) draws (Box–Muller, both values of each pair used; an odd
 * length discards the last sine). Consumes exactly 2·⌈n/2⌉ doubles (4·⌈n/2⌉ words) of `rng`.
 * @param out destination, any length
 * @param rng the random source (default: the process CSPRNG)
 */
export function fillGaussian(out: Float64Array, rng: RandomSource = cryptoRandom()): Float64Array {
  const n = out.length;
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(rng.nextDouble()));
    const theta = TWO_PI * rng.nextDouble();
    out[i] = r * Math.cos(theta);
    if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

/**
 * Adds independent N(0, σ²) noise to every element of `target`, in place:
 * `target[i] ← fl32(target[i] + σ·z_i)`, where z_i ~ N(0, 1) is a double (Box–Muller, the
 * same stream as {@link fillGaussian}), the sum is computed in float64 and rounded once to
 * float32 (round-to-nearest-even) by the store. So the added noise is quantized to the float32
 * grid of the *result* (spacing 2^-23 relative to |target[i] + σz_i|); the float64 noise below that
 * is lost. See docs/privacy.md, "Noise", for what this means for Mironov's 2012 attack.
 *
 * For DP-FedAvg's central mode, `target` is the sum of the clipped deltas and σ is
 * noise multiplier × clip norm (the standard deviation per coordinate, in the deltas' units).
 *
 * @param target the float32 values to noise (any length); checked before anything is written
 * @param sigma the standard deviation, finite and ≥ 0 (0 leaves `target` unchanged and draws nothing)
 * @param rng the random source (default: the process CSPRNG; pass a seeded stream only in tests)
 * @throws FedmqError FEDMQ_BAD_CONFIG when σ is negative or not finite; FEDMQ_NON_FINITE when
 *   `target` holds NaN/±Infinity (nothing is written), or when a noised value overflows float32
 *   (|value| > 3.4e38; `target` is then partly noised and must be discarded)
 */
export function addGaussianNoise(target: Float32Array, sigma: number, rng: RandomSource = cryptoRandom()): void {
  if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma < 0) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `noise standard deviation must be finite and ≥ 0, got ${sigma}`, { sigma });
  }
  const n = target.length;
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(target[i])) throw new FedmqError(ErrorCodes.NON_FINITE, `value ${i} to noise is ${target[i]}`, { index: i });
  }
  if (sigma === 0) return;
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(rng.nextDouble()));
    const theta = TWO_PI * rng.nextDouble();
    target[i] += sigma * (r * Math.cos(theta)); // float64 sum, one rounding to float32 on store
    if (i + 1 < n) target[i + 1] += sigma * (r * Math.sin(theta));
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(target[i])) throw new FedmqError(ErrorCodes.NON_FINITE, `noised value ${i} overflows float32`, { index: i });
  }
}
