import { describe, expect, it } from 'vitest';
import { FitConfigSchema } from '@fedmq/protocol';
import { addable } from '../aggregate.ts';
import { FedAvg } from './fedavg.ts';
import { DEFAULT_PROXIMAL_MU, FedProx } from './fedprox.ts';
import { runStrategySuite } from './strategy-suite.ts';

// The shared contract. Its configureFit check expects the fit config unchanged, which holds for
// μ = 0 only (μ > 0 adds proximalMu, checked below); aggregation does not depend on μ.
runStrategySuite((base) => new FedProx({ ...base, proximalMu: 0 }), { title: 'strategy contract: fedprox (μ = 0)' });

const fitConfig = { epochs: 2, batchSize: 16, learningRate: 0.05 };
const global = [{ name: 'w', shape: [3], data: new Float32Array([1, -1, 0.5]) }, { name: 'b', shape: [1], data: new Float32Array([0]) }];
const t = (w: number[], b: number) => [{ name: 'w', shape: [3], data: new Float32Array(w) }, { name: 'b', shape: [1], data: new Float32Array([b]) }];

function lcg(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 16807) % 2147483647) / 2147483647);
}

describe('FedProx strategy', () => {
  it('puts proximalMu in the fit config, which the protocol schema accepts, and selects like FedAvg', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const prox = new FedProx({ fractionFit: 0.3, minFitNodes: 2, fitConfig, proximalMu: 0.5 });
    const avg = new FedAvg({ fractionFit: 0.3, minFitNodes: 2, fitConfig });
    expect(prox.name).toBe('fedprox');
    const p = prox.configureFit(1, nodes, lcg(7));
    const a = avg.configureFit(1, nodes, lcg(7));
    expect(p.config).toEqual({ ...fitConfig, proximalMu: 0.5 });
    expect(FitConfigSchema.parse(p.config)).toEqual(p.config);
    expect(p.selected).toEqual(a.selected);
    expect(p.selected).toHaveLength(3);
    // the caller's fitConfig is not mutated, and the strategy's μ wins over one in fitConfig
    expect(fitConfig).toEqual({ epochs: 2, batchSize: 16, learningRate: 0.05 });
    const over = new FedProx({ fractionFit: 1, minFitNodes: 1, fitConfig: { ...fitConfig, proximalMu: 3 }, proximalMu: 0.1 });
    expect(over.configureFit(1, nodes, lcg(1)).config.proximalMu).toBe(0.1);
  });

  it('defaults μ to DEFAULT_PROXIMAL_MU, accepts 0 and rejects negative or non-finite μ with RangeError', () => {
    expect(DEFAULT_PROXIMAL_MU).toBe(0.01);
    expect(new FedProx({ fractionFit: 1, minFitNodes: 1, fitConfig }).configureFit(1, ['a'], lcg(1)).config.proximalMu).toBe(0.01);
    // μ = 0 is FedAvg: no proximalMu in the task, even if fitConfig had one
    const zero = new FedProx({ fractionFit: 1, minFitNodes: 1, fitConfig: { ...fitConfig, proximalMu: 3 }, proximalMu: 0 });
    expect(zero.proximalMu).toBe(0);
    expect(zero.configureFit(1, ['a'], lcg(1)).config).toEqual(fitConfig);
    for (const bad of [-0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new FedProx({ fractionFit: 1, minFitNodes: 1, fitConfig, proximalMu: bad })).toThrow(RangeError);
    }
    // FedAvg's own checks still apply
    expect(() => new FedProx({ fractionFit: 0, minFitNodes: 1, fitConfig })).toThrow(RangeError);
    expect(() => new FedProx({ fractionFit: 1, minFitNodes: 0, fitConfig })).toThrow(RangeError);
    // and the schema refuses what the strategy refuses
    expect(FitConfigSchema.safeParse({ ...fitConfig, proximalMu: -1 }).success).toBe(false);
    expect(FitConfigSchema.safeParse({ ...fitConfig, proximalMu: Number.POSITIVE_INFINITY }).success).toBe(false);
  });

  it('aggregates exactly as FedAvg on the same updates', () => {
    const prox = new FedProx({ fractionFit: 1, minFitNodes: 1, fitConfig, proximalMu: 1 });
    const avg = new FedAvg({ fractionFit: 1, minFitNodes: 1, fitConfig });
    const updates = [
      { nodeId: 'a', numExamples: 100, delta: t([1, 0, 2], 4), loss: 1 },
      { nodeId: 'b', numExamples: 300, delta: t([-1, 4, 2], 0), loss: 2 },
      { nodeId: 'c', numExamples: 600, delta: t([0, 1, -2], 1), loss: 0.5 },
    ];
    const pa = prox.beginRound(3, global);
    const aa = avg.beginRound(3, global);
    for (const u of updates) {
      pa.add({ ...u, delta: u.delta.map(addable) });
      aa.add({ ...u, delta: u.delta.map(addable) });
    }
    expect(pa.count).toBe(3);
    expect(pa.totalExamples).toBe(aa.totalExamples);
    expect(pa.trainLoss).toBe(aa.trainLoss);
    const next = prox.aggregateFit(3, global, pa, [])!;
    const ref = avg.aggregateFit(3, global, aa, [])!;
    expect(next.map((x) => x.name)).toEqual(['w', 'b']);
    for (let i = 0; i < next.length; i++) {
      expect(next[i].shape).toEqual(ref[i].shape);
      expect(Array.from(next[i].data)).toEqual(Array.from(ref[i].data));
    }
    // hand check of the weighted mean: w += (−0.2, 1.8, −0.4), b += 1.0
    expect(Array.from(next[0].data).map((v) => +v.toFixed(5))).toEqual([0.8, 0.8, 0.1]);
    expect(next[1].data[0]).toBeCloseTo(1, 6);
    expect(prox.aggregateFit(4, global, prox.beginRound(4, global), [{ reason: 'timeout' }])).toBeNull();
  });
});
