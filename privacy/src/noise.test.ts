import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { addGaussianNoise, fillGaussian, gaussian } from './noise.ts';
import { seededTestRandom } from './testing.ts';
import { chiSquare, ksCritical, ksStatistic, normalCdf } from './stats.testutil.ts';

// Bounds. Each sample moment m̂_k = (1/N)Σ z^k of N(0,1) draws has mean E z^k and standard error
// √((E z^{2k} − (E z^k)²)/N), with E z² = 1, E z⁴ = 3, E z⁸ = 105: SE(mean) = √(1/N),
// SE(m̂₂) = √(2/N), SE(m̂₄) = √(96/N). Checks are at 5 SE (two-sided false-alarm rate 5.7e-7 each).
// The KS and chi-square tests are at significance α = 1e-6. The streams are seeded (ChaCha20,
// tests only), so every check is deterministic; the bounds are what justify them, not the seeds.

const N = 200_000;

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

function moments(z: ArrayLike<number>): { m1: number; m2: number; m4: number } {
  let m1 = 0;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < z.length; i++) {
    const v = z[i];
    m1 += v;
    m2 += v * v;
    m4 += v * v * v * v;
  }
  return { m1: m1 / z.length, m2: m2 / z.length, m4: m4 / z.length };
}

function expectStandardNormalMoments(z: ArrayLike<number>): void {
  const n = z.length;
  const { m1, m2, m4 } = moments(z);
  expect(Math.abs(m1)).toBeLessThan(5 * Math.sqrt(1 / n));
  expect(Math.abs(m2 - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
  expect(Math.abs(m4 - 3)).toBeLessThan(5 * Math.sqrt(96 / n));
}

/** Chi-square of z against N(0,1) on bins of width 0.25 over [−5, 5] plus the two tails. */
function normalChiSquare(z: ArrayLike<number>): number {
  const edges: number[] = [];
  for (let e = -5; e <= 5 + 1e-9; e += 0.25) edges.push(e);
  const counts = new Array(edges.length + 1).fill(0);
  for (let i = 0; i < z.length; i++) {
    let b = 0;
    while (b < edges.length && z[i] >= edges[b]) b++;
    counts[b]++;
  }
  const probs = counts.map((_, b) => (b === edges.length ? 1 : normalCdf(edges[b])) - (b === 0 ? 0 : normalCdf(edges[b - 1])));
  return chiSquare(counts, probs).p;
}

describe('fillGaussian: Box–Muller N(0, 1) from a seeded ChaCha20 stream', () => {
  const z = fillGaussian(new Float64Array(N), seededTestRandom('gaussian moments'));

  it('mean, variance and fourth moment of 200,000 draws are within 5 standard errors of 0, 1, 3', () => {
    expectStandardNormalMoments(z);
  });

  it('passes Kolmogorov–Smirnov against Φ at α = 1e-6', () => {
    expect(ksStatistic(z, normalCdf)).toBeLessThan(ksCritical(N, 1e-6));
  });

  it('passes chi-square against N(0, 1) on 0.25-wide bins, tails beyond ±5 included, at α = 1e-6', () => {
    expect(normalChiSquare(z)).toBeGreaterThan(1e-6);
  });

  it('the two values of each pair are uncorrelated (|r| < 5/√(N/2)) and even and odd draws have the same law', () => {
    const half = N / 2;
    let sxy = 0;
    for (let i = 0; i < half; i++) sxy += z[2 * i] * z[2 * i + 1];
    // E[xy] = 0 and Var[xy] = E x² E y² = 1 for independent N(0,1) x, y.
    expect(Math.abs(sxy / half)).toBeLessThan(5 / Math.sqrt(half));
    const even = z.filter((_, i) => i % 2 === 0);
    const odd = z.filter((_, i) => i % 2 === 1);
    expectStandardNormalMoments(even);
    expectStandardNormalMoments(odd);
  });

  it('no draw exceeds the Box–Muller radius √(106 ln 2) ≈ 8.57 that 53-bit uniforms allow', () => {
    let max = 0;
    for (const v of z) max = Math.max(max, Math.abs(v));
    expect(max).toBeLessThanOrEqual(Math.sqrt(-2 * Math.log(2 ** -53)));
  });

  it('an odd length is filled completely', () => {
    const out = fillGaussian(new Float64Array(5).fill(NaN), seededTestRandom('odd'));
    expect(out.every((v) => Number.isFinite(v))).toBe(true);
  });
});

describe('gaussian: one N(0, 1) draw', () => {
  it('50,000 single draws pass the moment checks and KS at α = 1e-6', () => {
    const rng = seededTestRandom('single');
    const z = new Float64Array(50_000);
    for (let i = 0; i < z.length; i++) z[i] = gaussian(rng);
    expectStandardNormalMoments(z);
    expect(ksStatistic(z, normalCdf)).toBeLessThan(ksCritical(z.length, 1e-6));
  });

  it('defaults to the CSPRNG', () => {
    const a = gaussian();
    const b = gaussian();
    expect(Number.isFinite(a) && Number.isFinite(b) && a !== b).toBe(true);
  });
});

describe('addGaussianNoise: N(0, σ²) added to float32 values in place', () => {
  it('target[i] becomes fl32(target[i] + σ·z_i), z the fillGaussian stream: one rounding, float64 sum', () => {
    const n = 10_001;
    const x = new Float32Array(n).map((_, i) => Math.fround(Math.sin(i) * 10 ** ((i % 9) - 4)));
    const sigma = 0.37;
    const target = Float32Array.from(x);
    addGaussianNoise(target, sigma, seededTestRandom('spec'));
    const z = fillGaussian(new Float64Array(n), seededTestRandom('spec'));
    let mismatches = 0;
    for (let i = 0; i < n; i++) if (target[i] !== Math.fround(x[i] + sigma * z[i])) mismatches++;
    expect(mismatches).toBe(0);
  });

  it.each([0.01, 1, 250])('σ = %s: the added noise / σ has N(0, 1) moments and passes KS over 200,000 parameters', (sigma) => {
    // x = 0, so the added noise is fl32(σz): its float32 rounding (2^-24 relative) is far below the bounds.
    const target = new Float32Array(N);
    addGaussianNoise(target, sigma, seededTestRandom(`noise ${sigma}`));
    const z = Float64Array.from(target, (v) => v / sigma);
    expectStandardNormalMoments(z);
    expect(ksStatistic(z, normalCdf)).toBeLessThan(ksCritical(N, 1e-6));
  });

  it('σ = 0 leaves the target unchanged and draws nothing', () => {
    const target = Float32Array.of(1, -2, 3.5);
    const rng = seededTestRandom('zero');
    addGaussianNoise(target, 0, rng);
    expect(Array.from(target)).toEqual([1, -2, 3.5]);
    expect(rng.nextUint32()).toBe(seededTestRandom('zero').nextUint32());
  });

  it('refuses a negative or non-finite σ (FEDMQ_BAD_CONFIG)', () => {
    for (const s of [-1, NaN, Infinity]) expect(code(() => addGaussianNoise(new Float32Array(2), s, seededTestRandom('s')))).toBe(ErrorCodes.BAD_CONFIG);
  });

  it('refuses NaN or ±Infinity in the target before writing anything (FEDMQ_NON_FINITE)', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const target = Float32Array.of(1, 2, bad, 4);
      expect(code(() => addGaussianNoise(target, 1, seededTestRandom('nf')))).toBe(ErrorCodes.NON_FINITE);
      expect(target[0]).toBe(1);
      expect(target[3]).toBe(4);
    }
  });

  it('a noised value that overflows float32 is refused (FEDMQ_NON_FINITE), never left as Infinity silently', () => {
    // At the float32 maximum any positive noise above half an ulp (2^103) rounds to +Infinity;
    // 64 draws at σ = 1e38 include a positive one except with probability 2^-64.
    const target = new Float32Array(64).fill(3.4028234663852886e38);
    expect(code(() => addGaussianNoise(target, 1e38, seededTestRandom('overflow')))).toBe(ErrorCodes.NON_FINITE);
  });

  it('defaults to the CSPRNG', () => {
    const target = new Float32Array(1000);
    addGaussianNoise(target, 1);
    expect(new Set(target).size).toBeGreaterThan(990); // distinct draws (a few float32 collisions are possible)
  });
});
