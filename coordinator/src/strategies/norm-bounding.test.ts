import { seededRng } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { ClippedMeanAggregate, NormBounding, clipToNorm } from './norm-bounding.ts';
import { dist, fitResult, randInt, zeroModel } from './robust-fixtures.ts';
import { runStrategySuite } from './strategy-suite.ts';

const fitConfig = { epochs: 1, batchSize: 32, learningRate: 0.1 };
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

describe('NormBounding strategy', () => {
  it('clips over all tensors of a delta, then takes the numExamples-weighted mean', () => {
    const global = [{ name: 'w', shape: [1], data: f32([1]) }, { name: 'b', shape: [1], data: f32([1]) }];
    const s = new NormBounding({ fractionFit: 1, minFitNodes: 1, fitConfig, maxNorm: 1 });
    expect(s.name).toBe('norm-bounding');
    const agg = s.beginRound(1, global);
    // a: (3 | 4), ‖·‖ = 5 → (0.6 | 0.8), n = 1; b: (0 | 0.5) kept, n = 3
    // mean: ((0.6 + 0)/4 | (0.8 + 1.5)/4) = (0.15 | 0.575)
    agg.add(fitResult('a', f32([3, 4]), 1, 2, global));
    agg.add(fitResult('b', f32([0, 0.5]), 3, 1, global));
    const next = s.aggregateFit(1, global, agg, [])!;
    expect(next[0].data[0]).toBeCloseTo(1.15, 6);
    expect(next[1].data[0]).toBeCloseTo(1.575, 6);
    expect(agg.count).toBe(2);
    expect(agg.totalExamples).toBe(4);
    expect(agg.trainLoss).toBeCloseTo((2 + 3) / 4, 12);
    expect(agg).toBeInstanceOf(ClippedMeanAggregate);
  });

  it('keeps the model when nothing arrived', () => {
    const s = new NormBounding({ fractionFit: 1, minFitNodes: 1, fitConfig, maxNorm: 1 });
    expect(s.aggregateFit(1, zeroModel(2), s.beginRound(1, zeroModel(2)), [])).toBeNull();
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
      const s = new NormBounding({ fractionFit: 1, minFitNodes: 1, fitConfig, maxNorm });
      const global = zeroModel(d);
      const agg = s.beginRound(1, global);
      const dir = Float32Array.from({ length: d }, () => 2 * rng() - 1);
      for (let k = 0; k < n; k++) {
        const kind = randInt(rng, 0, 2);
        const v = kind === 0
          ? Float32Array.from({ length: d }, () => (rng() < 0.5 ? -1e9 : 1e9)) // huge
          : kind === 1
            ? Float32Array.from(dir, (x) => x * 10 ** (6 * rng() - 3)) // aligned copies, any length
            : Float32Array.from({ length: d }, () => maxNorm * (2 * rng() - 1)); // near the ball
        agg.add(fitResult(`n${k}`, v, rng() < 0.2 ? 1e12 : 1 + randInt(rng, 0, 1000)));
      }
      expect(norm(s.aggregateFit(1, global, agg, [])![0].data), `trial ${trial}`).toBeLessThanOrEqual(maxNorm * (1 + 2 ** -23));
    }
  });

  it('validates its options', () => {
    for (const maxNorm of [0, -1, Infinity, NaN]) expect(() => new NormBounding({ fractionFit: 1, minFitNodes: 1, fitConfig, maxNorm })).toThrow(RangeError);
    expect(() => new NormBounding({ fractionFit: 0, minFitNodes: 1, fitConfig, maxNorm: 1 })).toThrow(RangeError);
    expect(() => new NormBounding({ fractionFit: 1, minFitNodes: 0, fitConfig, maxNorm: 1 })).toThrow(RangeError);
  });
});

// maxNorm below the suite's delta norms (≈ 0.2), so clipping is exercised.
runStrategySuite((base) => new NormBounding({ ...base, maxNorm: 0.1 }));
