import { describe, expect, it } from 'vitest';
import { addable } from '../aggregate.ts';
import type { FitResult } from '../strategy.ts';
import { CollectAggregate, checkVectors, flatStep } from './collect.ts';
import { MeanAggregator } from './mean.ts';
import { MedianAggregator } from './median.ts';
import { SgdOptimizer } from './sgd.ts';

const global = [{ name: 'w', shape: [2, 1], data: Float32Array.from([1, 2]) }, { name: 'b', shape: [1], data: Float32Array.from([3]) }];
const result = (nodeId: string, w: number[], b: number, numExamples: number, loss: number): FitResult => ({
  nodeId, numExamples, loss, delta: [addable({ data: Float32Array.from(w) }), addable({ data: Float32Array.from([b]) })],
});
const collect = () => new CollectAggregate(global, new MedianAggregator());

describe('CollectAggregate', () => {
  it('keeps each delta as one flat float32 vector and the weighted mean\'s bookkeeping', () => {
    const c = collect();
    const m = new MeanAggregator().begin(1, global);
    const rs = [result('a', [1, 0], 4, 100, 1), result('b', [-1, 4], 0, 300, 2), result('c', [0.1, 1], 1, 600, 0.5)];
    for (const r of rs) {
      c.add(r);
      m.add(r);
    }
    expect(c.size).toBe(3);
    expect(c.vectors.map((v) => Array.from(v))).toEqual([[1, 0, 4], [-1, 4, 0], [Math.fround(0.1), 1, 1]]);
    expect(c.vectors[0]).toBeInstanceOf(Float32Array);
    expect(c.numExamples).toEqual([100, 300, 600]);
    expect(c.nodeIds).toEqual(['a', 'b', 'c']);
    expect(c.count).toBe(3);
    expect(c.totalExamples).toBe(1000);
    expect(c.totalExamples).toBe(m.totalExamples);
    expect(c.trainLoss).toBeCloseTo(m.trainLoss, 12);
  });

  it('decodes each tensor once and copies it (the views are only valid during add)', () => {
    const c = collect();
    const src = Float32Array.from([5, 6]);
    let calls = 0;
    const counted = { addTo: (t: Float64Array, w: number) => { calls++; addable({ data: src }).addTo(t, w); } };
    c.add({ nodeId: 'a', numExamples: 1, loss: 0, delta: [counted, addable({ data: [7] })] });
    expect(calls).toBe(1);
    src.fill(0);
    expect(Array.from(c.vectors[0])).toEqual([5, 6, 7]);
  });

  it('multiplies the decoded vector by the scale (and leaves it alone for 1)', () => {
    const c = collect();
    c.add(result('a', [1, -2], 4, 1, 0), 0.5);
    c.add(result('b', [1, -2], 4, 1, 0), 1);
    c.add(result('c', [1, -2], 4, 1, 0));
    expect(c.vectors.map((v) => Array.from(v))).toEqual([[0.5, -1, 2], [1, -2, 4], [1, -2, 4]]);
    expect(c.totalExamples).toBe(3); // the scale weighs the delta, not numExamples
  });

  it('starts empty (trainLoss NaN) and refuses bad updates without recording them', () => {
    const c = collect();
    expect(c.count).toBe(0);
    expect(c.trainLoss).toBeNaN();
    expect(() => c.add({ ...result('a', [1, 2], 3, 1, 0), delta: [addable({ data: [1, 2] })] })).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2, 3], 3, 1, 0))).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2], 3, 0, 0))).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2], 3, Infinity, 0))).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2], 3, 1, 0), -1)).toThrow(RangeError);
    expect(c.count).toBe(0);
    expect(c.totalExamples).toBe(0);
    expect(c.vectors).toHaveLength(0);
  });
});

describe('flatStep and checkVectors', () => {
  it('splits a flat step into per-tensor float64 views (no copy), which sgd adds tensor by tensor', () => {
    const flat = Float64Array.from([0.5, -2, 1]);
    const step = flatStep(global, flat);
    expect(step.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([['w', [2, 1], [0.5, -2]], ['b', [1], [1]]]);
    expect(step.every((t) => t.data.buffer === flat.buffer)).toBe(true);
    const next = new SgdOptimizer().step(global, step);
    expect(next.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([['w', [2, 1], [1.5, 0]], ['b', [1], [4]]]);
    expect(() => flatStep(global, Float64Array.from([1, 2]))).toThrow(RangeError);
  });

  it('checks vectors are present and of one length', () => {
    expect(checkVectors([[1, 2], [3, 4]])).toBe(2);
    expect(() => checkVectors([])).toThrow(RangeError);
    expect(() => checkVectors([[1], [1, 2]])).toThrow(RangeError);
  });
});
