import { describe, expect, it } from 'vitest';
import type { Strategy } from '../strategy.ts';
import { FedAdagrad } from './fedadagrad.ts';
import { FedAdam } from './fedadam.ts';
import { FedYogi } from './fedyogi.ts';
import { ROUND1, ROUND2, fitConfig, round, x0 } from './server-fixtures.ts';
import { runStrategySuite } from './strategy-suite.ts';

runStrategySuite((base) => new FedAdagrad(base));
runStrategySuite((base) => new FedAdagrad({ ...base, beta1: 0.9 }), { title: 'strategy contract: fedadagrad (β1 0.9)' });

describe('FedAdagrad (Reddi et al. 2021, Algorithm 2)', () => {
  it('takes the hand-computed steps with the defaults η=0.1, β1=0, τ=1e-9', () => {
    const s = new FedAdagrad({ fractionFit: 1, minFitNodes: 1, fitConfig });
    expect([s.eta, s.beta1, s.tau]).toEqual([0.1, 0, 1e-9]);
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
  });

  it('differs from FedAdam and FedYogi on the same input and hyperparameters in round 2', () => {
    // Same η=0.1, β1=0.9, β2=0.99, τ=1e-3 for all three; only the second-moment rule differs.
    const hp = { fractionFit: 1, minFitNodes: 1, fitConfig, eta: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    const run = (s: Strategy) => Array.from(round(s, 2, round(s, 1, x0(), ROUND1), ROUND2)[0].data);
    const adagrad = run(new FedAdagrad(hp));
    const adam = run(new FedAdam(hp));
    const yogi = run(new FedYogi(hp));
    const differ = (a: number[], b: number[]) => a.some((v, i) => Math.abs(v - b[i]) > 1e-5);
    expect(differ(adagrad, adam)).toBe(true);
    expect(differ(adam, yogi)).toBe(true);
    expect(differ(adagrad, yogi)).toBe(true);
  });

  it('refuses bad hyperparameters with a RangeError', () => {
    const base = { fractionFit: 1, minFitNodes: 1, fitConfig };
    for (const bad of [{ eta: -0.1 }, { beta1: 1.5 }, { tau: 0 }]) expect(() => new FedAdagrad({ ...base, ...bad })).toThrow(RangeError);
  });
});
