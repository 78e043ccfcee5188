import { ErrorCodes } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import type { ServerOptimizer } from '../strategy.ts';
import { ADAGRAD_DEFAULTS, ADAGRAD_SERVER_LR, AdagradOptimizer, adagradDescriptor } from './adagrad.ts';
import { AdamOptimizer } from './adam.ts';
import { createComponent } from './descriptor.ts';
import { ROUND1, ROUND2, round, x0 } from './server-fixtures.ts';
import { runOptimizerSuite } from './strategy-suite.ts';
import { YogiOptimizer } from './yogi.ts';

runOptimizerSuite(() => new AdagradOptimizer());
runOptimizerSuite(() => new AdagradOptimizer({ beta1: 0.9 }), { title: 'optimizer contract: adagrad (β1 0.9)' });

describe('server Adagrad (FedAdagrad, Reddi et al. 2021, Algorithm 2)', () => {
  it('defaults to the server η measured by bench:server-lr, and Flower\'s β1, β2, τ', () => {
    const s = new AdagradOptimizer();
    expect([s.serverLr, s.beta1, s.tau]).toEqual([0.03, 0, 1e-9]);
    expect([ADAGRAD_SERVER_LR, ADAGRAD_DEFAULTS.beta1, ADAGRAD_DEFAULTS.tau]).toEqual([0.03, 0, 1e-9]);
    const d = createComponent(adagradDescriptor, {}, {}) as AdagradOptimizer;
    expect([d.serverLr, d.beta1, d.tau]).toEqual([0.03, 0, 1e-9]);
  });

  it('takes the hand-computed steps with η=0.1, β1=0, τ=1e-9 (η of the pre-v2 default)', () => {
    const s = new AdagradOptimizer({ serverLr: 0.1 });
    expect([s.serverLr, s.beta1, s.tau]).toEqual([0.1, 0, 1e-9]);
    // m_0 = 0, v_0 = τ² = 1e-18; β1 = 0 so m_t = Δ_t.
    // Round 1, Δ_1 = (0.1, −0.2, 0.3):
    //   v_1 = 1e-18 + Δ_1² = (0.01, 0.04, 0.09), √v_1 = (0.1, 0.2, 0.3)
    //   x_1 = x_0 + 0.1·Δ_1/(√v_1 + 1e-9) = (1 + 0.1·0.1/0.1, 2 − 0.1·0.2/0.2, 3 + 0.1·0.3/0.3) = (1.1, 1.9, 3.1)
    const x1 = round(s, 1, x0(), ROUND1);
    [1.1, 1.9, 3.1].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
    // Round 2, Δ_2 = (0.1, 0.1, −0.01):
    //   v_2 = v_1 + Δ_2² = (0.01+0.01, 0.04+0.01, 0.09+0.0001) = (0.02, 0.05, 0.0901)
    //   √v_2 = (0.141421356, 0.223606798, 0.300166620)
    //   x_2 = x_1 + 0.1·Δ_2/√v_2 = (1.1 + 0.01/0.141421356, 1.9 + 0.01/0.223606798, 3.1 − 0.001/0.300166620)
    //       = (1.1 + 0.070710678, 1.9 + 0.044721360, 3.1 − 0.003331483) = (1.170710678, 1.944721360, 3.096668517)
    const x2 = round(s, 2, x1, ROUND2);
    [1.170710678, 1.94472136, 3.096668517].forEach((e, i) => expect(x2[0].data[i]).toBeCloseTo(e, 6));
    expect(s.getState().strategy).toBe('adagrad');
  });

  it('differs from Adam and Yogi on the same input and hyperparameters in round 2', () => {
    // Same η=0.1, β1=0.9, β2=0.99, τ=1e-3 for all three; only the second-moment rule differs.
    const hp = { serverLr: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    const run = (s: ServerOptimizer) => Array.from(round(s, 2, round(s, 1, x0(), ROUND1), ROUND2)[0].data);
    const adagrad = run(new AdagradOptimizer(hp));
    const adam = run(new AdamOptimizer(hp));
    const yogi = run(new YogiOptimizer(hp));
    const differ = (a: number[], b: number[]) => a.some((v, i) => Math.abs(v - b[i]) > 1e-5);
    expect(differ(adagrad, adam)).toBe(true);
    expect(differ(adam, yogi)).toBe(true);
    expect(differ(adagrad, yogi)).toBe(true);
  });

  it('refuses bad hyperparameters with a RangeError, and FEDMQ_BAD_CONFIG through the descriptor', () => {
    for (const bad of [{ serverLr: -0.1 }, { beta1: 1.5 }, { tau: 0 }]) {
      expect(() => new AdagradOptimizer(bad)).toThrow(RangeError);
      expect(() => createComponent(adagradDescriptor, bad, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    }
  });
});
