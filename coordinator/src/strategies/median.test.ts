import { seededRng } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { MedianAggregator, coordinateMedian } from './median.ts';
import { ATTACKS, fitResult, honestVectors, maliciousVectors, nextModel, randInt, shuffled, zeroModel } from './robust-fixtures.ts';
import { runAggregatorSuite } from './strategy-suite.ts';

const f32 = (xs: number[]) => Float32Array.from(xs);

describe('coordinateMedian', () => {
  it('takes the middle value per coordinate (odd n)', () => {
    // coordinate 0: {1,3,2} → 2; 1: {5,0,9} → 5; 2: {−2,4,1} → 1
    expect(Array.from(coordinateMedian([f32([1, 5, -2]), f32([3, 0, 4]), f32([2, 9, 1])]))).toEqual([2, 5, 1]);
  });

  it('averages the two middle values (even n) and ignores one huge outlier', () => {
    // {1, 4, 2, 1e9} sorted 1, 2, 4, 1e9 → (2 + 4) / 2 = 3
    expect(Array.from(coordinateMedian([f32([1]), f32([4]), f32([2]), f32([1e9])]))).toEqual([3]);
  });

  it('refuses no vector and mismatched lengths', () => {
    expect(() => coordinateMedian([])).toThrow(RangeError);
    expect(() => coordinateMedian([f32([1, 2]), f32([1])])).toThrow(RangeError);
  });

  // Property (Yin et al. 2018): with f < n/2 malicious vectors among n, each coordinate of the
  // median lies in [min, max] of the honest vectors' values at that coordinate, exactly.
  it('stays within the honest per-coordinate range whatever f < n/2 malicious vectors are (400 trials)', () => {
    const rng = seededRng(20180710);
    for (let trial = 0; trial < 400; trial++) {
      const n = randInt(rng, 1, 15);
      const f = randInt(rng, 0, Math.ceil(n / 2) - 1);
      const d = randInt(rng, 1, 8);
      const honest = honestVectors(rng, n - f, d);
      const attack = ATTACKS[trial % ATTACKS.length];
      const all = shuffled(rng, [...honest, ...maliciousVectors(rng, honest, f, attack)]).map((x) => x.item);
      const out = coordinateMedian(all);
      for (let i = 0; i < d; i++) {
        const col = honest.map((h) => h[i]);
        expect(out[i], `trial ${trial} ${attack} n=${n} f=${f} i=${i}`).toBeGreaterThanOrEqual(Math.min(...col));
        expect(out[i], `trial ${trial} ${attack} n=${n} f=${f} i=${i}`).toBeLessThanOrEqual(Math.max(...col));
      }
    }
  });
});

describe('median aggregator (the median preset: median + sgd)', () => {
  it('moves the global model by the unweighted coordinate-wise median over two tensors', () => {
    const global = [{ name: 'w', shape: [2], data: f32([1, 1]) }, { name: 'b', shape: [1], data: f32([0]) }];
    const a = new MedianAggregator();
    expect([a.name, a.streaming]).toEqual(['median', false]);
    // flat deltas (w0, w1, b): a (1, 0, 4) n=1; b (−1, 4, 0) n=1000; c (0, 1, 1) n=1
    // median: (0, 1, 1); numExamples plays no part (a weighted mean would be ≈ b).
    let totalExamples = 0;
    let trainLoss = 0;
    const next = nextModel(a, global, [
      fitResult('a', f32([1, 0, 4]), 1, 1, global),
      fitResult('b', f32([-1, 4, 0]), 1000, 2, global),
      fitResult('c', f32([0, 1, 1]), 1, 3, global),
    ], { onAggregate: (agg) => ({ totalExamples, trainLoss } = agg) })!;
    expect(Array.from(next[0].data)).toEqual([1, 2]);
    expect(Array.from(next[1].data)).toEqual([1]);
    expect(next.map((t) => t.name)).toEqual(['w', 'b']);
    expect(totalExamples).toBe(1002);
    expect(trainLoss).toBeCloseTo((1 + 2000 + 3) / 1002, 12);
  });

  it('returns the step as float64 views of one flat vector', () => {
    const global = [{ name: 'w', shape: [2], data: f32([1, 1]) }, { name: 'b', shape: [1], data: f32([0]) }];
    const a = new MedianAggregator();
    const agg = a.begin(1, global);
    agg.add(fitResult('a', f32([1, 0, 4]), 1, 1, global));
    const step = a.finish(1, global, agg, [])!;
    expect(step[0].data).toBeInstanceOf(Float64Array);
    expect(step[0].data.buffer).toBe(step[1].data.buffer);
    expect(step.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([['w', [2], [1, 0]], ['b', [1], [4]]]);
  });

  it('keeps the model when nothing arrived', () => {
    const a = new MedianAggregator();
    expect(a.finish(1, zeroModel(2), a.begin(1, zeroModel(2)), [])).toBeNull();
  });

  it('stays within the honest range through the aggregator and sgd too (200 trials)', () => {
    const rng = seededRng(7);
    for (let trial = 0; trial < 200; trial++) {
      const n = randInt(rng, 1, 11);
      const f = randInt(rng, 0, Math.ceil(n / 2) - 1);
      const d = randInt(rng, 1, 6);
      const honest = honestVectors(rng, n - f, d);
      const all = [...honest, ...maliciousVectors(rng, honest, f, ATTACKS[trial % ATTACKS.length])];
      const results = shuffled(rng, all).map(({ item, index }) => fitResult(`n${index}`, item, 1 + randInt(rng, 0, 1e6)));
      const out = nextModel(new MedianAggregator(), zeroModel(d), results)![0].data;
      for (let i = 0; i < d; i++) {
        const col = honest.map((h) => h[i]);
        expect(out[i]).toBeGreaterThanOrEqual(Math.min(...col));
        expect(out[i]).toBeLessThanOrEqual(Math.max(...col));
      }
    }
  });
});

runAggregatorSuite(() => new MedianAggregator());
