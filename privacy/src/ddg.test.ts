import { describe, expect, it } from 'vitest';
import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import {
  DDG_MAX_ROUNDING_TRIES, DDG_MIN_SIGMA2, ddgBits, ddgDecode, ddgEncode, ddgEpsilon, ddgL2Sensitivity, ddgNoiseFor, ddgTau, ddgZcdpRho,
  type DdgParams,
} from './ddg.ts';
import { discreteGaussianVariance } from './discrete-gaussian.ts';
import type { RandomSource } from './random.ts';
import { seededTestRandom } from './testing.ts';

/**
 * Reference values: every expected number below was computed independently in Python 3.11 with
 * plain `math` (no numpy), by a re-implementation of the formulas of google-research/federated
 * distributed_dp/accounting_utils.py at commit 5e27a86323a35c2018fb97fbbe755c7ade9370ab:
 * `rounded_l2_norm_bound` (Δ2), the τ loop of `ddgauss_epsilon`, `compute_rdp_dgaussian` with
 * q = 1 (Kairouz et al. 2021, Proposition 14) and tensorflow_privacy's `get_privacy_spent`
 * conversion (ε = r + log1p(−1/α) − log(δα)/(α − 1), 0 when δ² + expm1(−r) ≥ 0). ρ is
 * sup_α D_α/α of Proposition 14's first and third terms: ε_cdp = min{√(Δ2²/(nσ²) + 2τd),
 * Δ2/√(nσ²) + τ√d}, ρ = ε_cdp²/2. The bits were computed in the same script from the sub-Gaussian
 * bound n(C/γ + 1) + √(2nσ² ln(2d/p)).
 */

const BETA = Math.exp(-0.5);
const GOOGLE_RDP_ORDERS = [...Array.from({ length: 127 }, (_, k) => k + 2), 256]; // accounting_utils.RDP_ORDERS = range(2, 129) + (256,)

function expectRel(actual: number, expected: number, rel = 1e-12): void {
  if (expected === 0) expect(actual).toBe(0);
  else expect(Math.abs(actual - expected) / Math.abs(expected)).toBeLessThanOrEqual(rel);
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(isFedmqError(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    return;
  }
  throw new Error(`expected a FedmqError ${code}`);
}

/** Sums encoded vectors in Z_{2^bits}. */
function sumMod(vectors: Uint32Array[], bits: number): Uint32Array {
  const m = 2 ** bits;
  const out = new Uint32Array(vectors[0].length);
  for (const v of vectors) for (let i = 0; i < v.length; i++) out[i] = (out[i] + v[i]) % m;
  return out;
}

function clipped(x: Float64Array, c: number): Float64Array {
  const n = Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  return n <= c ? Float64Array.from(x) : x.map((v) => (v * c) / n);
}

// (name, C, γ, d, β, σ² per node, n) → Δ2, τ, ρ, all from the Python reference script (see the top of this file)
const KAT: Array<{ name: string; C: number; gamma: number; d: number; beta: number; sigma2: number; n: number; delta2: number; tau: number; rho: number }> = [
  { name: 'S1 (τ small but not zero)', C: 1, gamma: 0.01, d: 100, beta: BETA, sigma2: 1, n: 50, delta2: 100.64790112068906, tau: 0.000546030867875024, rho: 101.35460308678752 },
  { name: 'S2 (τ = 0: the Gaussian limit)', C: 0.5, gamma: 1e-3, d: 10000, beta: BETA, sigma2: 2500, n: 100, delta2: 503.0407538162291, tau: 0, rho: 0.5060999999999999 },
  { name: 'S3 (σ = 1/2, τ large)', C: 1, gamma: 0.25, d: 10, beta: BETA, sigma2: 0.25, n: 1000, delta2: 4.90725369530496, tau: 75.25162319038994, rho: 752.5643941815596 },
  { name: 'S4 (β = 0, one node)', C: 2, gamma: 0.1, d: 64, beta: 0, sigma2: 9, n: 1, delta2: 28, tau: 0, rho: 43.555555555555564 },
  { name: 'S5 (the linear branch Δ/√(nσ²) + τ√d wins)', C: 1, gamma: 0.05, d: 1000, beta: BETA, sigma2: 0.64, n: 20, delta2: 26.1880008458233, tau: 0.02307938314567766, rho: 32.39805373037946 },
];

describe('ddgL2Sensitivity, ddgTau, ddgZcdpRho: known answers (Google accounting_utils.py formulas, evaluated in Python)', () => {
  for (const k of KAT) {
    it(k.name, () => {
      const delta2 = ddgL2Sensitivity({ clipNorm: k.C, gamma: k.gamma, dims: k.d, beta: k.beta });
      expectRel(delta2, k.delta2);
      expectRel(ddgTau(k.sigma2, k.n), k.tau);
      expectRel(ddgZcdpRho({ l2Sensitivity: delta2, sigma2: k.sigma2, nodes: k.n, dims: k.d }), k.rho);
    });
  }

  it('Δ2 is the worst case (C/γ + √d) when β = 0 and never above it', () => {
    expect(ddgL2Sensitivity({ clipNorm: 1, gamma: 0.5, dims: 9, beta: 0 })).toBe(5);
    for (const beta of [1e-12, 1e-3, BETA, 0.99]) {
      expect(ddgL2Sensitivity({ clipNorm: 1, gamma: 0.01, dims: 1000, beta })).toBeLessThanOrEqual(100 + Math.sqrt(1000));
    }
  });

  it('large σ: ρ is the Gaussian mechanism’s Δ2²/(2nσ²)', () => {
    expect(ddgZcdpRho({ l2Sensitivity: 10, sigma2: 400, nodes: 7, dims: 1000 })).toBeCloseTo(100 / (2 * 7 * 400), 15);
  });

  it('refuses σ < 1/2 (the theorem’s assumption) and malformed inputs', () => {
    expectCode(() => ddgZcdpRho({ l2Sensitivity: 1, sigma2: DDG_MIN_SIGMA2 * 0.99, nodes: 2, dims: 1 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgZcdpRho({ l2Sensitivity: 1, sigma2: 1, nodes: 0, dims: 1 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgZcdpRho({ l2Sensitivity: -1, sigma2: 1, nodes: 1, dims: 1 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgL2Sensitivity({ clipNorm: 1, gamma: 0.1, dims: 10, beta: 1 }), ErrorCodes.BAD_CONFIG);
  });
});

describe('ddgEpsilon', () => {
  it('reproduces Google’s ddgauss_epsilon (q = 1, rounding on) where τ = 0, on its RDP orders', () => {
    // ddgauss_epsilon(gamma, local_stddev = γσ, num_clients, l2_sens = C, beta, dim, q = 1, steps, delta) in the Python reference
    const cases = [
      { C: 0.5, gamma: 1e-3, d: 10000, sigma2: 2500, n: 100, rounds: 10, delta: 1e-5, google: 19.98469148004289 },
      { C: 1, gamma: 2 ** -8, d: 50000, sigma2: 64 ** 2, n: 200, rounds: 100, delta: 1e-6, google: 20.30914919967376 },
    ];
    for (const c of cases) {
      const l2Sensitivity = ddgL2Sensitivity({ clipNorm: c.C, gamma: c.gamma, dims: c.d, beta: BETA });
      const rho = ddgZcdpRho({ l2Sensitivity, sigma2: c.sigma2, nodes: c.n, dims: c.d });
      expectRel(ddgEpsilon({ rho, rounds: c.rounds, delta: c.delta, orders: GOOGLE_RDP_ORDERS }), c.google, 1e-12);
    }
  });

  it('is conservative where τ > 0: at least Google’s per-order RDP ε (Python: ours 618.2542496245756, Google 618.0904403642131)', () => {
    const l2Sensitivity = ddgL2Sensitivity({ clipNorm: 1, gamma: 0.01, dims: 100, beta: BETA });
    const rho = ddgZcdpRho({ l2Sensitivity, sigma2: 1, nodes: 50, dims: 100 });
    const eps = ddgEpsilon({ rho, rounds: 3, delta: 1e-5, orders: GOOGLE_RDP_ORDERS });
    expectRel(eps, 618.2542496245756);
    expect(eps).toBeGreaterThanOrEqual(618.0904403642131);
  });

  it('uses dp_accounting’s default orders by default (Python reference with DEFAULT_RDP_ORDERS)', () => {
    const l2Sensitivity = ddgL2Sensitivity({ clipNorm: 0.5, gamma: 1e-3, dims: 10000, beta: BETA });
    const rho = ddgZcdpRho({ l2Sensitivity, sigma2: 2500, nodes: 100, dims: 10000 });
    expectRel(ddgEpsilon({ rho, rounds: 10, delta: 1e-5 }), 19.205586876136117);
    expectRel(ddgEpsilon({ rho: 101.35460308678752, rounds: 3, delta: 1e-5 }), 419.73783118408835);
  });

  it('composes additively: T rounds of ρ equal one round of T·ρ', () => {
    expect(ddgEpsilon({ rho: 0.01, rounds: 50, delta: 1e-5 })).toBeCloseTo(ddgEpsilon({ rho: 0.5, rounds: 1, delta: 1e-5 }), 12);
  });

  it('decreases in σ² (and ρ in σ²)', () => {
    const l2Sensitivity = ddgL2Sensitivity({ clipNorm: 1, gamma: 0.01, dims: 1000, beta: BETA });
    let prevRho = Infinity;
    let prevEps = Infinity;
    for (let s2 = 0.25; s2 < 1e8; s2 *= 1.7) {
      const rho = ddgZcdpRho({ l2Sensitivity, sigma2: s2, nodes: 100, dims: 1000 });
      const eps = ddgEpsilon({ rho, rounds: 100, delta: 1e-5 });
      expect(rho).toBeLessThan(prevRho);
      expect(eps).toBeLessThanOrEqual(prevEps);
      prevRho = rho;
      prevEps = eps;
    }
    expect(prevEps).toBeLessThan(0.1);
  });

  it('refuses bad inputs', () => {
    expectCode(() => ddgEpsilon({ rho: -1, rounds: 1, delta: 1e-5 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEpsilon({ rho: 1, rounds: 0, delta: 1e-5 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEpsilon({ rho: 1, rounds: 1, delta: 0 }), ErrorCodes.BAD_CONFIG);
  });
});

describe('ddgNoiseFor', () => {
  const plan = { delta: 1e-5, rounds: 100, nodes: 100, dims: 100000, l2Sensitivity: ddgL2Sensitivity({ clipNorm: 1, gamma: 2 ** -8, dims: 100000, beta: BETA }) };
  const epsAt = (sigma2: number) => ddgEpsilon({ rho: ddgZcdpRho({ ...plan, sigma2 }), rounds: plan.rounds, delta: plan.delta });

  it('inverts ddgEpsilon: the σ² found meets the target, a slightly smaller one does not', () => {
    for (const target of [0.5, 3, 8]) {
      const sigma2 = ddgNoiseFor({ ...plan, targetEpsilon: target });
      expect(epsAt(sigma2)).toBeLessThanOrEqual(target);
      expect(epsAt(sigma2 * (1 - 1e-7))).toBeGreaterThan(target);
      expect(Math.abs(epsAt(sigma2) - target)).toBeLessThan(1e-6 * target);
    }
  });

  it('returns σ² = 1/4 when that already suffices, and refuses an unreachable target', () => {
    expect(ddgNoiseFor({ targetEpsilon: 1e6, delta: 1e-5, rounds: 1, nodes: 10, dims: 10, l2Sensitivity: 1 })).toBe(DDG_MIN_SIGMA2);
    expectCode(() => ddgNoiseFor({ targetEpsilon: 1e-3, delta: 1e-5, rounds: 1, nodes: 1, dims: 1, l2Sensitivity: 1e12 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgNoiseFor({ ...plan, targetEpsilon: 0 }), ErrorCodes.BAD_CONFIG);
  });
});

describe('ddgBits', () => {
  it('known answers (Python reference of the sub-Gaussian bound)', () => {
    expect(ddgBits({ nodes: 100, dims: 1e6, clipNorm: 1, gamma: 2 ** -10, sigma2: 100 ** 2, wrapProbability: 1e-9 })).toBe(18); // bound 110894.27
    expect(ddgBits({ nodes: 10, dims: 1000, clipNorm: 0.5, gamma: 0.01, sigma2: 16, wrapProbability: 1e-6 })).toBe(11); // bound 592.78
    expect(ddgBits({ nodes: 1000, dims: 1e5, clipNorm: 1, gamma: 2 ** -20, sigma2: 1, wrapProbability: 1e-9 })).toBe(31); // bound 1048577256.6
  });

  it('is the smallest b with 2·bound < 2^b', () => {
    for (const nodes of [1, 3, 17, 256]) {
      for (const sigma2 of [0, 1, 1e4]) {
        const p = { nodes, dims: 5000, clipNorm: 1, gamma: 1 / 64, sigma2, wrapProbability: 1e-8 };
        const b = ddgBits(p);
        const bound = nodes * (64 + 1) + Math.sqrt(2 * nodes * sigma2 * Math.log((2 * 5000) / 1e-8));
        expect(2 * bound).toBeLessThan(2 ** b);
        expect(2 * bound).toBeGreaterThanOrEqual(2 ** (b - 1));
      }
    }
  });

  it('refuses a configuration that needs more than 32 bits (FEDMQ_SECAGG_RANGE)', () => {
    expectCode(() => ddgBits({ nodes: 10000, dims: 1000, clipNorm: 1, gamma: 2 ** -20, sigma2: 1, wrapProbability: 1e-9 }), ErrorCodes.SECAGG_RANGE);
    expectCode(() => ddgBits({ nodes: 2, dims: 1000, clipNorm: 1, gamma: 1, sigma2: 2 ** 62, wrapProbability: 1e-9 }), ErrorCodes.SECAGG_RANGE);
    expectCode(() => ddgBits({ nodes: 2, dims: 10, clipNorm: 1, gamma: 1, sigma2: 1, wrapProbability: 0 }), ErrorCodes.BAD_CONFIG);
  });
});

describe('ddgEncode / ddgDecode', () => {
  const base: DdgParams = { clipNorm: 1, gamma: 0.1, sigma2: 0, bits: 16, beta: BETA };

  it('decodes the centred lift', () => {
    expect(Array.from(ddgDecode(Uint32Array.from([0, 7, 8, 15]), 4, 0.5))).toEqual([0, 3.5, -4, -0.5]);
    expect(Array.from(ddgDecode(Uint32Array.from([0xffffffff, 0x7fffffff, 0x80000000]), 32, 1))).toEqual([-1, 2 ** 31 - 1, -(2 ** 31)]);
    expectCode(() => ddgDecode(Uint32Array.from([16]), 4, 1), ErrorCodes.SECAGG_RANGE);
  });

  it('round trip without noise: the clipped vector up to γ, the input untouched', () => {
    const rng = seededTestRandom('ddg round trip');
    for (const scale of [0.3, 3]) {
      const x = Float64Array.from({ length: 50 }, (_, i) => scale * Math.sin(i + 1) / 5);
      const copy = Float64Array.from(x);
      const { values, unclipped } = ddgEncode(x, base, rng);
      expect(x).toEqual(copy);
      const want = clipped(x, 1);
      expect(unclipped).toBe(Math.sqrt(x.reduce((s, v) => s + v * v, 0)) <= 1);
      const got = ddgDecode(values, base.bits, base.gamma);
      for (let i = 0; i < x.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(base.gamma);
    }
    const f32 = Float32Array.from([0.25, -0.5, 0.125]);
    const { values } = ddgEncode(f32, { ...base, gamma: 1 / 8 }, rng); // on the grid: exact
    expect(Array.from(ddgDecode(values, base.bits, 1 / 8))).toEqual([0.25, -0.5, 0.125]);
  });

  it('the rounding is unbiased (4000 seeded draws, every coordinate within 4.5 standard errors)', () => {
    const rng = seededTestRandom('ddg unbiased');
    const x = Float64Array.from([0.013, -0.027, 0.355, -0.149, 0.0501, 0.21, -0.31, 0.0999]); // ‖x‖ ≈ 0.6: the norm bound never binds
    const draws = 4000;
    const sums = new Float64Array(x.length);
    for (let k = 0; k < draws; k++) {
      const got = ddgDecode(ddgEncode(x, base, rng).values, base.bits, base.gamma);
      for (let i = 0; i < x.length; i++) sums[i] += got[i];
    }
    let chi2 = 0;
    for (let i = 0; i < x.length; i++) {
      const y = x[i] / base.gamma;
      const p = y - Math.floor(y);
      const se = (base.gamma * Math.sqrt(p * (1 - p))) / Math.sqrt(draws);
      const z = (sums[i] / draws - x[i]) / se;
      expect(Math.abs(z)).toBeLessThan(4.5);
      chi2 += z * z;
    }
    expect(chi2).toBeLessThan(26.1); // χ²(8) upper 0.1% point
  });

  it('a sum of encoded vectors mod 2^b decodes to the sum of the inputs plus noise of variance n·Var N_Z(0, σ²)', () => {
    // inputs on the γ = 2^-7 grid, so rounding is exact and the residual is the noise alone
    const rng = seededTestRandom('ddg sum');
    const nodes = 5;
    const dims = 20000;
    const gamma = 2 ** -7;
    const sigma2 = 16;
    const bits = ddgBits({ nodes, dims, clipNorm: 1, gamma, sigma2, wrapProbability: 1e-9 });
    expect(bits).toBe(11); // a small ring: negative sums really wrap
    const p: DdgParams = { clipNorm: 1, gamma, sigma2, bits, beta: BETA };
    const inputs: Float64Array[] = [];
    for (let j = 0; j < nodes; j++) {
      const x = new Float64Array(dims);
      for (let i = 0; i < 10000; i++) x[(i * 2 + j) % dims] = (rng.nextUint32() & 1 ? 1 : -1) * gamma; // ‖x‖² = 10000·2^-14 < 1
      inputs.push(x);
    }
    const decoded = ddgDecode(sumMod(inputs.map((x) => ddgEncode(x, p, rng).values), bits), bits, gamma);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < dims; i++) {
      let want = 0;
      for (const x of inputs) want += x[i];
      const r = (decoded[i] - want) / gamma; // Σ of the nodes' noise, an integer
      expect(Number.isInteger(r)).toBe(true);
      s1 += r;
      s2 += r * r;
    }
    const variance = nodes * discreteGaussianVariance(sigma2); // ≈ 80
    const mean = s1 / dims;
    expect(Math.abs(mean)).toBeLessThan(5 * Math.sqrt(variance / dims)); // 5 standard errors
    const sampleVar = s2 / dims - mean * mean;
    expect(Math.abs(sampleVar / variance - 1)).toBeLessThan(5 * Math.sqrt(2 / dims)); // 5 standard errors of a Gaussian sample variance (≈ 5%)
  });

  it('off the grid the residual variance is the rounding’s Σ p(1 − p) plus the noise’s', () => {
    const rng = seededTestRandom('ddg sum off grid');
    const nodes = 4;
    const dims = 10000;
    const p: DdgParams = { clipNorm: 1, gamma: 0.01, sigma2: 9, bits: 12, beta: BETA };
    const inputs = Array.from({ length: nodes }, () => {
      const x = Float64Array.from({ length: dims }, () => rng.nextDouble() - 0.5);
      const n = Math.sqrt(x.reduce((s, v) => s + v * v, 0));
      return x.map((v) => (v * 0.5) / n); // ‖x‖ = 0.5 < C: not clipped, the norm bound never binds
    });
    const decoded = ddgDecode(sumMod(inputs.map((x) => ddgEncode(x, p, rng).values), p.bits), p.bits, p.gamma);
    const noiseVar = nodes * discreteGaussianVariance(p.sigma2);
    let ratio = 0;
    for (let i = 0; i < dims; i++) {
      let want = 0;
      let roundVar = 0;
      for (const x of inputs) {
        want += x[i];
        const y = x[i] / p.gamma;
        const f = y - Math.floor(y);
        roundVar += f * (1 - f);
      }
      const r = (decoded[i] - want) / p.gamma;
      ratio += (r * r) / (roundVar + noiseVar);
    }
    expect(Math.abs(ratio / dims - 1)).toBeLessThan(0.075); // 5 standard errors (≈ √(2/d) = 1.4%)
  });

  it('conditional rounding: re-rounds until the norm bound holds', () => {
    // d = 1, y = 0.5: unconditionally x̃ = 1 half the time; with β → 1 the bound is Δ2² ≈ 0.5, so only 0 is accepted
    const rng = seededTestRandom('ddg conditional');
    const tight: DdgParams = { clipNorm: 0.5, gamma: 1, sigma2: 0, bits: 8, beta: 1 - 2 ** -40 };
    const loose: DdgParams = { ...tight, beta: 0 };
    let onesTight = 0;
    let onesLoose = 0;
    for (let k = 0; k < 400; k++) {
      onesTight += ddgEncode(Float64Array.of(0.5), tight, rng).values[0];
      onesLoose += ddgEncode(Float64Array.of(0.5), loose, rng).values[0];
    }
    expect(onesTight).toBe(0);
    expect(onesLoose).toBeGreaterThan(150);
    expect(onesLoose).toBeLessThan(250);
  });

  it(`gives up with FEDMQ_SECAGG_RANGE after ${DDG_MAX_ROUNDING_TRIES} roundings that miss the bound`, () => {
    let draws = 0;
    const alwaysUp = {
      nextUint53: () => {
        draws++;
        return 0; // always below the fractional part: always rounds up
      },
    } as unknown as RandomSource;
    expectCode(() => ddgEncode(Float64Array.of(0.5), { clipNorm: 0.5, gamma: 1, sigma2: 0, bits: 8, beta: 1 - 2 ** -40 }, alwaysUp), ErrorCodes.SECAGG_RANGE);
    expect(draws).toBe(DDG_MAX_ROUNDING_TRIES);
  });

  it('refuses non-finite values, bad parameters and a ring too small for one node', () => {
    const rng = seededTestRandom('ddg refuse');
    expectCode(() => ddgEncode(Float64Array.of(1, NaN), base, rng), ErrorCodes.NON_FINITE);
    expectCode(() => ddgEncode(Float64Array.of(1), { ...base, bits: 33 }, rng), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEncode(Float64Array.of(1), { ...base, gamma: 0 }, rng), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEncode(Float64Array.of(1), { ...base, sigma2: -1 }, rng), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEncode(Float64Array.of(1), { ...base, beta: 1 }, rng), ErrorCodes.BAD_CONFIG);
    expectCode(() => ddgEncode(Float64Array.of(1), { ...base, bits: 4 }, rng), ErrorCodes.SECAGG_RANGE); // C/γ + 1 = 11 ≥ 2^3
  });
});
