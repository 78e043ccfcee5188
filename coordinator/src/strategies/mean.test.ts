import { describe, expect, it } from 'vitest';
import { addable, applyDelta } from '../aggregate.ts';
import { MeanAggregate, MeanAggregator } from './mean.ts';
import { SgdOptimizer } from './sgd.ts';
import { runAggregatorSuite } from './strategy-suite.ts';

runAggregatorSuite(() => new MeanAggregator());

const global = [{ name: 'w', shape: [3], data: new Float32Array([1, 1, 1]) }, { name: 'b', shape: [1], data: new Float32Array([0]) }];
const t = (w: number[], b: number) => [{ name: 'w', shape: [3], data: new Float32Array(w) }, { name: 'b', shape: [1], data: new Float32Array([b]) }];
/** The same delta as the coordinator folds it: tensors that add themselves into the sums. */
const d = (w: number[], b: number) => t(w, b).map(addable);

describe('mean aggregator (FedAvg, McMahan et al. 2017)', () => {
  it('equals the hand-computed numExamples-weighted mean, not the unweighted one (with sgd: the FedAvg model)', () => {
    // Node A: n=100, Δ=(1,0,2 | 4); node B: n=300, Δ=(−1,4,2 | 0); node C: n=600, Δ=(0,1,−2 | 1)
    // weighted: w += (100·1 + 300·−1 + 600·0)/1000 = −0.2, (0 + 1200 + 600)/1000 = 1.8, (200 + 600 − 1200)/1000 = −0.4
    //           b += (400 + 0 + 600)/1000 = 1.0
    // unweighted would give w += (0, 5/3, 2/3), b += 5/3.
    const mean = new MeanAggregator();
    expect([mean.name, mean.streaming]).toEqual(['mean', true]);
    const agg = mean.begin(1, global);
    expect(agg).toBeInstanceOf(MeanAggregate);
    agg.add({ nodeId: 'a', numExamples: 100, delta: d([1, 0, 2], 4), loss: 1 });
    agg.add({ nodeId: 'b', numExamples: 300, delta: d([-1, 4, 2], 0), loss: 2 });
    agg.add({ nodeId: 'c', numExamples: 600, delta: d([0, 1, -2], 1), loss: 0.5 });
    const step = mean.finish(1, global, agg, [])!;
    expect(step[0].data).toBeInstanceOf(Float32Array);
    const next = new SgdOptimizer().step(global, step);
    const hand = [1 - 0.2, 1 + 1.8, 1 - 0.4];
    for (let i = 0; i < 3; i++) expect(next[0].data[i]).toBeCloseTo(hand[i], 6);
    expect(next[1].data[0]).toBeCloseTo(1.0, 6);
    const unweighted = [1, 1 + 5 / 3, 1 + 2 / 3];
    expect(Array.from(next[0].data).some((v, i) => Math.abs(v - unweighted[i]) > 0.1)).toBe(true);
    expect(agg.trainLoss).toBeCloseTo((100 * 1 + 300 * 2 + 600 * 0.5) / 1000, 12);
    expect(agg.totalExamples).toBe(1000);
    expect(next[0].shape).toEqual([3]);
    expect(next[0].name).toBe('w');
    // the step is the float32 weighted mean itself, and sgd η = 1 is applyDelta bit for bit
    expect(Array.from(next[0].data)).toEqual(Array.from(applyDelta(global, step.map((s) => ({ ...s, data: Float32Array.from(s.data) })))[0].data));
  });

  it('keeps the model when no update arrived', () => {
    const mean = new MeanAggregator();
    expect(mean.finish(1, global, mean.begin(1, global), [{ reason: 'timeout' }])).toBeNull();
  });

  it('scales contributions but not the denominator: Σ n_k·s_k·Δ_k / Σ n_k (FedBuff)', () => {
    // A n=100 s=0.5 Δ=(1,0,2 | 4); B n=300 s=1 Δ=(−1,4,2 | 0); C n=600 s=0.25 Δ=(0,1,−2 | 1)
    // w: (50 − 300 + 0)/1000 = −0.25, (0 + 1200 + 150)/1000 = 1.35, (100 + 600 − 300)/1000 = 0.4; b: (200 + 0 + 150)/1000 = 0.35
    const mean = new MeanAggregator();
    const agg = mean.begin(1, global);
    agg.add({ nodeId: 'a', numExamples: 100, delta: d([1, 0, 2], 4), loss: 1 }, 0.5);
    agg.add({ nodeId: 'b', numExamples: 300, delta: d([-1, 4, 2], 0), loss: 2 }, 1);
    agg.add({ nodeId: 'c', numExamples: 600, delta: d([0, 1, -2], 1), loss: 0.5 }, 0.25);
    expect(agg.totalExamples).toBe(1000);
    expect(agg.trainLoss).toBeCloseTo((100 * 1 + 300 * 2 + 600 * 0.5) / 1000, 12); // losses are not scaled
    const step = mean.finish(1, global, agg, [])!;
    expect(Array.from(step[0].data)).toEqual([-0.25, 1.35, 0.4].map(Math.fround));
    expect(step[1].data[0]).toBe(Math.fround(0.35));
  });
});
