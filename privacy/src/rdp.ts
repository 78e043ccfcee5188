/**
 * Rényi differential privacy (RDP) of the subsampled Gaussian mechanism, the privacy accountant of
 * DP-FedAvg (docs/privacy.md, "Accounting").
 *
 * A mechanism M is (α, ε)-RDP when the Rényi divergence of order α between M(D) and M(D') is at
 * most ε for all neighbouring D, D' (Mironov 2017, "Rényi Differential Privacy", CSF; Definition 3).
 * RDP composes by addition at each order (Proposition 1 there), so the accountant keeps one RDP
 * value per order and adds each round's; convert.ts turns the sums into (ε, δ).
 *
 * The per-round RDP is computed as Google's dp_accounting does, in
 * `python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant.py` of google/differential-privacy
 * (read at commit b5b0286e313b64a692abfc8c528d54ef47d960a0): this file is our own TypeScript of
 * its functions `_compute_rdp_poisson_subsampled_gaussian`, `_compute_log_a_int`,
 * `_compute_log_a_frac`, `_log_add`, `_log_sub_sign`, `_log_erfc` and, for fixed-size cohorts,
 * `_compute_rdp_sample_wor_gaussian` with `_get_forward_diffs` / `_stable_inplace_diff_in_log`.
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { logErfc } from './special.ts';

/**
 * dp_accounting's `DEFAULT_RDP_ORDERS`: 1 + x/10 for x = 1…99 (1.1 … 10.9), the integers
 * 11…63, then 128, 256, 512 and 1024 (rdp_privacy_accountant.py; "chosen to give good coverage for
 * Gaussian mechanism in the privacy regime of interest"). 156 orders.
 */
export const DEFAULT_RDP_ORDERS: readonly number[] = Object.freeze([
  ...Array.from({ length: 99 }, (_, k) => 1 + (k + 1) / 10),
  ...Array.from({ length: 53 }, (_, k) => 11 + k),
  128, 256, 512, 1024,
]);

function badConfig(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.BAD_CONFIG, message, details);
}

/** log(exp(x) + exp(y)) without overflow (dp_accounting `_log_add`); −∞ stands for 0. */
export function logAdd(x: number, y: number): number {
  const a = Math.min(x, y);
  const b = Math.max(x, y);
  if (a === -Infinity) return b;
  return Math.log1p(Math.exp(a - b)) + b;
}

/** [sign, log|exp(x) − exp(y)|]: sign true for ≥ 0 (dp_accounting `_log_sub_sign`). */
export function logSubSign(x: number, y: number): [boolean, number] {
  if (x > y) return [true, x + Math.log1p(-Math.exp(y - x))];
  if (x < y) return [false, y + Math.log1p(-Math.exp(x - y))];
  return [true, -Infinity];
}

/**
 * log|C(α, i)| for i = 0…n, by C(α, i) = C(α, i−1)·(α − i + 1)/i. For a fractional α this is
 * the log of |Γ(α+1)/(Γ(i+1)Γ(α−i+1))|, which dp_accounting's `_log_comb` computes with
 * scipy's gammaln (a log-absolute-value): the same number, without a log-gamma function.
 */
function logBinomials(alpha: number, n: number): Float64Array {
  const out = new Float64Array(n + 1);
  for (let i = 1; i <= n; i++) out[i] = out[i - 1] + Math.log(Math.abs(alpha - i + 1)) - Math.log(i);
  return out;
}

/**
 * log(A_α) for an integer order α ≥ 1 and 0 < q < 1, where for the Poisson-subsampled Gaussian
 * A_α = Σ_{i=0}^{α} C(α, i) (1−q)^{α−i} q^i exp((i² − i)/(2σ²)) (Mironov, Talwar, Zhang 2019,
 * "Rényi Differential Privacy of the Sampled Gaussian Mechanism", arXiv:1908.10530, §3.2;
 * dp_accounting `_compute_log_a_int`).
 */
export function computeLogAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  const log1mq = Math.log1p(-q);
  const logq = Math.log(q);
  const logC = logBinomials(alpha, alpha);
  for (let i = 0; i <= alpha; i++) {
    const s = logC[i] + i * logq + (alpha - i) * log1mq + (i * i - i) / (2 * sigma ** 2);
    logA = logAdd(logA, s);
  }
  return logA;
}

/** dp_accounting's `_MAX_STEPS_LOG_A_FRAC`: terms of the fractional-order series before giving up. */
export const MAX_STEPS_LOG_A_FRAC = 1000;

/**
 * log(A_α) for a fractional order α > 1 and 0 < q < 1: A_α split at z₀ = σ² log(1/q − 1) + 1/2
 * into two series whose terms use erfc (Mironov, Talwar, Zhang 2019, §3.3; dp_accounting
 * `_compute_log_a_frac`). As in dp_accounting (since its commit 0b109e9, April 2024) every term
 * is added with the absolute value of its binomial coefficient, so for fractional α this is an
 * upper bound on A_α rather than its exact value: conservative and numerically stable.
 *
 * @returns log(A_α); +∞ when the series has not converged after {@link MAX_STEPS_LOG_A_FRAC}
 *   terms (dp_accounting then logs a warning and excludes the order the same way: an infinite RDP
 *   at that order, which the (ε, δ) conversion never picks).
 */
export function computeLogAFrac(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma ** 2 * Math.log(1 / q - 1) + 0.5;
  const log1mq = Math.log1p(-q);
  const logq = Math.log(q);
  const logHalf = Math.log(0.5);
  const sqrt2Sigma = Math.SQRT2 * sigma;
  let lastS0 = -Infinity;
  let lastS1 = -Infinity;
  let logCoef = 0; // log|C(α, 0)|
  for (let i = 0; i < MAX_STEPS_LOG_A_FRAC; i++) {
    if (i > 0) logCoef += Math.log(Math.abs(alpha - i + 1)) - Math.log(i);
    const j = alpha - i;
    const logT0 = logCoef + i * logq + j * log1mq;
    const logT1 = logCoef + j * logq + i * log1mq;
    const logE0 = logHalf + logErfc((i - z0) / sqrt2Sigma);
    const logE1 = logHalf + logErfc((z0 - j) / sqrt2Sigma);
    const logS0 = logT0 + (i * i - i) / (2 * sigma ** 2) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma ** 2) + logE1;
    logA0 = logAdd(logA0, logS0);
    logA1 = logAdd(logA1, logS1);
    const total = logAdd(logA0, logA1);
    // dp_accounting: stop when both terms decrease and are below e^-30 of the total
    if (logS0 < lastS0 && logS1 < lastS1 && Math.max(logS0, logS1) < total - 30) return total;
    lastS0 = logS0;
    lastS1 = logS1;
  }
  return Infinity;
}

function checkMechanism(q: number, noiseMultiplier: number, orders: readonly number[]): void {
  if (!(q >= 0 && q <= 1)) throw badConfig(`sampling probability q must be in [0, 1], got ${q}`, { q });
  if (!(noiseMultiplier >= 0)) throw badConfig(`noise multiplier must be ≥ 0, got ${noiseMultiplier}`, { noiseMultiplier });
  for (const a of orders) if (!(a >= 1)) throw badConfig(`RDP orders must be ≥ 1, got ${a}`, { order: a });
}

/**
 * RDP of one step of the Poisson-subsampled Gaussian mechanism at each order: each record (for
 * fedmq: each node) is included independently with probability `q`, the included records' values
 * (clipped to L2 norm C) are summed and N(0, σ²C²) noise is added, σ = `noiseMultiplier`.
 * Neighbouring relation: add/remove one record.
 *
 * Special cases as dp_accounting's `_compute_rdp_poisson_subsampled_gaussian`: q = 0 → 0 at every
 * order (also order ∞ and σ = 0); otherwise order ∞ or σ = 0 → ∞; q = 1 → α/(2σ²) (the Gaussian
 * mechanism, Mironov 2017 Proposition 7); else log(A_α)/(α − 1) ({@link computeLogAInt} for
 * integer α, {@link computeLogAFrac} for fractional α).
 *
 * @param q sampling probability in [0, 1].
 * @param noiseMultiplier σ ≥ 0: noise standard deviation over the L2 sensitivity.
 * @param orders RDP orders α ≥ 1 (may include +∞). Order 1 needs q ∈ {0, 1} (the series divides by
 *   α − 1; dp_accounting fails there too).
 * @returns RDP ε(α) for each order, in nats; may be +∞.
 * @throws FedmqError FEDMQ_BAD_CONFIG for q outside [0, 1], σ < 0 or NaN, an order < 1, or order 1
 *   with 0 < q < 1.
 */
export function rdpPoissonSubsampledGaussian(q: number, noiseMultiplier: number, orders: readonly number[]): number[] {
  checkMechanism(q, noiseMultiplier, orders);
  return orders.map((alpha) => {
    if (q === 0) return 0;
    if (alpha === Infinity || noiseMultiplier === 0) return Infinity;
    if (q === 1) return alpha / (2 * noiseMultiplier ** 2);
    if (alpha === 1) throw badConfig('RDP order 1 is only defined here for q = 0 or q = 1', { q, order: alpha });
    const logA = Number.isInteger(alpha) ? computeLogAInt(q, noiseMultiplier, alpha) : computeLogAFrac(q, noiseMultiplier, alpha);
    return logA / (alpha - 1);
  });
}

/**
 * The noise multiplier of one Gaussian mechanism equivalent to several Gaussian queries answered on
 * the same data (the same sampled cohort): σ_eff = (Σ σᵢ⁻²)^(−1/2), each σᵢ being that query's
 * noise standard deviation over its own L2 sensitivity (dp_accounting
 * `_effective_gaussian_noise_multiplier` for a ComposedDpEvent; Mironov, Talwar, Zhang 2019 §3 via
 * arXiv:1812.06210). Any σᵢ = 0 gives 0 (no privacy).
 *
 * This is the right way to account a round that releases two noisy sums of one Poisson-sampled
 * cohort — as adaptive clipping does with the clipped-count bits (Andrew et al. 2021,
 * "Differentially Private Learning with Adaptive Clipping", NeurIPS, §3.1: with noise multiplier
 * z_Δ on the clipped updates and standard deviation σ_b on the sum of the centred bits
 * bᵢ − 1/2, whose sensitivity is 1/2, the round is one subsampled Gaussian with
 * z = (z_Δ⁻² + (2σ_b)⁻²)^(−1/2)): compose `rdpPoissonSubsampledGaussian(q, σ_eff)`, not the sum of
 * the two queries' separately subsampled RDPs. The two agree only for q = 1, where the Gaussian
 * RDPs α/(2σᵢ²) add exactly.
 *
 * @throws FedmqError FEDMQ_BAD_CONFIG with no multiplier, or one negative or NaN.
 */
export function effectiveNoiseMultiplier(...noiseMultipliers: number[]): number {
  if (noiseMultipliers.length === 0) throw badConfig('effectiveNoiseMultiplier needs at least one noise multiplier');
  let sumInvSq = 0;
  for (const s of noiseMultipliers) {
    if (!(s >= 0)) throw badConfig(`noise multiplier must be ≥ 0, got ${s}`, { noiseMultiplier: s });
    sumInvSq += s ** -2;
  }
  return sumInvSq ** -0.5;
}

// --- sampling without replacement (fixed-size cohorts) ---------------------------------------

/**
 * Replaces vec[0…n−1] (with signs) by the log-magnitudes and signs of the forward differences
 * vec[j+1] − vec[j] (dp_accounting `_stable_inplace_diff_in_log`).
 */
function stableInplaceDiffInLog(vec: Float64Array, signs: boolean[], n: number): void {
  for (let j = 0; j < n; j++) {
    if (signs[j] === signs[j + 1]) {
      const [s, mag] = logSubSign(vec[j + 1], vec[j]);
      signs[j] = s;
      vec[j] = mag;
      if (!signs[j + 1]) signs[j] = !signs[j];
    } else {
      vec[j] = logAdd(vec[j], vec[j + 1]);
      signs[j] = signs[j + 1];
    }
  }
}

/**
 * Log-magnitudes of the forward differences (order 0…n+1) of exp(fun) at 0, as dp_accounting's
 * `_get_forward_diffs` (Wang, Balle, Kasiviswanathan 2019, Theorem 27), including its layout:
 * slot 0 of the working vector holds log 1 = 0 and slot i ≥ 1 holds fun(i − 1).
 */
function forwardDiffs(fun: (x: number) => number, n: number): Float64Array {
  const funcVec = new Float64Array(n + 3);
  const signsFuncVec: boolean[] = new Array(n + 3).fill(true);
  const deltas = new Float64Array(n + 2);
  for (let i = 1; i < n + 3; i++) funcVec[i] = fun(i - 1);
  for (let i = 0; i < n + 2; i++) {
    stableInplaceDiffInLog(funcVec, signsFuncVec, n + 2 - i);
    deltas[i] = funcVec[0];
  }
  return deltas;
}

/** Above this order dp_accounting bounds the WOR terms with the CGF alone (O(α) instead of O(α²)). */
const WOR_MAX_ALPHA = 256;

/** log of the WOR moment bound at an integer order (dp_accounting `_compute_rdp_sample_wor_gaussian_int`). */
function rdpSampleWorGaussianInt(q: number, sigma: number, alpha: number): number {
  if (alpha === Infinity) return Infinity;
  if (alpha === 1) return 0;
  const cgf = (x: number) => (x * (x + 1)) / (2 * sigma ** 2); // (x+1)·RDP of the Gaussian at x+1
  const func = (x: number) => x / (2 * sigma ** 2); // RDP of the Gaussian at x
  const logC = logBinomials(alpha, alpha);
  const logq = Math.log(q);
  let logA = 0; // log 1
  const logF2m1 = func(2) + Math.log1p(-Math.exp(-func(2)));
  const first = 2 * logq + logC[2] + Math.min(Math.log(4) + logF2m1, func(2) + Math.log(2));
  if (alpha <= WOR_MAX_ALPHA) {
    const deltas = forwardDiffs(cgf, alpha);
    for (let i = 2; i <= alpha; i++) {
      let s: number;
      if (i === 2) s = first;
      else {
        const deltaLo = deltas[2 * Math.floor(i / 2) - 1];
        const deltaHi = deltas[2 * Math.ceil(i / 2) - 1];
        s = Math.min(Math.log(4) + 0.5 * (deltaLo + deltaHi), Math.log(2) + cgf(i - 1));
        s += i * logq + logC[i];
      }
      logA = logAdd(logA, s);
    }
    return logA;
  }
  for (let i = 2; i <= alpha; i++) {
    const s = i === 2 ? first : Math.log(2) + cgf(i - 1) + i * logq + logC[i];
    logA = logAdd(logA, s);
  }
  return logA;
}

/**
 * RDP of one step of the Gaussian mechanism on a sample of fixed size m = q·n drawn uniformly
 * without replacement from n records (fixed-size cohorts), under the *replace-one* neighbouring
 * relation with n public (Wang, Balle, Kasiviswanathan 2019, "Subsampled Rényi Differential Privacy
 * and Analytical Moments Accountant", AISTATS, Theorem 27; dp_accounting
 * `_compute_rdp_sample_wor_gaussian`). Fractional orders interpolate the CGF between ⌊α⌋ and ⌈α⌉
 * (their Corollary 10), as dp_accounting does. Orders up to 256 use the exact Theorem 27 bound
 * (O(α²) work), larger ones its Stirling-style bound.
 *
 * Its ε is for replace-one neighbours and not comparable with the add/remove ε of
 * {@link rdpPoissonSubsampledGaussian} (replacing a record is up to two add/remove steps).
 *
 * @param q sampling proportion m/n in [0, 1].
 * @param noiseMultiplier σ ≥ 0.
 * @param orders RDP orders ≥ 1 (may include +∞). Order 1 needs q ∈ {0, 1}.
 * @returns RDP at each order, in nats; may be +∞.
 * @throws FedmqError FEDMQ_BAD_CONFIG as {@link rdpPoissonSubsampledGaussian}.
 */
export function rdpSampledWithoutReplacementGaussian(q: number, noiseMultiplier: number, orders: readonly number[]): number[] {
  checkMechanism(q, noiseMultiplier, orders);
  return orders.map((alpha) => {
    if (q === 0) return 0;
    if (noiseMultiplier === 0) return Infinity;
    if (q === 1) return alpha / (2 * noiseMultiplier ** 2);
    if (alpha === Infinity) return Infinity;
    if (alpha === 1) throw badConfig('RDP order 1 is only defined here for q = 0 or q = 1', { q, order: alpha });
    if (Number.isInteger(alpha)) return rdpSampleWorGaussianInt(q, noiseMultiplier, alpha) / (alpha - 1);
    const lo = Math.floor(alpha);
    const hi = Math.ceil(alpha);
    const x = rdpSampleWorGaussianInt(q, noiseMultiplier, lo);
    const y = rdpSampleWorGaussianInt(q, noiseMultiplier, hi);
    const t = alpha - lo;
    return ((1 - t) * x + t * y) / (alpha - 1);
  });
}
