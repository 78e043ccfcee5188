import { describe, expect, it } from 'vitest';
import { lossThresholdAuc, rocAuc } from './membership.ts';
import { fillGaussian } from './noise.ts';
import { seededTestRandom } from './testing.ts';
import type { RandomSource } from './random.ts';

/** P(member > non-member) + ½·P(tie) by counting all m·n pairs. */
function bruteForceAuc(members: ArrayLike<number>, nonMembers: ArrayLike<number>): number {
  let wins = 0;
  for (let i = 0; i < members.length; i++) {
    for (let j = 0; j < nonMembers.length; j++) {
      if (members[i] > nonMembers[j]) wins += 1;
      else if (members[i] === nonMembers[j]) wins += 0.5;
    }
  }
  return wins / (members.length * nonMembers.length);
}

/**
 * Standard deviation of the AUC estimate of a true AUC `a` from m members and n non-members,
 * Hanley & McNeil 1982 (Radiology 143): Q1 = a/(2 − a), Q2 = 2a²/(1 + a), exact
 * for exponential scores and close for others.
 */
function hanleyMcNeilSd(a: number, m: number, n: number): number {
  const q1 = a / (2 - a);
  const q2 = (2 * a * a) / (1 + a);
  return Math.sqrt((a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n));
}

/** `n` integers uniform in [0, k) (many ties for small k). */
function ints(rng: RandomSource, n: number, k: number): number[] {
  return Array.from({ length: n }, () => rng.nextInt(k));
}

describe('rocAuc', () => {
  it('matches values computed by hand, ties counting one half', () => {
    // pairs (member, non-member): 1 beats 0 only (1 of 3); 2 ties both 2s and beats 0 (2 of 3); 3 beats all (3 of 3): 6/9
    expect(rocAuc([1, 2, 3], [2, 2, 0])).toBe(6 / 9);
    // 0.5 vs 0.5 tie (½), vs 1 loses (0), vs 0 wins (1): 1.5/3
    expect(rocAuc([0.5], [0.5, 1, 0])).toBe(0.5);
    expect(rocAuc([5, 5], [5])).toBe(0.5);
    expect(rocAuc([1], [0])).toBe(1);
    expect(rocAuc([0], [1])).toBe(0);
    // 4 members, 2 non-members: 3 and 3 beat both (4), 2 ties 2 and beats 1 (1.5), 1 ties 1 (0.5): 6/8
    expect(rocAuc(Float32Array.from([3, 1, 3, 2]), Float64Array.from([2, 1]))).toBe(6 / 8);
  });

  it('treats -0 and +0 as a tie and infinities as values', () => {
    expect(rocAuc([0], [-0])).toBe(0.5);
    expect(rocAuc([-0, 0], [0, -0])).toBe(0.5);
    expect(rocAuc([Infinity], [Infinity, 1])).toBe(0.75);
    expect(rocAuc([-Infinity, 0], [-Infinity])).toBe(0.75);
  });

  it('is 1 for separated sets and 0 for the reverse', () => {
    const rng = seededTestRandom('membership separated');
    const low = Array.from({ length: 300 }, () => rng.nextDouble());
    const high = Array.from({ length: 200 }, () => 1 + rng.nextDouble());
    expect(rocAuc(high, low)).toBe(1);
    expect(rocAuc(low, high)).toBe(0);
  });

  it('is symmetric: AUC(a, b) = 1 − AUC(b, a)', () => {
    const rng = seededTestRandom('membership symmetry');
    for (let trial = 0; trial < 20; trial++) {
      const a = ints(rng, 1 + rng.nextInt(50), 1 + rng.nextInt(10));
      const b = ints(rng, 1 + rng.nextInt(50), 1 + rng.nextInt(10));
      // U(a,b) + U(b,a) = m·n exactly, so the two AUCs add to 1 up to one rounding each
      expect(rocAuc(a, b) + rocAuc(b, a)).toBeCloseTo(1, 14);
    }
  });

  it('equals the O(m·n) pair count exactly on random inputs, with and without ties', () => {
    const rng = seededTestRandom('membership brute force');
    for (let trial = 0; trial < 60; trial++) {
      const m = 1 + rng.nextInt(200);
      const n = 1 + rng.nextInt(200);
      const tied = trial % 2 === 0;
      const k = 1 + rng.nextInt(20);
      const a = tied ? ints(rng, m, k) : Array.from({ length: m }, () => rng.nextDouble());
      const b = tied ? ints(rng, n, k) : Array.from({ length: n }, () => rng.nextDouble() * 1.2 - 0.1);
      expect(rocAuc(a, b)).toBe(bruteForceAuc(a, b));
    }
  });

  it('is 0.5 within 4 standard deviations for two samples of one distribution', () => {
    // Under H0 (no ties) Var(AUC) = (m + n + 1) / (12·m·n) (Mann & Whitney 1947); ties only lower it.
    const rng = seededTestRandom('membership null');
    const m = 3000;
    const n = 2000;
    const sd = Math.sqrt((m + n + 1) / (12 * m * n)); // ≈ 0.0083
    const a = fillGaussian(new Float64Array(m), rng);
    const b = fillGaussian(new Float64Array(n), rng);
    expect(Math.abs(rocAuc(a, b) - 0.5)).toBeLessThan(4 * sd);
    const ta = ints(rng, m, 5);
    const tb = ints(rng, n, 5);
    expect(Math.abs(rocAuc(ta, tb) - 0.5)).toBeLessThan(4 * sd);
  });

  it('detects a shift of one standard deviation: AUC = Φ(1/√2) ≈ 0.760 for N(1, 1) against N(0, 1)', () => {
    // For X ~ N(μ, 1), Y ~ N(0, 1): P(X > Y) = Φ(μ/√2); Φ(0.70711) = 0.76025.
    const rng = seededTestRandom('membership shift');
    const m = 3000;
    const n = 2000;
    const a = fillGaussian(new Float64Array(m), rng);
    const b = fillGaussian(new Float64Array(n), rng);
    for (let i = 0; i < m; i++) a[i] += 1;
    expect(Math.abs(rocAuc(a, b) - 0.76025)).toBeLessThan(4 * hanleyMcNeilSd(0.76025, m, n)); // 4 sd ≈ 0.026
  });

  it('throws a RangeError on an empty input or a NaN', () => {
    expect(() => rocAuc([], [1])).toThrow(RangeError);
    expect(() => rocAuc([1], [])).toThrow(RangeError);
    expect(() => rocAuc([1, NaN], [0])).toThrow(RangeError);
    expect(() => rocAuc([1], Float32Array.from([0, NaN]))).toThrow(RangeError);
  });
});

describe('lossThresholdAuc', () => {
  it('scores a lower loss as a member (hand-computed)', () => {
    // member losses 0.1 and 0.2 against 0.3 and 0.2: 0.1 is below both (2), 0.2 below 0.3 and tied with 0.2 (1.5): 3.5/4
    expect(lossThresholdAuc([0.1, 0.2], [0.3, 0.2])).toBe(0.875);
    expect(lossThresholdAuc([0.01, 0.02], [2, 3])).toBe(1);
    expect(lossThresholdAuc([2, 3], [0.01, 0.02])).toBe(0);
    expect(lossThresholdAuc([1, 1], [1, 1, 1])).toBe(0.5);
  });

  it('is rocAuc of the negated losses, and 1 − rocAuc of the losses', () => {
    const rng = seededTestRandom('membership losses');
    const a = Float32Array.from({ length: 2000 }, () => -Math.log(rng.nextDouble()));
    const b = Float32Array.from({ length: 1500 }, () => -Math.log(rng.nextDouble()) * 1.5);
    const auc = lossThresholdAuc(a, b);
    expect(auc).toBe(rocAuc(a.map((v) => -v), b.map((v) => -v)));
    expect(auc).toBeCloseTo(1 - rocAuc(a, b), 14);
    // Exp(1) against Exp(1/1.5) (mean 1.5): P(X < Y) = 1.5 / (1 + 1.5) = 0.6
    expect(Math.abs(auc - 0.6)).toBeLessThan(4 * hanleyMcNeilSd(0.6, 2000, 1500)); // 4 sd ≈ 0.04
  });

  it('throws a RangeError on an empty input or a NaN loss', () => {
    expect(() => lossThresholdAuc([], [1])).toThrow(RangeError);
    expect(() => lossThresholdAuc([NaN], [1])).toThrow(RangeError);
  });
});
