import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import {
  DiscreteGaussian, bernoulliExp, discreteGaussian, discreteGaussianMoments, discreteGaussianVariance, discreteGaussianVector,
  discreteGaussianVectorBigInt, discreteLaplace, isqrt, rationalFromNumber,
} from './discrete-gaussian.ts';
import { seededTestRandom } from './testing.ts';
import { chiSquare } from './stats.testutil.ts';

// Bounds. For N i.i.d. draws X of N_Z(0, σ²) the sample mean has standard error √(v/N) and the
// sample second moment (1/N)ΣX² (the mean is known to be 0) has standard error √((μ₄ − v²)/N),
// where v = E X² and μ₄ = E X⁴ are computed exactly from the pmf, not taken as σ² and 3σ⁴.
// Checks are at 5 SE (two-sided false-alarm rate 5.7e-7 each). Chi-square tests are at
// significance 1e-6 with bins whose expected count is ≥ 5 (the tails merged into the end bins).
// The streams are seeded ChaCha20 (tests only), so each check is deterministic.

const N = 200_000;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

/** Pr[X = x] of N_Z(0, σ²) (float64, normalised by the same exact-definition sum). */
function pmf(sigma2: number): (x: number) => number {
  const [z] = discreteGaussianMoments(sigma2, [0]);
  return (x) => Math.exp((-x * x) / (2 * sigma2)) / z;
}

/** Chi-square of integer draws against a pmf: bins −K..K with expected count ≥ 5, tails merged into the end bins. */
function pmfChiSquare(draws: ArrayLike<number>, p: (x: number) => number): { p: number; df: number } {
  const n = draws.length;
  let k = 0;
  while (n * p(k + 1) >= 5) k++;
  const counts = new Array(2 * k + 1).fill(0);
  for (let i = 0; i < n; i++) counts[Math.max(-k, Math.min(k, draws[i])) + k]++;
  const probs = counts.map((_, b) => p(b - k));
  let tail = 0;
  for (let x = k + 1; p(x) > 1e-300; x++) tail += p(x);
  probs[0] += tail;
  probs[2 * k] += tail;
  return chiSquare(counts, probs);
}

describe('exact rational helpers', () => {
  it('rationalFromNumber is the exact value of the double (den a power of two, num/den rounds back)', () => {
    for (const x of [0, 1, 3, 0.1, 0.5, 1.3 * 1.3, 1e-300, 5e-324, 2 ** 60, 123456.789]) {
      const { num, den } = rationalFromNumber(x);
      expect(den > 0n && (den & (den - 1n)) === 0n).toBe(true);
      expect(num === 0n || (num & 1n) === 1n || den === 1n).toBe(true); // lowest terms
      // Exact check against the IEEE 754 bits: x = m·2^e, so num/den = x ⟺ num·2^−e = m·den (e < 0) or num = m·2^e·den.
      const view = new DataView(new ArrayBuffer(8));
      view.setFloat64(0, x);
      const bits = view.getBigUint64(0);
      const biased = Number((bits >> 52n) & 0x7ffn);
      const frac = bits & ((1n << 52n) - 1n);
      const m = biased === 0 ? frac : frac | (1n << 52n);
      const e = biased === 0 ? -1074 : biased - 1075;
      expect(e < 0 ? num * 2n ** BigInt(-e) === m * den : num === m * 2n ** BigInt(e) * den).toBe(true);
    }
    expect(rationalFromNumber(0.1)).toEqual({ num: 3602879701896397n, den: 2n ** 55n }); // 0.1 = 0x1.999999999999ap-4
    for (const bad of [-1, NaN, Infinity]) expect(code(() => rationalFromNumber(bad))).toBe(ErrorCodes.BAD_CONFIG);
  });

  it('isqrt(n) = ⌊√n⌋ exactly, also far beyond 2^53', () => {
    const rng = seededTestRandom('isqrt');
    const cases = [0n, 1n, 2n, 3n, 4n, 15n, 16n, 17n, 2n ** 106n - 1n, 2n ** 106n, 10n ** 50n];
    for (let i = 0; i < 200; i++) cases.push(rng.nextBigInt(2n ** BigInt(1 + (i % 300))));
    for (const n of cases) {
      const r = isqrt(n);
      expect(r * r <= n && (r + 1n) * (r + 1n) > n).toBe(true);
    }
  });
});

describe('the building blocks of CKS 2020', () => {
  it.each([
    [0n, 1n], [1n, 2n], [1n, 1n], [3n, 2n], [5n, 1n], [7n, 3n],
  ])('bernoulliExp(%s/%s) is true with probability exp(−a/b) (Algorithm 1), within 5 SE over 100,000 draws', (a, b) => {
    const rng = seededTestRandom(`bexp ${a}/${b}`);
    const p = Math.exp(-Number(a) / Number(b));
    let hits = 0;
    for (let i = 0; i < 100_000; i++) if (bernoulliExp(a, b, rng)) hits++;
    const se = Math.sqrt((p * (1 - p)) / 100_000);
    expect(Math.abs(hits / 100_000 - p)).toBeLessThanOrEqual(5 * se);
  });

  it.each([1n, 3n, 20n])('discreteLaplace(t = %s) matches the pmf (e^{1/t} − 1)/(e^{1/t} + 1)·e^{−|y|/t} (chi-square, α = 1e-6)', (t) => {
    const rng = seededTestRandom(`dlap ${t}`);
    const draws = new Int32Array(100_000);
    for (let i = 0; i < draws.length; i++) draws[i] = Number(discreteLaplace(t, rng));
    const s = Number(t);
    const c = (Math.exp(1 / s) - 1) / (Math.exp(1 / s) + 1);
    expect(pmfChiSquare(draws, (y) => c * Math.exp(-Math.abs(y) / s)).p).toBeGreaterThan(1e-6);
  });
});

describe('discreteGaussianVariance: the true variance of N_Z(0, σ²), from the pmf', () => {
  it('satisfies the Poisson-summation identity v(σ²) = σ²(1 − 4π²σ²·v(1/(4π²σ²))) (CKS 2020, arXiv v3 Lemma 20)', () => {
    for (const s2 of [0.05, 0.25, 1, 2, 10]) {
      const dual = discreteGaussianVariance(1 / (4 * Math.PI * Math.PI * s2));
      const viaIdentity = s2 * (1 - 4 * Math.PI * Math.PI * s2 * dual);
      expect(Math.abs(discreteGaussianVariance(s2) - viaIdentity)).toBeLessThan(1e-12 * s2);
    }
  });

  it('is below σ² (markedly for small σ) and equal to it to 1e-12 for σ ≥ 2', () => {
    expect(discreteGaussianVariance(0.25)).toBeLessThan(0.25 * 0.9);
    expect(discreteGaussianVariance(1)).toBeLessThan(1);
    expect(Math.abs(discreteGaussianVariance(4) - 4)).toBeLessThan(1e-12 * 4);
    expect(discreteGaussianVariance(0)).toBe(0);
  });
});

describe('DiscreteGaussian (CKS 2020 Algorithm 3): moments over 200,000 seeded draws', () => {
  it.each([0.5, 1, 5, 100])('σ = %s: mean within 5 SE of 0, second moment within 5 SE of the exact variance', (sigma) => {
    const s2 = sigma * sigma;
    const g = new DiscreteGaussian(s2, seededTestRandom(`dg moments ${sigma}`));
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < N; i++) {
      const x = Number(g.sample());
      sum += x;
      sumSq += x * x;
    }
    const [z, m2, m4] = discreteGaussianMoments(s2, [0, 2, 4]);
    const v = m2 / z;
    const mu4 = m4 / z;
    expect(Math.abs(sum / N)).toBeLessThan(5 * Math.sqrt(v / N));
    const seVar = Math.sqrt((mu4 - v * v) / N);
    expect(Math.abs(sumSq / N - v)).toBeLessThan(5 * seVar);
    if (sigma === 0.5) {
      // The test can tell N_Z from σ²: the true variance (0.2138) is > 30 SE below σ² = 0.25.
      expect(s2 - v).toBeGreaterThan(30 * seVar);
    }
  });

  it.each([0.5, 1, 2, 3])('σ = %s: the pmf passes chi-square at α = 1e-6 over 200,000 draws', (sigma) => {
    const s2 = sigma * sigma;
    const g = new DiscreteGaussian(s2, seededTestRandom(`dg chi ${sigma}`));
    const draws = new Int32Array(N);
    for (let i = 0; i < N; i++) draws[i] = Number(g.sample());
    const result = pmfChiSquare(draws, pmf(s2));
    expect(result.df).toBeGreaterThanOrEqual(2);
    expect(result.p).toBeGreaterThan(1e-6);
  });

  it('takes σ² as an exact rational: σ² = 1/3 passes chi-square against exp(−3x²/2)', () => {
    const g = new DiscreteGaussian({ num: 1n, den: 3n }, seededTestRandom('dg third'));
    const draws = new Int32Array(100_000);
    for (let i = 0; i < draws.length; i++) draws[i] = Number(g.sample());
    expect(pmfChiSquare(draws, pmf(1 / 3)).p).toBeGreaterThan(1e-6);
  });

  it('σ² = 0 is the constant 0; bad σ² is refused with FEDMQ_BAD_CONFIG', () => {
    expect(discreteGaussian(0, seededTestRandom('zero'))).toBe(0n);
    for (const bad of [-1, NaN, Infinity]) expect(code(() => new DiscreteGaussian(bad))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => new DiscreteGaussian({ num: 1n, den: 0n }))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => new DiscreteGaussian({ num: -1n, den: 2n }))).toBe(ErrorCodes.BAD_CONFIG);
  });

  it('defaults to the CSPRNG', () => {
    const xs = Array.from({ length: 20 }, () => discreteGaussian(1e6));
    expect(new Set(xs).size).toBeGreaterThan(15);
  });
});

describe('discreteGaussianVector / discreteGaussianVectorBigInt', () => {
  it('are n successive draws of the same sampler', () => {
    const v = discreteGaussianVector(500, 25, seededTestRandom('vec'));
    const g = new DiscreteGaussian(25, seededTestRandom('vec'));
    expect(v).toBeInstanceOf(Int32Array);
    expect(Array.from(v)).toEqual(Array.from({ length: 500 }, () => Number(g.sample())));
    const b = discreteGaussianVectorBigInt(500, 25, seededTestRandom('vec'));
    expect(Array.from(b, Number)).toEqual(Array.from(v));
  });

  it('σ = 2^40 (BigInt64): mean and variance / σ² within 5 SE (large-σ regime, variance = σ² to 1e-15)', () => {
    const n = 20_000;
    const sigma = 2 ** 40;
    const b = discreteGaussianVectorBigInt(n, { num: 2n ** 80n, den: 1n }, seededTestRandom('vec big'));
    let m1 = 0;
    let m2 = 0;
    for (const x of b) {
      const z = Number(x) / sigma;
      m1 += z;
      m2 += z * z;
    }
    // For large σ, N_Z(0, σ²)/σ has the N(0,1) moments up to O(e^{−2π²σ²}): SE √(1/n) and √(2/n).
    expect(Math.abs(m1 / n)).toBeLessThan(5 * Math.sqrt(1 / n));
    expect(Math.abs(m2 / n - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
  });

  it('refuses σ above the int32 limit (2^25) for Int32Array, above 2^57 for BigInt64Array, and bad lengths', () => {
    expect(code(() => discreteGaussianVector(1, 2 ** 50 + 2 ** 30))).toBe(ErrorCodes.BAD_CONFIG);
    expect(discreteGaussianVector(3, 2 ** 50, seededTestRandom('edge')).length).toBe(3);
    expect(code(() => discreteGaussianVectorBigInt(1, { num: 2n ** 114n + 1n, den: 1n }))).toBe(ErrorCodes.BAD_CONFIG);
    for (const n of [-1, 1.5, NaN]) expect(code(() => discreteGaussianVector(n, 1))).toBe(ErrorCodes.BAD_CONFIG);
    expect(discreteGaussianVector(0, 1).length).toBe(0);
  });
});
