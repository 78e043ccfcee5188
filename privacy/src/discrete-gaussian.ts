import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from './random.ts';

/**
 * The exact discrete Gaussian N_Z(0, σ²): Pr[X = x] ∝ exp(−x² / (2σ²)) for x ∈ Z.
 *
 * Source: C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
 * NeurIPS 2020 (arXiv:2004.00010), §5: Algorithm 1 (Bernoulli(exp(−γ))), Algorithm 2 (discrete
 * Laplace), Algorithm 3 (discrete Gaussian by rejection from the discrete Laplace with scale
 * t = ⌊σ⌋ + 1). Written from the paper; the facts were checked against the authors' reference
 * implementation (github.com/IBM/discrete-gaussian-differential-privacy, discretegauss.py).
 *
 * Every sampling decision is exact: σ² is a rational num/den of BigInts, every Bernoulli(p) has
 * a rational p = a/b and is decided by comparing a uniform BigInt in [0, b) with a, drawn by
 * rejection from the {@link RandomSource} (no modulo bias). No floating-point number takes part
 * in a decision, so the output distribution is exactly N_Z(0, σ²), provided the random source is
 * uniform. (Running time depends on the random values, as in the paper: it leaks timing, not
 * values, and is not constant-time.)
 */

/** A non-negative rational num/den (BigInts, den > 0). Not necessarily in lowest terms. */
export interface Rational {
  num: bigint;
  den: bigint;
}

/**
 * The exact rational value of a finite non-negative double (every double is a dyadic rational
 * m·2^e, so this is lossless): e.g. 0.1 → 3602879701896397/36028797018963968.
 * @throws FedmqError FEDMQ_BAD_CONFIG when x is negative, NaN or infinite
 */
export function rationalFromNumber(x: number): Rational {
  if (!Number.isFinite(x) || x < 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `expected a finite number ≥ 0, got ${x}`, { value: x });
  let den = 1n;
  let v = x;
  // Doubling is exact (no overflow: a non-integer double is < 2^52); at most 1074 steps.
  while (!Number.isInteger(v)) {
    v *= 2;
    den *= 2n;
  }
  let num = BigInt(v);
  while (den > 1n && (num & 1n) === 0n) {
    num >>= 1n;
    den >>= 1n;
  }
  return { num, den };
}

/** ⌊√n⌋ for a BigInt n ≥ 0, exactly (Newton's method on integers). */
export function isqrt(n: bigint): bigint {
  if (n < 0n) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'isqrt of a negative number');
  if (n < 2n) return n;
  let x = 1n << BigInt(Math.ceil(n.toString(2).length / 2)); // ≥ √n
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x) return x;
    x = y;
  }
}

function toRational(sigma2: number | Rational): Rational {
  if (typeof sigma2 === 'number') return rationalFromNumber(sigma2);
  const { num, den } = sigma2;
  if (typeof num !== 'bigint' || typeof den !== 'bigint' || den <= 0n || num < 0n) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, 'σ² must be a rational {num, den} of BigInts with num ≥ 0 and den > 0');
  }
  return { num, den };
}

/** Bernoulli(a/b) for integers 0 ≤ a ≤ b, b > 0: true with probability exactly a/b. */
function bernoulli(a: bigint, b: bigint, rng: RandomSource): boolean {
  return rng.nextBigInt(b) < a;
}

/** Bernoulli(exp(−a/b)) for 0 ≤ a/b ≤ 1 (CKS 2020 Algorithm 1, first case): K ← 1; while Bernoulli(γ/K) K++; return K odd. */
function bernoulliExpSmall(a: bigint, b: bigint, rng: RandomSource): boolean {
  let k = 1n;
  while (bernoulli(a, b * k, rng)) k++;
  return (k & 1n) === 1n;
}

/**
 * Bernoulli(exp(−a/b)) for any rational γ = a/b ≥ 0 (CKS 2020 Algorithm 1): ⌊γ⌋ independent
 * Bernoulli(exp(−1)) must all succeed, then one Bernoulli(exp(−(γ − ⌊γ⌋))). Stops at the first
 * failure, so the expected work is O(1) however large γ is.
 */
export function bernoulliExp(a: bigint, b: bigint, rng: RandomSource): boolean {
  if (b <= 0n || a < 0n) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'bernoulliExp: need a ≥ 0 and b > 0');
  if (a > b) {
    const whole = a / b;
    for (let i = 0n; i < whole; i++) if (!bernoulliExpSmall(1n, 1n, rng)) return false;
    return bernoulliExpSmall(a - whole * b, b, rng);
  }
  return bernoulliExpSmall(a, b, rng);
}

/**
 * Discrete Laplace with integer scale t ≥ 1 (CKS 2020 Algorithm 2 with s = 1):
 * Pr[Y = y] = (e^{1/t} − 1)/(e^{1/t} + 1) · e^{−|y|/t}.
 */
export function discreteLaplace(t: bigint, rng: RandomSource): bigint {
  if (t < 1n) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'discreteLaplace: scale must be an integer ≥ 1');
  for (;;) {
    const u = rng.nextBigInt(t);
    if (!bernoulliExp(u, t, rng)) continue;
    let v = 0n;
    while (bernoulliExpSmall(1n, 1n, rng)) v++;
    const x = u + t * v; // geometric with parameter 1 − e^{−1/t}
    const negative = rng.nextUint32() >>> 31 === 1; // Bernoulli(1/2) from one bit
    if (negative && x === 0n) continue;
    return negative ? -x : x;
  }
}

/**
 * A sampler of N_Z(0, σ²) for one σ², with its constants precomputed (CKS 2020 Algorithm 3):
 * t = ⌊σ⌋ + 1; repeat Y ← DLap(t) until Bernoulli(exp(−(|Y| − σ²/t)² / (2σ²))). With
 * σ² = n/d the acceptance exponent is the rational (|Y|·d·t − n)² / (2·n·d·t²).
 */
export class DiscreteGaussian {
  private readonly n: bigint;
  private readonly d: bigint;
  private readonly t: bigint;
  private readonly acceptDen: bigint;
  private readonly rng: RandomSource;

  /**
   * @param sigma2 the variance parameter σ² ≥ 0 (not exactly the variance, which is slightly
   *   smaller for σ ≲ 1; see {@link discreteGaussianVariance}): a number (converted exactly by
   *   {@link rationalFromNumber}) or a rational. σ² = 0 gives the constant 0.
   * @param rng the random source; production callers leave the default CSPRNG
   * @throws FedmqError FEDMQ_BAD_CONFIG on a negative, non-finite or malformed σ²
   */
  constructor(sigma2: number | Rational, rng: RandomSource = cryptoRandom()) {
    const { num, den } = toRational(sigma2);
    this.n = num;
    this.d = den;
    this.t = isqrt(num / den) + 1n; // ⌊√(n/d)⌋ = ⌊√⌊n/d⌋⌋
    this.acceptDen = 2n * num * den * this.t * this.t;
    this.rng = rng;
  }

  /** One draw of N_Z(0, σ²), as a BigInt. */
  sample(): bigint {
    if (this.n === 0n) return 0n;
    const { n, d, t, rng } = this;
    for (;;) {
      const y = discreteLaplace(t, rng);
      const abs = y < 0n ? -y : y;
      const diff = abs * d * t - n;
      if (bernoulliExp(diff * diff, this.acceptDen, rng)) return y;
    }
  }
}

/**
 * One draw of the discrete Gaussian N_Z(0, σ²) (CKS 2020 Algorithm 3), exact.
 * @param sigma2 σ² ≥ 0 as a number (converted exactly) or a rational of BigInts
 * @param rng the random source (default: the process CSPRNG)
 * @returns an integer as a BigInt
 * @throws FedmqError FEDMQ_BAD_CONFIG on a bad σ²
 */
export function discreteGaussian(sigma2: number | Rational, rng: RandomSource = cryptoRandom()): bigint {
  return new DiscreteGaussian(sigma2, rng).sample();
}

/** Largest σ accepted by {@link discreteGaussianVector}: 2^31 / 64, so |x| ≥ 2^31 is a ≥ 64σ event (probability < e^{−2000}). */
export const DISCRETE_GAUSSIAN_INT32_MAX_SIGMA = 2 ** 31 / 64;

/**
 * n independent draws of N_Z(0, σ²) as an Int32Array, for distributed DP with secure
 * aggregation (the caller reduces them modulo the aggregation ring, e.g. 2^32).
 *
 * Range: σ must be at most {@link DISCRETE_GAUSSIAN_INT32_MAX_SIGMA} (2^25 ≈ 3.4e7), so every
 * value lies in the int32 range except with probability below n·e^{−2000}; should it happen, the
 * function throws rather than wrap. For larger σ use {@link discreteGaussianVectorBigInt}.
 * @throws FedmqError FEDMQ_BAD_CONFIG on a bad n or σ², or σ above the int32 limit
 */
export function discreteGaussianVector(n: number, sigma2: number | Rational, rng: RandomSource = cryptoRandom()): Int32Array {
  checkLength(n);
  const s2 = toRational(sigma2);
  // σ ≤ 2^25 ⟺ σ² ≤ 2^50 ⟺ num ≤ 2^50·den (exact).
  if (s2.num > (1n << 50n) * s2.den) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `discreteGaussianVector: σ too large for int32 output (max ${DISCRETE_GAUSSIAN_INT32_MAX_SIGMA}); use discreteGaussianVectorBigInt`);
  }
  const sampler = new DiscreteGaussian(s2, rng);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const x = sampler.sample();
    if (x > 2147483647n || x < -2147483648n) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'discrete Gaussian draw outside the int32 range');
    out[i] = Number(x);
  }
  return out;
}

/**
 * n independent draws of N_Z(0, σ²) as a BigInt64Array (σ up to 2^57, same 64σ margin as
 * {@link discreteGaussianVector}).
 * @throws FedmqError FEDMQ_BAD_CONFIG on a bad n or σ², or σ above 2^57
 */
export function discreteGaussianVectorBigInt(n: number, sigma2: number | Rational, rng: RandomSource = cryptoRandom()): BigInt64Array {
  checkLength(n);
  const s2 = toRational(sigma2);
  if (s2.num > (1n << 114n) * s2.den) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'discreteGaussianVectorBigInt: σ above 2^57');
  const sampler = new DiscreteGaussian(s2, rng);
  const out = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const x = sampler.sample();
    if (x > 9223372036854775807n || x < -9223372036854775808n) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'discrete Gaussian draw outside the int64 range');
    out[i] = x;
  }
  return out;
}

function checkLength(n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `vector length must be an integer ≥ 0, got ${n}`, { n });
}

/**
 * The exact variance of N_Z(0, σ²), Σ x² e^{−x²/2σ²} / Σ e^{−x²/2σ²}, summed in float64 over
 * |x| ≤ 40σ + 40 (the rest is below e^{−800} relative). It is < σ² (CKS 2020 prove Var ≤ σ²), markedly
 * so for σ ≲ 1 (σ = 0.5: 0.2138 vs 0.25), and equal to σ² up to 1e−15 for σ ≥ 2. A float
 * computation for tests and documentation; the sampler never uses it.
 */
export function discreteGaussianVariance(sigma2: number): number {
  if (!Number.isFinite(sigma2) || sigma2 < 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `σ² must be finite and ≥ 0, got ${sigma2}`);
  if (sigma2 === 0) return 0;
  const m = discreteGaussianMoments(sigma2, [0, 2]);
  return m[1] / m[0];
}

/** Σ_x x^p · e^{−x²/2σ²} over |x| ≤ 40σ + 40 for each power p (from the largest |x| down). @internal */
export function discreteGaussianMoments(sigma2: number, powers: number[]): number[] {
  const limit = Math.ceil(40 * Math.sqrt(sigma2) + 40);
  const sums = powers.map(() => 0);
  for (let x = limit; x >= 1; x--) {
    const w = Math.exp((-x * x) / (2 * sigma2));
    for (let j = 0; j < powers.length; j++) {
      const p = powers[j];
      sums[j] += (p % 2 === 0 ? 2 : 0) * x ** p * w; // odd powers cancel by symmetry
    }
  }
  for (let j = 0; j < powers.length; j++) if (powers[j] === 0) sums[j] += 1; // x = 0
  return sums;
}
