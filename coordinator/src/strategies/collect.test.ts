import { describe, expect, it } from 'vitest';
import { addable } from '../aggregate.ts';
import type { FitResult } from '../strategy.ts';
import { CollectAggregate, applyFlatDelta, checkVectors } from './collect.ts';
import { MeanAggregate } from './fedavg.ts';

const global = [{ name: 'w', shape: [2, 1], data: Float32Array.from([1, 2]) }, { name: 'b', shape: [1], data: Float32Array.from([3]) }];
const result = (nodeId: string, w: number[], b: number, numExamples: number, loss: number): FitResult => ({
  nodeId, numExamples, loss, delta: [addable({ data: Float32Array.from(w) }), addable({ data: Float32Array.from([b]) })],
});

describe('CollectAggregate', () => {
  it('keeps each delta as one flat float32 vector and the MeanAggregate bookkeeping', () => {
    const c = new CollectAggregate(global);
    const m = new MeanAggregate(global);
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
    expect(c.trainLoss).toBeCloseTo(m.trainLoss, 12);
    expect(c.sum.mean()).toEqual(m.sum.mean());
  });

  it('decodes each tensor once and copies it (the views are only valid during add)', () => {
    const c = new CollectAggregate(global);
    const src = Float32Array.from([5, 6]);
    let calls = 0;
    const counted = { addTo: (t: Float64Array, w: number) => { calls++; addable({ data: src }).addTo(t, w); } };
    c.add({ nodeId: 'a', numExamples: 1, loss: 0, delta: [counted, addable({ data: [7] })] });
    expect(calls).toBe(1);
    src.fill(0);
    expect(Array.from(c.vectors[0])).toEqual([5, 6, 7]);
  });

  it('starts empty (trainLoss NaN) and refuses bad updates without recording them', () => {
    const c = new CollectAggregate(global);
    expect(c.count).toBe(0);
    expect(c.trainLoss).toBeNaN();
    expect(() => c.add({ ...result('a', [1, 2], 3, 1, 0), delta: [addable({ data: [1, 2] })] })).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2, 3], 3, 1, 0))).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2], 3, 0, 0))).toThrow(RangeError);
    expect(() => c.add(result('a', [1, 2], 3, Infinity, 0))).toThrow(RangeError);
    expect(c.count).toBe(0);
    expect(c.vectors).toHaveLength(0);
  });
});

describe('applyFlatDelta and checkVectors', () => {
  it('adds a flat step tensor by tensor', () => {
    const next = applyFlatDelta(global, [0.5, -2, 1]);
    expect(next.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([['w', [2, 1], [1.5, 0]], ['b', [1], [4]]]);
    expect(() => applyFlatDelta(global, [1, 2])).toThrow(RangeError);
  });

  it('checks vectors are present and of one length', () => {
    expect(checkVectors([[1, 2], [3, 4]])).toBe(2);
    expect(() => checkVectors([])).toThrow(RangeError);
    expect(() => checkVectors([[1], [1, 2]])).toThrow(RangeError);
  });
});
