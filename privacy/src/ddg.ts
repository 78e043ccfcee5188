/**
 * The distributed discrete Gaussian mechanism (DDG) for differential privacy under secure
 * aggregation, `--secagg --dp distributed` (docs/privacy.md): P. Kairouz, Z. Liu, T. Steinke,
 * "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
 * ICML 2021 (arXiv:2102.06387).
 *
 * Every node clips its delta to L2 norm C, scales it by 1/γ onto the integer grid, rounds it
 * with *conditional* randomized rounding (re-rounded until the integer vector's norm is at most
 * the bound Δ2 of {@link ddgL2Sensitivity}), adds its own share of discrete Gaussian noise
 * N_Z(0, σ²) per coordinate and reduces the result modulo 2^b ({@link ddgEncode}). Secure
 * aggregation sums the shares mod 2^b; the coordinator lifts the sum back to signed integers and
 * multiplies by γ ({@link ddgDecode}). The privacy of the sum is the discrete Gaussian
 * mechanism with the noise of n nodes ({@link ddgZcdpRho}), composed over rounds as zCDP and
 * converted to (ε, δ) with the RDP conversion of convert.ts ({@link ddgEpsilon}).
 *
 * Units: C and the decoded sum are in the deltas' units; Δ2, σ² and every encoded value are in
 * integer units (multiples of γ): a per-node noise standard deviation s in the deltas' units is
 * σ² = (s/γ)².
 *
 * The reference for every formula is Google's code for the paper,
 * google-research/federated distributed_dp/accounting_utils.py (read at commit
 * 5e27a86323a35c2018fb97fbbe755c7ade9370ab): `rounded_l2_norm_bound` (Δ2), the τ of
 * `ddgauss_epsilon`, and `compute_rdp_dgaussian` (the paper's Proposition 14 RDP bound, from
 * which the zCDP ρ here follows). Written from the paper and that file; no code copied.
 *
 * Not done here, on purpose:
 * - **No random rotation.** The paper flattens the vector with a random rotation (randomized
 *   Hadamard transform) before rounding, so that coordinates are small and modular clipping is
 *   rare even with few bits. Without it a single coordinate may carry the whole norm C, so the
 *   wrap around 2^b is avoided by sizing b for the worst case ({@link ddgBits}: |x̃_i| ≤ C/γ + 1
 *   per node), not by flattening. Costs bits, not privacy.
 * - **No amplification by subsampling.** Under secure aggregation the coordinator is not
 *   trusted, and it knows which nodes were sampled; so each round is accounted as the full
 *   (unsampled) mechanism over the nodes whose noise the sum is guaranteed to hold. That is the
 *   conservative analysis; Kairouz et al. give no subsampled bound for this setting.
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { computeEpsilon } from './convert.ts';
import { DISCRETE_GAUSSIAN_INT32_MAX_SIGMA, discreteGaussianVector } from './discrete-gaussian.ts';
import type { RandomSource } from './random.ts';
import { DEFAULT_RDP_ORDERS } from './rdp.ts';

function badConfig(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.BAD_CONFIG, message, details);
}

function rangeError(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.SECAGG_RANGE, message, details);
}

const TWO_53 = 2 ** 53;

/** Largest modulus, in bits, of the aggregation ring Z_{2^b} (the secure-aggregation words are 32-bit). */
export const DDG_MAX_BITS = 32;

/** Most attempts of the conditional randomized rounding before {@link ddgEncode} gives up (each succeeds with probability ≥ 1 − β). */
export const DDG_MAX_ROUNDING_TRIES = 1000;

/** Smallest per-node σ² accepted by the privacy analysis: Kairouz et al.'s Theorem 1 / Proposition 14 assume σ ≥ 1/2. */
export const DDG_MIN_SIGMA2 = 0.25;

/** Parameters of one node's DDG encoding. */
export interface DdgParams {
  /** C: the L2 clip norm, in the deltas' units; finite, > 0. */
  clipNorm: number;
  /** γ: the quantization step, the value of one integer unit in the deltas' units; finite, > 0. */
  gamma: number;
  /** σ²: this node's discrete Gaussian noise variance parameter, in integer units ((s/γ)² for a standard deviation s in the deltas' units); ≥ 0, σ ≤ 2^25. */
  sigma2: number;
  /** b: the ring is Z_{2^b}; an integer in [1, 32]. */
  bits: number;
  /** β: the conditional rounding's bias parameter, in [0, 1) (the paper uses e^{−1/2}); 0 means unconditional (the worst-case bound C/γ + √d). */
  beta: number;
}

/** What {@link ddgEncode} produced. */
export interface DdgEncoded {
  /** The encoded vector: (x̃ + noise) mod 2^b per coordinate, each in [0, 2^b); the input's length. */
  values: Uint32Array;
  /** True when ‖Δ‖₂ ≤ C, i.e. the delta was not scaled by the clipping (the bit adaptive clipping needs). */
  unclipped: boolean;
}

function checkPositive(name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || !(v > 0)) throw badConfig(`${name} must be a finite number > 0, got ${v}`, { [name]: v });
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 1 || bits > DDG_MAX_BITS) {
    throw badConfig(`bits must be an integer in [1, ${DDG_MAX_BITS}], got ${bits}`, { bits });
  }
}

function checkBeta(beta: number): void {
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw badConfig(`beta must be in [0, 1), got ${beta}`, { beta });
}

function checkDims(dims: number): void {
  if (!Number.isInteger(dims) || dims < 1) throw badConfig(`dims must be an integer ≥ 1, got ${dims}`, { dims });
}

function checkNodes(nodes: number): void {
  if (!Number.isInteger(nodes) || nodes < 1) throw badConfig(`nodes must be an integer ≥ 1, got ${nodes}`, { nodes });
}

/**
 * Δ2, the L2 norm bound of one node's vector after scaling by 1/γ and conditional randomized
 * rounding, in integer units:
 *
 *   Δ2² = min{ c² + d/4 + √(2 ln(1/β))·(c + √d/2), (c + √d)² },  c = C/γ
 *
 * (only the second term when β = 0). The second term holds for any rounding to a neighbouring
 * integer (each coordinate moves by < 1); the first is the bound that randomized rounding meets
 * with probability ≥ 1 − β, which {@link ddgEncode} enforces by re-rounding. Kairouz et al. 2021,
 * Theorem 1 (Eq. 2) and the conditional randomized rounding analysis behind it; Google's
 * `rounded_l2_norm_bound` (distributed_dp/accounting_utils.py) computes the same.
 *
 * It bounds the change of the noised sum when this node's rounded contribution is replaced by 0
 * (its noise share staying in the sum). For replace-one adjacency (x̃ ↦ x̃') pass 2·Δ2 to the
 * privacy functions.
 *
 * @param p.clipNorm C > 0 (deltas' units); p.gamma γ > 0; p.dims d, an integer ≥ 1 (coordinates); p.beta β in [0, 1)
 * @returns Δ2 > 0, in integer units
 * @throws FedmqError FEDMQ_BAD_CONFIG on a parameter out of range
 */
export function ddgL2Sensitivity(p: { clipNorm: number; gamma: number; dims: number; beta: number }): number {
  return Math.sqrt(sensitivitySquared(p));
}

function sensitivitySquared(p: { clipNorm: number; gamma: number; dims: number; beta: number }): number {
  checkPositive('clipNorm', p.clipNorm);
  checkPositive('gamma', p.gamma);
  checkDims(p.dims);
  checkBeta(p.beta);
  const c = p.clipNorm / p.gamma;
  const rootD = Math.sqrt(p.dims);
  const worst = (c + rootD) ** 2;
  if (p.beta === 0) return worst;
  const conditional = c * c + p.dims / 4 + Math.sqrt(2 * Math.log(1 / p.beta)) * (c + rootD / 2);
  return Math.min(worst, conditional);
}

/**
 * One node's DDG encoding (Kairouz et al. 2021, Algorithm 1 without the rotation): clip to L2
 * norm C (Δ ← Δ·min(1, C/‖Δ‖₂), in float64; the input is not modified), scale by 1/γ, round
 * each coordinate y to ⌊y⌋ + Bernoulli(y − ⌊y⌋) (unbiased), repeating the whole rounding until
 * ‖x̃‖₂² ≤ Δ2² ({@link ddgL2Sensitivity}), add N_Z(0, σ²) per coordinate (the exact sampler of
 * discrete-gaussian.ts) and reduce modulo 2^b (a negative v becomes v + 2^b).
 *
 * The privacy guarantee rests on the integer check alone: whatever the float clipping's rounding,
 * an accepted x̃ has ‖x̃‖₂² ≤ Δ2²·(1 − 2^-50) (the margin absorbs the float error of Δ2², and the
 * sum of integer squares is compared exactly). The Bernoulli draws compare 53 random bits with
 * the fractional part: exact for |y| ≥ 1, within 2^-53 otherwise.
 *
 * No random rotation: without it the modular wrap is avoided by sizing b with {@link ddgBits}
 * (worst case |x̃_i| ≤ C/γ + 1), not by flattening the vector as the paper does.
 *
 * @param delta the node's delta, all tensors flattened (deltas' units); every value finite
 * @param p see {@link DdgParams}
 * @param rng the random source of the rounding and the noise: production passes `cryptoRandom()`
 * @returns the encoded vector (length of `delta`, values in [0, 2^b)) and whether ‖Δ‖₂ ≤ C
 * @throws FedmqError FEDMQ_NON_FINITE on a NaN or ±Infinity value; FEDMQ_BAD_CONFIG on a
 *   parameter out of range (C or γ not finite > 0, σ² < 0 or σ > 2^25, b not in [1, 32], β not in
 *   [0, 1)); FEDMQ_SECAGG_RANGE when one node's values could already wrap (C/γ + 1 ≥ 2^(b−1)) or
 *   the norm bound was not met in {@link DDG_MAX_ROUNDING_TRIES} roundings (probability ≤ β^1000
 *   for a clipped input)
 */
export function ddgEncode(delta: Float32Array | Float64Array, p: DdgParams, rng: RandomSource): DdgEncoded {
  checkPositive('clipNorm', p.clipNorm);
  checkPositive('gamma', p.gamma);
  checkBits(p.bits);
  checkBeta(p.beta);
  if (typeof p.sigma2 !== 'number' || !(p.sigma2 >= 0) || !(Math.sqrt(p.sigma2) <= DISCRETE_GAUSSIAN_INT32_MAX_SIGMA)) {
    throw badConfig(`sigma2 must be a number in [0, ${DISCRETE_GAUSSIAN_INT32_MAX_SIGMA}²], got ${p.sigma2}`, { sigma2: p.sigma2 });
  }
  const d = delta.length;
  if (d === 0) return { values: new Uint32Array(0), unclipped: true };
  const c = p.clipNorm / p.gamma;
  if (!(c + 1 < 2 ** (p.bits - 1))) {
    throw rangeError(`C/γ + 1 = ${c + 1} does not fit a ${p.bits}-bit ring even for one node: a larger γ or more bits`, { clipNorm: p.clipNorm, gamma: p.gamma, bits: p.bits });
  }

  // clip (float64) and scale onto the integer grid
  let sumSq = 0;
  for (let i = 0; i < d; i++) {
    const v = delta[i];
    if (!Number.isFinite(v)) throw new FedmqError(ErrorCodes.NON_FINITE, `delta value ${i} is ${v}`, { index: i });
    sumSq += v * v;
  }
  const norm = Math.sqrt(sumSq);
  const unclipped = norm <= p.clipNorm;
  const factor = (unclipped ? 1 : p.clipNorm / norm) / p.gamma;
  const y = new Float64Array(d);
  for (let i = 0; i < d; i++) y[i] = delta[i] * factor;

  // conditional randomized rounding
  const maxSq = sensitivitySquared({ clipNorm: p.clipNorm, gamma: p.gamma, dims: d, beta: p.beta }) * (1 - 2 ** -50);
  const exact = maxSq < TWO_53; // integer sums below 2^53 are exact in float64
  const maxSqBig = exact ? 0n : BigInt(Math.floor(maxSq));
  const x = new Float64Array(d);
  let accepted = false;
  for (let attempt = 0; attempt < DDG_MAX_ROUNDING_TRIES && !accepted; attempt++) {
    for (let i = 0; i < d; i++) {
      const lo = Math.floor(y[i]);
      const frac = y[i] - lo; // exact in float64
      x[i] = frac > 0 && rng.nextUint53() < frac * TWO_53 ? lo + 1 : lo;
    }
    accepted = exact ? normSqAtMost(x, maxSq) : normSqAtMostBig(x, maxSqBig);
  }
  if (!accepted) {
    throw rangeError(`conditional randomized rounding did not meet the norm bound in ${DDG_MAX_ROUNDING_TRIES} tries (β = ${p.beta})`, { beta: p.beta, tries: DDG_MAX_ROUNDING_TRIES });
  }

  // noise share and reduction mod 2^b
  const noise = discreteGaussianVector(d, p.sigma2, rng);
  const modulus = 2 ** p.bits;
  const values = new Uint32Array(d);
  for (let i = 0; i < d; i++) {
    const r = (x[i] + noise[i]) % modulus; // |x + noise| < 2^33: exact
    values[i] = r < 0 ? r + modulus : r;
  }
  return { values, unclipped };
}

/** Σ x_i² ≤ bound for integer x_i, with bound < 2^53: exact (partial sums stay below 2^53 until they exceed the bound). */
function normSqAtMost(x: Float64Array, bound: number): boolean {
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    s += x[i] * x[i];
    if (s > bound) return false;
  }
  return true;
}

function normSqAtMostBig(x: Float64Array, bound: bigint): boolean {
  let s = 0n;
  for (let i = 0; i < x.length; i++) {
    const v = BigInt(x[i]);
    s += v * v;
    if (s > bound) return false;
  }
  return true;
}

/**
 * The coordinator's decoding of a DDG sum: each value v of Z_{2^b} is lifted to the centred
 * representative (v − 2^b when v ≥ 2^(b−1), so the range is [−2^(b−1), 2^(b−1))) and multiplied
 * by γ. The result is the sum of the nodes' clipped deltas plus their rounding error and noise,
 * in the deltas' units; the caller divides by the cohort. Correct as long as the true sum did not
 * wrap, which {@link ddgBits} makes improbable.
 *
 * @param sum the secure-aggregation sum mod 2^b, values in [0, 2^b)
 * @param bits b, an integer in [1, 32]
 * @param gamma γ > 0, the encoders' quantization step
 * @returns a new Float64Array of `sum.length` values (deltas' units)
 * @throws FedmqError FEDMQ_BAD_CONFIG on b or γ out of range; FEDMQ_SECAGG_RANGE on a value ≥ 2^b
 *   (the sum was not reduced in this ring)
 */
export function ddgDecode(sum: Uint32Array, bits: number, gamma: number): Float64Array {
  checkBits(bits);
  checkPositive('gamma', gamma);
  const modulus = 2 ** bits;
  const half = modulus / 2;
  const out = new Float64Array(sum.length);
  for (let i = 0; i < sum.length; i++) {
    const v = sum[i];
    if (v >= modulus) throw rangeError(`sum value ${i} is ${v}, outside Z_2^${bits}`, { index: i, bits });
    out[i] = (v >= half ? v - modulus : v) * gamma;
  }
  return out;
}

/**
 * The smallest ring size b such that the sum of `nodes` DDG-encoded vectors wraps around 2^b in
 * any of the `dims` coordinates with probability at most `wrapProbability`. Per coordinate
 *
 *   |Σ| ≤ nodes·(C/γ + 1) + t,  t = √(2·nodes·σ²·ln(2·dims / wrapProbability)):
 *
 * each rounded coordinate has |x̃_i| ≤ ⌈C/γ⌉ (no rotation: one coordinate may carry all of C), and
 * the sum of `nodes` independent N_Z(0, σ²) is nodes·σ²-sub-Gaussian (the discrete Gaussian with
 * parameter σ² is σ²-sub-Gaussian, E[e^{λX}] ≤ e^{λ²σ²/2}: Canonne, Kamath, Steinke 2020,
 * arXiv:2004.00010), so P(|Σ noise| > t) ≤ 2·exp(−t²/(2·nodes·σ²)) = wrapProbability/dims, and
 * a union bound over the coordinates. The centred lift of {@link ddgDecode} is right when
 * 2·bound < 2^b.
 *
 * `nodes` here is the most vectors the sum can hold (the cohort), unlike the `nodes` of
 * {@link ddgZcdpRho} (the fewest noise shares it is guaranteed).
 *
 * @param p.nodes vectors summed, integer ≥ 1; p.dims coordinates, integer ≥ 1; p.clipNorm C > 0 and
 *   p.gamma γ > 0 as in {@link DdgParams}; p.sigma2 per-node σ² ≥ 0 (integer units);
 *   p.wrapProbability in (0, 1)
 * @returns b, an integer in [1, 32]
 * @throws FedmqError FEDMQ_BAD_CONFIG on a parameter out of range; FEDMQ_SECAGG_RANGE when b would
 *   exceed 32
 */
export function ddgBits(p: { nodes: number; dims: number; clipNorm: number; gamma: number; sigma2: number; wrapProbability: number }): number {
  checkNodes(p.nodes);
  checkDims(p.dims);
  checkPositive('clipNorm', p.clipNorm);
  checkPositive('gamma', p.gamma);
  if (typeof p.sigma2 !== 'number' || !(p.sigma2 >= 0) || !Number.isFinite(p.sigma2)) throw badConfig(`sigma2 must be a finite number ≥ 0, got ${p.sigma2}`, { sigma2: p.sigma2 });
  if (typeof p.wrapProbability !== 'number' || !(p.wrapProbability > 0 && p.wrapProbability < 1)) {
    throw badConfig(`wrapProbability must be in (0, 1), got ${p.wrapProbability}`, { wrapProbability: p.wrapProbability });
  }
  const tail = Math.sqrt(2 * p.nodes * p.sigma2 * Math.log((2 * p.dims) / p.wrapProbability));
  const bound = p.nodes * (p.clipNorm / p.gamma + 1) + tail;
  let b = 1;
  while (b <= DDG_MAX_BITS && !(2 * bound < 2 ** b)) b++;
  if (b > DDG_MAX_BITS) {
    throw rangeError(`the sum of ${p.nodes} DDG vectors needs more than ${DDG_MAX_BITS} bits (bound ${bound} per coordinate): a larger γ, less noise or a smaller cohort`, {
      nodes: p.nodes, dims: p.dims, clipNorm: p.clipNorm, gamma: p.gamma, sigma2: p.sigma2, bound,
    });
  }
  return b;
}

/**
 * τ = 10·Σ_{k=1}^{n−1} exp(−2π²σ²·k/(k+1)), the distance of a sum of n independent N_Z(0, σ²)
 * from N_Z(0, nσ²) in Kairouz et al. 2021, Theorem 1 (Eq. 3); 0 for n = 1. Google's
 * `ddgauss_epsilon` computes the same with σ = local_stddev/γ.
 *
 * @param sigma2 per-node σ² > 0 (integer units); nodes n, an integer ≥ 1
 * @throws FedmqError FEDMQ_BAD_CONFIG on σ² not finite > 0 or n not an integer ≥ 1
 */
export function ddgTau(sigma2: number, nodes: number): number {
  checkPositive('sigma2', sigma2);
  checkNodes(nodes);
  const a = 2 * Math.PI * Math.PI * sigma2;
  let sum = 0;
  for (let k = 1; k < nodes; k++) {
    const term = Math.exp((-a * k) / (k + 1));
    if (term === 0) break; // the terms decrease in k
    sum += term;
  }
  return 10 * sum;
}

/**
 * ρ of the sum mechanism: adding Σ of n independent N_Z(0, σ²)^d to an integer vector of
 * sensitivity Δ2 is ρ-zCDP (½ε²-concentrated DP) with
 *
 *   ε = min{ √(Δ2²/(nσ²) + 2τd), Δ2/√(nσ²) + τ√d },  ρ = ε²/2,  τ = {@link ddgTau}(σ², n).
 *
 * Source: Kairouz et al. 2021, Proposition 14: D_α ≤ min{ αΔ2²/(2nσ²) + τd,
 * (α/2)(Δ2/√(nσ²) + τ√d)², … } for all α ≥ 1 (the third term needs the L1 sensitivity and is
 * not used), as Google's `compute_rdp_dgaussian` evaluates it; ρ = sup_α D_α/α of each term gives
 * the two branches (the first at α → 1: Δ2²/(2nσ²) + τd). The 2τd is what that RDP bound
 * supports; a statement of Theorem 1 with ½τd would be smaller, so 2τd is the conservative
 * choice. For large σ, τ vanishes and ρ = Δ2²/(2nσ²), the Gaussian mechanism's.
 *
 * n must be the number of noise shares the sum is *guaranteed* to hold — the secure-aggregation
 * threshold t, not the cohort: dropped or colluding nodes' noise does not count. No amplification
 * by subsampling (see the module comment).
 *
 * @param p.l2Sensitivity Δ2 ≥ 0, integer units ({@link ddgL2Sensitivity}); p.sigma2 per-node σ² ≥ 1/4
 *   (the theorem's σ ≥ 1/2), integer units; p.nodes n, integer ≥ 1; p.dims d, integer ≥ 1
 * @returns ρ ≥ 0 per round, in nats
 * @throws FedmqError FEDMQ_BAD_CONFIG on a parameter out of range (σ² < 1/4 included)
 */
export function ddgZcdpRho(p: { l2Sensitivity: number; sigma2: number; nodes: number; dims: number }): number {
  if (typeof p.l2Sensitivity !== 'number' || !(p.l2Sensitivity >= 0) || !Number.isFinite(p.l2Sensitivity)) {
    throw badConfig(`l2Sensitivity must be a finite number ≥ 0, got ${p.l2Sensitivity}`, { l2Sensitivity: p.l2Sensitivity });
  }
  if (typeof p.sigma2 !== 'number' || !(p.sigma2 >= DDG_MIN_SIGMA2) || !Number.isFinite(p.sigma2)) {
    throw badConfig(`sigma2 must be a finite number ≥ ${DDG_MIN_SIGMA2} (σ ≥ 1/2, Kairouz et al. Theorem 1), got ${p.sigma2}`, { sigma2: p.sigma2 });
  }
  checkNodes(p.nodes);
  checkDims(p.dims);
  const tau = ddgTau(p.sigma2, p.nodes);
  const scaled = p.l2Sensitivity / Math.sqrt(p.nodes * p.sigma2);
  const eps = Math.min(Math.sqrt(scaled * scaled + 2 * tau * p.dims), scaled + tau * Math.sqrt(p.dims));
  return (eps * eps) / 2;
}

/**
 * ε(δ) of `rounds` rounds, each ρ-zCDP: zCDP composes additively (Bun, Steinke 2016,
 * arXiv:1605.02065, Lemma 2.3), and T·ρ-zCDP is (α, α·T·ρ)-RDP for every α > 1, converted with
 * {@link computeEpsilon} (dp_accounting's `compute_epsilon`) at each order; the best order wins.
 *
 * @param p.rho ρ ≥ 0 per round (nats, {@link ddgZcdpRho}); p.rounds integer ≥ 1; p.delta in (0, 1);
 *   p.orders RDP orders (default {@link DEFAULT_RDP_ORDERS})
 * @returns ε ≥ 0, in nats
 * @throws FedmqError FEDMQ_BAD_CONFIG on a parameter out of range
 */
export function ddgEpsilon(p: { rho: number; rounds: number; delta: number; orders?: readonly number[] }): number {
  if (typeof p.rho !== 'number' || !(p.rho >= 0) || !Number.isFinite(p.rho)) throw badConfig(`rho must be a finite number ≥ 0, got ${p.rho}`, { rho: p.rho });
  if (!Number.isInteger(p.rounds) || p.rounds < 1) throw badConfig(`rounds must be an integer ≥ 1, got ${p.rounds}`, { rounds: p.rounds });
  if (typeof p.delta !== 'number' || !(p.delta > 0 && p.delta < 1)) throw badConfig(`delta must be in (0, 1), got ${p.delta}`, { delta: p.delta });
  const orders = p.orders ?? DEFAULT_RDP_ORDERS;
  const total = p.rho * p.rounds;
  return computeEpsilon(orders, orders.map((a) => a * total), p.delta).epsilon;
}

/** The largest per-node σ² {@link ddgNoiseFor} searches up to: σ = 2^25, the limit of `discreteGaussianVector`. */
export const DDG_MAX_SIGMA2 = DISCRETE_GAUSSIAN_INT32_MAX_SIGMA ** 2;

/**
 * The smallest per-node σ² (integer units) at which `rounds` rounds of the DDG sum are
 * (targetEpsilon, delta)-DP by {@link ddgZcdpRho} and {@link ddgEpsilon}: bisection on log σ²
 * over [{@link DDG_MIN_SIGMA2}, {@link DDG_MAX_SIGMA2}] (ε decreases in σ²: both ρ branches and τ
 * do) until the bracket is narrower than `relativeTolerance`·σ². The σ² returned always meets the
 * target (the bracket's upper end); when even σ² = 1/4 does, 1/4 is returned.
 *
 * @param p.targetEpsilon ε > 0 (nats); p.delta in (0, 1); p.rounds integer ≥ 1; p.l2Sensitivity Δ2
 *   (integer units); p.nodes the guaranteed noise shares (threshold t); p.dims d; p.orders as
 *   {@link ddgEpsilon}; p.relativeTolerance in (0, 0.1], default 1e-9
 * @returns σ² in [1/4, 2^50], integer units
 * @throws FedmqError FEDMQ_BAD_CONFIG on a parameter out of range, or when even σ² = 2^50 does not
 *   reach the target
 */
export function ddgNoiseFor(p: {
  targetEpsilon: number; delta: number; rounds: number; l2Sensitivity: number; nodes: number; dims: number;
  orders?: readonly number[]; relativeTolerance?: number;
}): number {
  const target = p.targetEpsilon;
  if (typeof target !== 'number' || !(target > 0) || !Number.isFinite(target)) throw badConfig(`target epsilon must be a finite number > 0, got ${target}`, { targetEpsilon: target });
  const tol = p.relativeTolerance ?? 1e-9;
  if (!(tol > 0 && tol <= 0.1)) throw badConfig(`relative tolerance must be in (0, 0.1], got ${tol}`, { relativeTolerance: tol });
  const epsAt = (sigma2: number) =>
    ddgEpsilon({ rho: ddgZcdpRho({ l2Sensitivity: p.l2Sensitivity, sigma2, nodes: p.nodes, dims: p.dims }), rounds: p.rounds, delta: p.delta, orders: p.orders });
  const fits = (sigma2: number) => epsAt(sigma2) <= target;
  let lo = DDG_MIN_SIGMA2;
  let hi = DDG_MAX_SIGMA2;
  if (fits(lo)) return lo;
  if (!fits(hi)) {
    throw badConfig(`no per-node σ² up to 2^50 reaches ε = ${target} at δ = ${p.delta} in ${p.rounds} rounds (ε there is ${epsAt(hi)})`, {
      targetEpsilon: target, delta: p.delta, rounds: p.rounds, l2Sensitivity: p.l2Sensitivity, nodes: p.nodes, dims: p.dims,
    });
  }
  while (hi - lo > tol * hi) {
    const mid = Math.sqrt(lo * hi); // bisection in log σ²
    const m = mid > lo && mid < hi ? mid : (lo + hi) / 2;
    if (fits(m)) hi = m;
    else lo = m;
  }
  return hi;
}
