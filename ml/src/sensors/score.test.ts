import { describe, expect, it } from 'vitest';
import { applyThreshold, detectionMetrics, pickThreshold, readingScoresFromErrors } from './score.ts';

describe('detectionMetrics', () => {
  it('matches a hand-computed example', () => {
    // pred:  1 1 0 1 0 0 1 0
    // label: 1 0 0 1 1 0 1 1  → tp=3 (0,3,6), fp=1 (1), fn=2 (4,7)
    const m = detectionMetrics([1, 1, 0, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0, 1, 1]);
    expect(m).toMatchObject({ tp: 3, fp: 1, fn: 2 });
    expect(m.precision).toBeCloseTo(3 / 4, 12);
    expect(m.recall).toBeCloseTo(3 / 5, 12);
    expect(m.f1).toBeCloseTo((2 * 0.75 * 0.6) / (0.75 + 0.6), 12); // = 6/9
  });
  it('returns NaN for undefined ratios, 0 for defined failures', () => {
    const none = detectionMetrics([0, 0, 0], [0, 0, 0]);
    expect(none.precision).toBeNaN();
    expect(none.recall).toBeNaN();
    expect(none.f1).toBeNaN();
    const fpOnly = detectionMetrics([1, 0], [0, 0]);
    expect(fpOnly.precision).toBe(0);
    expect(fpOnly.recall).toBeNaN();
    expect(fpOnly.f1).toBe(0);
    const missed = detectionMetrics([0, 0], [1, 0]);
    expect(missed.precision).toBeNaN();
    expect(missed.recall).toBe(0);
    expect(missed.f1).toBe(0);
    expect(() => detectionMetrics([1], [1, 0])).toThrow(RangeError);
  });
});

describe('pickThreshold', () => {
  // Deterministic skewed "normal" scores (squared half-normal-ish) plus one obvious outlier.
  const n = 2000;
  const scores = new Float32Array(n);
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
    scores[i] = (0.1 * g) ** 2;
  }
  const outlier = 1234;
  scores[outlier] = 5;

  it.each([
    ['sigma', { method: 'sigma' as const }],
    ['mad', { method: 'mad' as const, k: 3 }],
  ])('%s rule flags the obvious outlier and few normals', (_name, opts) => {
    const t = pickThreshold(scores, opts);
    const flags = applyThreshold(scores, t);
    expect(flags[outlier]).toBe(1);
    expect(flags.reduce((a, b) => a + b, 0)).toBeLessThan(n * 0.02);
  });

  it('is label-free: it depends only on the scores, not on their order or any labels', () => {
    const shuffled = Float32Array.from(scores).reverse();
    for (const opts of [{ method: 'mad' as const }, { method: 'quantile' as const, q: 0.95 }]) {
      expect(pickThreshold(shuffled, opts)).toBe(pickThreshold(scores, opts));
    }
    expect(pickThreshold.length).toBe(1); // (scores, opts?) — there is no labels parameter
    expect(pickThreshold(scores, { method: 'sigma', sigma: 0.7 })).toBeCloseTo(0.49, 12);
    expect(pickThreshold(new Float32Array([1, 2, 3, 4, 5]), { method: 'quantile', q: 0.5 })).toBe(3);
  });

  it('rejects bad input', () => {
    expect(() => pickThreshold(new Float32Array(0))).toThrow(RangeError);
    expect(() => pickThreshold(scores, { method: 'quantile', q: 1 })).toThrow(RangeError);
  });
});

describe('readingScoresFromErrors', () => {
  it('combines the windows covering each reading (W=2, 1 channel)', () => {
    // 3 windows over 4 readings: w0=[r0,r1], w1=[r1,r2], w2=[r2,r3]
    const e = new Float32Array([1, 9, 4, 2, 8, 3]);
    expect(Array.from(readingScoresFromErrors(e, 3, 2, 1, 'min'))).toEqual([1, 4, 2, 3]);
    expect(Array.from(readingScoresFromErrors(e, 3, 2, 1, 'mean'))).toEqual([1, 6.5, 5, 3]);
    expect(Array.from(readingScoresFromErrors(e, 3, 2, 1, 'last'))).toEqual([1, 9, 2, 3]);
    expect(() => readingScoresFromErrors(e, 2, 2, 1)).toThrow(RangeError);
  });
});
