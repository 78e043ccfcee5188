import { ErrorCodes, seededRng } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { createComponent } from './descriptor.ts';
import { ClippedMeanAggregate, NormBoundingAggregator, clipToNorm, normBoundingDescriptor } from './norm-bounding.ts';
import { dist, fitResult, nextModel, randInt, zeroModel } from './robust-fixtures.ts';
import { runAggregatorSuite } from './strategy-suite.ts';

const f32 = (xs: number[]) => Float32Array.from(xs);
const norm = (v: ArrayLike<number>) => dist(v, new Float64Array(v.length));

describe('clipToNorm', () => {
  it('scales a long vector onto the M-sphere and leaves a short one alone', () => {
    expect(Array.from(clipToNorm(f32([3, 4]), 1))).toEqual([expect.closeTo(0.6, 12), expect.closeTo(0.8, 12)]);
    expect(Array.from(clipToNorm([0.3, 0.4], 1))).toEqual([0.3, 0.4]);
    expect(Array.from(clipToNorm([0, 0], 1))).toEqual([0, 0]);
    const v = f32([3, 4]);
    clipToNorm(v, 1);
    expect(Array.from(v)).toEqual([3, 4]); // not modified
  });

  it('refuses a non-positive or non-finite maxNorm', () => {
    for (const m of [0, -1, Infinity, NaN]) expect(() => clipToNorm([1], m)).toThrow(RangeError);
  });

  it('never exceeds M and keeps the direction (500 random vectors)', () => {
    const rng = seededRng(1911);
    for (let trial = 0; trial < 500; trial++) {
      const d = randInt(rng, 1, 10);
      const scale = 10 ** (12 * rng() - 3);
      const v = Float32Array.from({ length: d }, () => scale * (2 * rng() - 1));
      const m = 10 ** (4 * rng() - 2);
      const c = clipToNorm(v, m);
      expect(norm(c)).toBeLessThanOrEqual(m * (1 + 1e-12));
      const s = norm(v) > m ? m / norm(v) : 1;
      for (let i = 0; i < d; i++) expect(c[i]).toBeCloseTo(v[i] * s, 10);
    }
  });
});

describe('norm-bounding aggregator (the norm-bounding preset: norm-bounding + sgd)', () => {
  it('clips over all tensors of a delta, then takes the numExamples-weighted mean', () => {
    const global = [{ name: 'w', shape: [1], data: f32([1]) }, { name: 'b', shape: [1], data: f32([1]) }];
    const s = new NormBoundingAggregator({ maxNorm: 1 });
    expect([s.name, s.streaming]).toEqual(['norm-bounding', true]);
    // a: (3 | 4), ‖·‖ = 5 → (0.6 | 0.8), n = 1; b: (0 | 0.5) kept, n = 3
    // mean: ((0.6 + 0)/4 | (0.8 + 1.5)/4) = (0.15 | 0.575)
    let seen: { count: number; totalExamples: number; trainLoss: number; isClipped: boolean } | undefined;
    const next = nextModel(s, global, [fitResult('a', f32([3, 4]), 1, 2, global), fitResult('b', f32([0, 0.5]), 3, 1, global)], {
      onAggregate: (agg) => (seen = { count: agg.count, totalExamples: agg.totalExamples, trainLoss: agg.trainLoss, isClipped: agg instanceof ClippedMeanAggregate }),
    })!;
    expect(next[0].data[0]).toBeCloseTo(1.15, 6);
    expect(next[1].data[0]).toBeCloseTo(1.575, 6);
    expect(seen!.count).toBe(2);
    expect(seen!.totalExamples).toBe(4);
    expect(seen!.trainLoss).toBeCloseTo((2 + 3) / 4, 12);
    expect(seen!.isClipped).toBe(true);
  });

  it('clips first, then scales: Σ n_k·s_k·clip(Δ_k) / Σ n_k', () => {
    const global = [{ name: 'w', shape: [2], data: f32([0, 0]) }];
    const s = new NormBoundingAggregator({ maxNorm: 1 });
    const agg = s.begin(1, global);
    agg.add(fitResult('a', f32([3, 4]), 1), 0.5); // clip → (0.6, 0.8), × 0.5 → (0.3, 0.4), n = 1
    agg.add(fitResult('b', f32([0, 0.5]), 3), 1); // kept, n = 3
    const step = s.finish(1, global, agg, [])!;
    expect(step[0].data[0]).toBeCloseTo(0.3 / 4, 7);
    expect(step[0].data[1]).toBeCloseTo((0.4 + 1.5) / 4, 7);
  });

  it('keeps the model when nothing arrived', () => {
    const s = new NormBoundingAggregator({ maxNorm: 1 });
    expect(s.finish(1, zeroModel(2), s.begin(1, zeroModel(2)), [])).toBeNull();
  });

  // Property (Sun et al. 2019): the step is a convex combination of vectors of norm ≤ M, so
  // ‖step‖ ≤ M whatever the updates and claimed numExamples; checked on the float32 output with
  // relative slack 2⁻²³ (float32 rounding of each coordinate).
  it('keeps ‖step‖ ≤ maxNorm whatever the updates are (300 trials)', () => {
    const rng = seededRng(79);
    for (let trial = 0; trial < 300; trial++) {
      const d = randInt(rng, 1, 10);
      const n = randInt(rng, 1, 12);
      const maxNorm = 10 ** (4 * rng() - 2);
      const s = new NormBoundingAggregator({ maxNorm });
      const dir = Float32Array.from({ length: d }, () => 2 * rng() - 1);
      const results = [];
      for (let k = 0; k < n; k++) {
        const kind = randInt(rng, 0, 2);
        const v = kind === 0
          ? Float32Array.from({ length: d }, () => (rng() < 0.5 ? -1e9 : 1e9)) // huge
          : kind === 1
            ? Float32Array.from(dir, (x) => x * 10 ** (6 * rng() - 3)) // aligned copies, any length
            : Float32Array.from({ length: d }, () => maxNorm * (2 * rng() - 1)); // near the ball
        results.push(fitResult(`n${k}`, v, rng() < 0.2 ? 1e12 : 1 + randInt(rng, 0, 1000)));
      }
      expect(norm(nextModel(s, zeroModel(d), results)![0].data), `trial ${trial}`).toBeLessThanOrEqual(maxNorm * (1 + 2 ** -23));
    }
  });

  it('validates its options: RangeError from the class, FEDMQ_BAD_CONFIG naming --max-norm from the descriptor (required)', () => {
    for (const maxNorm of [0, -1, Infinity, NaN]) {
      expect(() => new NormBoundingAggregator({ maxNorm })).toThrow(RangeError);
      expect(() => createComponent(normBoundingDescriptor, { maxNorm }, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining('--max-norm') }));
    }
    expect(() => createComponent(normBoundingDescriptor, {}, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining('needs --max-norm') }));
  });
});

// maxNorm below the suite's delta norms (≈ 0.2), so clipping is exercised.
runAggregatorSuite(() => new NormBoundingAggregator({ maxNorm: 0.1 }));
