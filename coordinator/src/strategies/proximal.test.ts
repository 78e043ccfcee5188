import { describe, expect, it } from 'vitest';
import { ErrorCodes, FitConfigSchema } from '@fedmq/protocol';
import { addable } from '../aggregate.ts';
import { createComponent } from './descriptor.ts';
import { createStrategy } from './index.ts';
import { DEFAULT_PROXIMAL_MU, ProximalContributor, proximalDescriptor } from './proximal.ts';

const fitConfig = { epochs: 2, batchSize: 16, learningRate: 0.05 };
const global = [{ name: 'w', shape: [3], data: new Float32Array([1, -1, 0.5]) }, { name: 'b', shape: [1], data: new Float32Array([0]) }];
const t = (w: number[], b: number) => [{ name: 'w', shape: [3], data: new Float32Array(w) }, { name: 'b', shape: [1], data: new Float32Array([b]) }];

function lcg(seed: number): () => number {
  let s = seed;
  return () => ((s = (s * 16807) % 2147483647) / 2147483647);
}

describe('proximal fit-config contributor and the fedprox preset (Li et al. 2020)', () => {
  it('puts proximalMu in the fit config, which the protocol schema accepts, and selects like FedAvg', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const prox = createStrategy({ strategy: 'fedprox', fraction: 0.3, minFitNodes: 2, fitConfig, params: { proximalMu: 0.5 } });
    const avg = createStrategy({ strategy: 'fedavg', fraction: 0.3, minFitNodes: 2, fitConfig });
    expect(prox.name).toBe('fedprox');
    const config = prox.fitConfig(1);
    expect(config).toEqual({ ...fitConfig, proximalMu: 0.5 });
    expect(FitConfigSchema.parse(config)).toEqual(config);
    const selected = prox.selector.select(1, nodes, lcg(7));
    expect(selected).toEqual(avg.selector.select(1, nodes, lcg(7)));
    expect(selected).toHaveLength(3);
    // the caller's fitConfig is not mutated, and the contributor's μ wins over one in fitConfig
    expect(fitConfig).toEqual({ epochs: 2, batchSize: 16, learningRate: 0.05 });
    const over = createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 1, fitConfig: { ...fitConfig, proximalMu: 3 }, params: { proximalMu: 0.1 } });
    expect(over.fitConfig(1).proximalMu).toBe(0.1);
    // each round gets a fresh object
    expect(prox.fitConfig(2)).not.toBe(prox.fitConfig(2));
  });

  it('defaults μ to DEFAULT_PROXIMAL_MU, accepts 0 and rejects negative or non-finite μ', () => {
    expect(DEFAULT_PROXIMAL_MU).toBe(0.01);
    expect(new ProximalContributor().proximalMu).toBe(0.01);
    expect(createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 1, fitConfig }).fitConfig(1).proximalMu).toBe(0.01);
    // μ = 0 is FedAvg: no proximalMu in the task, even if fitConfig had one
    const zero = new ProximalContributor({ proximalMu: 0 });
    expect(zero.proximalMu).toBe(0);
    const base = { ...fitConfig, proximalMu: 3 };
    expect(zero.contribute(base)).toEqual(fitConfig);
    expect(base.proximalMu).toBe(3); // not modified
    expect(createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 1, fitConfig: base, params: { proximalMu: 0 } }).fitConfig(1)).toEqual(fitConfig);
    for (const bad of [-0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new ProximalContributor({ proximalMu: bad })).toThrow(RangeError);
      expect(() => createComponent(proximalDescriptor, { proximalMu: bad }, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining('--proximal-mu') }));
    }
    // the selector's own checks still apply to the preset
    expect(() => createStrategy({ strategy: 'fedprox', fraction: 0, minFitNodes: 1, fitConfig })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 0, fitConfig })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    // and the schema refuses what the contributor refuses
    expect(FitConfigSchema.safeParse({ ...fitConfig, proximalMu: -1 }).success).toBe(false);
    expect(FitConfigSchema.safeParse({ ...fitConfig, proximalMu: Number.POSITIVE_INFINITY }).success).toBe(false);
  });

  it('aggregates exactly as FedAvg on the same updates', () => {
    const prox = createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 1, fitConfig, params: { proximalMu: 1 } });
    const avg = createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig });
    const updates = [
      { nodeId: 'a', numExamples: 100, delta: t([1, 0, 2], 4), loss: 1 },
      { nodeId: 'b', numExamples: 300, delta: t([-1, 4, 2], 0), loss: 2 },
      { nodeId: 'c', numExamples: 600, delta: t([0, 1, -2], 1), loss: 0.5 },
    ];
    const pa = prox.aggregator.begin(3, global);
    const aa = avg.aggregator.begin(3, global);
    for (const u of updates) {
      pa.add({ ...u, delta: u.delta.map(addable) });
      aa.add({ ...u, delta: u.delta.map(addable) });
    }
    expect(pa.count).toBe(3);
    expect(pa.totalExamples).toBe(aa.totalExamples);
    expect(pa.trainLoss).toBe(aa.trainLoss);
    const next = prox.optimizer.step(global, prox.aggregator.finish(3, global, pa, [])!);
    const ref = avg.optimizer.step(global, avg.aggregator.finish(3, global, aa, [])!);
    expect(next.map((x) => x.name)).toEqual(['w', 'b']);
    for (let i = 0; i < next.length; i++) {
      expect(next[i].shape).toEqual(ref[i].shape);
      expect(Array.from(next[i].data)).toEqual(Array.from(ref[i].data));
    }
    // hand check of the weighted mean: w += (−0.2, 1.8, −0.4), b += 1.0
    expect(Array.from(next[0].data).map((v) => +v.toFixed(5))).toEqual([0.8, 0.8, 0.1]);
    expect(next[1].data[0]).toBeCloseTo(1, 6);
    expect(prox.aggregator.finish(4, global, prox.aggregator.begin(4, global), [{ reason: 'timeout' }])).toBeNull();
    expect(prox.getState()).toBeNull();
  });
});
