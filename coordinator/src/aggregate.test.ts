import { describe, expect, it } from 'vitest';
import { WeightedDeltaSum, addable, applyDelta } from './aggregate.ts';
import { FedAvg, sample } from './strategies/fedavg.ts';
import { float32Codec, seededRng } from '@fedmq/protocol';

const global = [{ name: 'w', shape: [3], data: new Float32Array([1, 1, 1]) }, { name: 'b', shape: [1], data: new Float32Array([0]) }];
const t = (w: number[], b: number) => [{ name: 'w', shape: [3], data: new Float32Array(w) }, { name: 'b', shape: [1], data: new Float32Array([b]) }];
/** The same delta as the coordinator folds it: tensors that add themselves into the sums. */
const d = (w: number[], b: number) => t(w, b).map(addable);

describe('FedAvg aggregation', () => {
  it('equals the hand-computed numExamples-weighted mean, not the unweighted one', () => {
    // Node A: n=100, Δ=(1,0,2 | 4); node B: n=300, Δ=(−1,4,2 | 0); node C: n=600, Δ=(0,1,−2 | 1)
    // weighted: w += (100·1 + 300·−1 + 600·0)/1000 = −0.2, (0 + 1200 + 600)/1000 = 1.8, (200 + 600 − 1200)/1000 = −0.4
    //           b += (400 + 0 + 600)/1000 = 1.0
    // unweighted would give w += (0, 5/3, 2/3), b += 5/3.
    const fedavg = new FedAvg({ fractionFit: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } });
    const agg = fedavg.beginRound(1, global);
    agg.add({ nodeId: 'a', numExamples: 100, delta: d([1, 0, 2], 4), loss: 1 });
    agg.add({ nodeId: 'b', numExamples: 300, delta: d([-1, 4, 2], 0), loss: 2 });
    agg.add({ nodeId: 'c', numExamples: 600, delta: d([0, 1, -2], 1), loss: 0.5 });
    const next = fedavg.aggregateFit(1, global, agg, [])!;
    const hand = [1 - 0.2, 1 + 1.8, 1 - 0.4];
    for (let i = 0; i < 3; i++) expect(next[0].data[i]).toBeCloseTo(hand[i], 6);
    expect(next[1].data[0]).toBeCloseTo(1.0, 6);
    const unweighted = [1, 1 + 5 / 3, 1 + 2 / 3];
    expect(Array.from(next[0].data).some((v, i) => Math.abs(v - unweighted[i]) > 0.1)).toBe(true);
    expect(agg.trainLoss).toBeCloseTo((100 * 1 + 300 * 2 + 600 * 0.5) / 1000, 12);
    expect(next[0].shape).toEqual([3]);
    expect(next[0].name).toBe('w');
  });

  it('keeps the model when no update arrived', () => {
    const fedavg = new FedAvg({ fractionFit: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } });
    expect(fedavg.aggregateFit(1, global, fedavg.beginRound(1, global), [{ reason: 'timeout' }])).toBeNull();
  });

  it('does not depend on arrival order beyond float32 rounding', () => {
    const deltas = Array.from({ length: 20 }, (_, k) => ({ d: d([Math.sin(k) * 1e3, 1e-4 * k, -k], k / 7), n: 1 + ((k * 37) % 101) }));
    const a = new WeightedDeltaSum(global);
    const b = new WeightedDeltaSum(global);
    for (const x of deltas) a.add(x.d, x.n);
    for (const x of [...deltas].reverse()) b.add(x.d, x.n);
    expect(Array.from(a.mean()[0].data)).toEqual(Array.from(b.mean()[0].data));
    expect(a.mean()[0].shape).toEqual([3]);
  });

  it('refuses a non-positive weight or a wrong size', () => {
    const s = new WeightedDeltaSum(global);
    expect(() => s.add(d([1, 1, 1], 1), 0)).toThrow(RangeError);
    expect(() => s.add([addable({ data: new Float32Array(2) }), addable({ data: new Float32Array(1) })], 1)).toThrow(RangeError);
    expect(() => s.mean()).toThrow(RangeError);
  });

  it('applies a step to the global weights', () => {
    expect(Array.from(applyDelta(global, t([1, 2, 3], -1))[0].data)).toEqual([2, 3, 4]);
  });
});

describe('node sampling', () => {
  it('samples max(C·K, minFitNodes) distinct nodes, reproducibly', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    let s = 1;
    const rng = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const fedavg = new FedAvg({ fractionFit: 0.3, minFitNodes: 2, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } });
    const { selected } = fedavg.configureFit(1, nodes, rng);
    expect(selected).toHaveLength(3);
    expect(new Set(selected).size).toBe(3);
    expect(new FedAvg({ fractionFit: 0.1, minFitNodes: 4, fitConfig: { epochs: 1, batchSize: 1, learningRate: 1 } }).configureFit(1, nodes, rng).selected).toHaveLength(4);
    s = 1;
    const again = sample(nodes, 3, rng);
    s = 1;
    expect(sample(nodes, 3, rng)).toEqual(again);
  });
});

describe('WeightedDeltaSum order independence', () => {
  it('gives the same float32 mean bit for bit in any arrival order', () => {
    const rng = seededRng(7);
    const size = 20_000;
    // magnitudes over many binades, mixed signs: plain float64 sums differ between orders here
    const deltas = Array.from({ length: 12 }, () => {
      const d = new Float32Array(size);
      for (let i = 0; i < size; i++) d[i] = (rng() - 0.5) * 10 ** Math.floor(rng() * 12 - 8);
      return d;
    });
    const weights = deltas.map(() => 1 + Math.floor(rng() * 6000));
    const like = [{ name: 'w', shape: [size], data: new Float32Array(size) }];
    const meanIn = (order: number[]) => {
      const s = new WeightedDeltaSum(like);
      for (const k of order) s.add([addable({ data: deltas[k] })], weights[k]);
      return s.mean()[0].data;
    };
    const forward = meanIn(deltas.map((_, k) => k));
    const orders = [deltas.map((_, k) => deltas.length - 1 - k), [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]];
    for (const order of orders) expect(Buffer.from(meanIn(order).buffer).equals(Buffer.from(forward.buffer))).toBe(true);
    // the float32 codec's fused path gives the same bits as the generic one
    const viaCodec = (order: number[]) => {
      const s = new WeightedDeltaSum(like);
      for (const k of order) s.add([float32Codec.prepare(float32Codec.encode([{ ...like[0], data: deltas[k] }], {}, undefined, Math.random)[0])], weights[k]);
      return s.mean()[0].data;
    };
    for (const order of [deltas.map((_, k) => k), ...orders]) expect(Buffer.from(viaCodec(order).buffer).equals(Buffer.from(forward.buffer))).toBe(true);
    // the case a plain float64 running sum gets wrong: 2^60 + 1 − 2^60 (the 1 is lost in that order)
    const big = [2 ** 60, 1, -(2 ** 60)].map((v) => [addable({ data: new Float32Array([v]) })]);
    const one = [{ name: 'w', shape: [1], data: new Float32Array(1) }];
    for (const order of [[0, 1, 2], [0, 2, 1], [1, 2, 0]]) {
      const s = new WeightedDeltaSum(one);
      for (const k of order) s.add(big[k], 1);
      expect(s.mean()[0].data[0]).toBe(Math.fround(1 / 3));
    }
  });
});
