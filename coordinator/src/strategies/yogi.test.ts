import { ErrorCodes } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { createComponent } from './descriptor.ts';
import { ROUND1, ROUND2, round, x0 } from './server-fixtures.ts';
import { runOptimizerSuite } from './strategy-suite.ts';
import { YOGI_DEFAULTS, YOGI_SERVER_LR, YogiOptimizer, yogiDescriptor } from './yogi.ts';

runOptimizerSuite(() => new YogiOptimizer());

describe('server Yogi (FedYogi, Reddi et al. 2021, Algorithm 2)', () => {
  it('defaults to the server η measured by bench:server-lr, and Flower\'s β1, β2, τ', () => {
    const s = new YogiOptimizer();
    expect([s.serverLr, s.beta1, s.beta2, s.tau]).toEqual([0.03, 0.9, 0.99, 1e-3]);
    expect([YOGI_SERVER_LR, YOGI_DEFAULTS.beta1, YOGI_DEFAULTS.beta2, YOGI_DEFAULTS.tau]).toEqual([0.03, 0.9, 0.99, 1e-3]);
    const d = createComponent(yogiDescriptor, {}, {}) as YogiOptimizer;
    expect([d.serverLr, d.beta1, d.beta2, d.tau]).toEqual([0.03, 0.9, 0.99, 1e-3]);
  });

  it('takes the hand-computed steps with η=0.01, β1=0.9, β2=0.99, τ=1e-3 (η of the pre-v2 default)', () => {
    const s = new YogiOptimizer({ serverLr: 0.01 });
    expect([s.serverLr, s.beta1, s.beta2, s.tau]).toEqual([0.01, 0.9, 0.99, 1e-3]);
    // m_0 = 0, v_0 = τ² = 1e-6.
    // Round 1, Δ_1 = (0.1, −0.2, 0.3), Δ_1² = (0.01, 0.04, 0.09):
    //   m_1 = 0.1·Δ_1 = (0.01, −0.02, 0.03)
    //   sign(v_0 − Δ_1²) = (−1, −1, −1) → v_1 = v_0 + 0.01·Δ_1² = (1e-6+1e-4, 1e-6+4e-4, 1e-6+9e-4) = (1.01e-4, 4.01e-4, 9.01e-4)
    //   √v_1 = (0.010049876, 0.020024984, 0.030016662)
    //   x_1 = x_0 + 0.01·m_1/(√v_1 + 0.001)
    //       = (1 + 1e-4/0.011049876, 2 − 2e-4/0.021024984, 3 + 3e-4/0.031016662)
    //       = (1 + 0.009049876, 2 − 0.009512492, 3 + 0.009672221) = (1.009049876, 1.990487508, 3.009672221)
    const x1 = round(s, 1, x0(), ROUND1);
    [1.009049876, 1.990487508, 3.009672221].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
    // Round 2, Δ_2 = (0.1, 0.1, −0.01), Δ_2² = (0.01, 0.01, 1e-4):
    //   m_2 = 0.9·m_1 + 0.1·Δ_2 = (0.019, −0.008, 0.026)
    //   sign(v_1 − Δ_2²) = (sign(1.01e-4 − 0.01), sign(4.01e-4 − 0.01), sign(9.01e-4 − 1e-4)) = (−1, −1, +1)
    //   v_2 = (1.01e-4 + 1e-4, 4.01e-4 + 1e-4, 9.01e-4 − 0.01·1e-4) = (2.01e-4, 5.01e-4, 9.00e-4)   ← v shrinks additively in the 3rd
    //   √v_2 = (0.014177447, 0.022383029, 0.03)
    //   x_2 = x_1 + 0.01·m_2/(√v_2 + 0.001)
    //       = (1.009049876 + 1.9e-4/0.015177447, 1.990487508 − 8e-5/0.023383029, 3.009672221 + 2.6e-4/0.031)
    //       = (1.009049876 + 0.012518574, 1.990487508 − 0.003421285, 3.009672221 + 0.008387097)
    //       = (1.021568450, 1.987066223, 3.018059318)
    const x2 = round(s, 2, x1, ROUND2);
    [1.02156845, 1.987066223, 3.018059318].forEach((e, i) => expect(x2[0].data[i]).toBeCloseTo(e, 6));
    const st = s.getState();
    expect(st.strategy).toBe('yogi');
    [2.01e-4, 5.01e-4, 9e-4].forEach((e, i) => expect(st.v![0].data[i]).toBeCloseTo(e, 9));
  });

  it('refuses bad hyperparameters with a RangeError, and FEDMQ_BAD_CONFIG through the descriptor', () => {
    for (const bad of [{ serverLr: 0 }, { beta1: 1 }, { beta2: -0.5 }, { tau: 0 }, { tau: NaN }]) {
      expect(() => new YogiOptimizer(bad)).toThrow(RangeError);
      expect(() => createComponent(yogiDescriptor, bad, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    }
  });
});
