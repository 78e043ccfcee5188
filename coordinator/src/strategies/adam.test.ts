import { ErrorCodes } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { ADAM_DEFAULTS, ADAM_SERVER_LR, AdamOptimizer, adamDescriptor } from './adam.ts';
import { createComponent } from './descriptor.ts';
import { ROUND1, ROUND2, round, x0 } from './server-fixtures.ts';
import { runOptimizerSuite } from './strategy-suite.ts';

runOptimizerSuite(() => new AdamOptimizer());
runOptimizerSuite(() => new AdamOptimizer({ serverLr: 0.5, beta1: 0.5, beta2: 0.9, tau: 1e-3 }), { title: 'optimizer contract: adam (η 0.5, β 0.5/0.9, τ 1e-3)' });

describe('server Adam (FedAdam, Reddi et al. 2021, Algorithm 2)', () => {
  it('defaults to the server η measured by bench:server-lr, and Flower\'s β1, β2, τ', () => {
    const s = new AdamOptimizer();
    expect([s.serverLr, s.beta1, s.beta2, s.tau]).toEqual([0.01, 0.9, 0.99, 1e-9]);
    expect([ADAM_SERVER_LR, ADAM_DEFAULTS.beta1, ADAM_DEFAULTS.beta2, ADAM_DEFAULTS.tau]).toEqual([0.01, 0.9, 0.99, 1e-9]);
    const d = createComponent(adamDescriptor, {}, {}) as AdamOptimizer;
    expect([d.serverLr, d.beta1, d.beta2, d.tau]).toEqual([0.01, 0.9, 0.99, 1e-9]);
  });

  it('takes the hand-computed steps with η=0.1, β1=0.9, β2=0.99, τ=1e-9 (η of the pre-v2 default)', () => {
    const s = new AdamOptimizer({ serverLr: 0.1 });
    expect([s.serverLr, s.beta1, s.beta2, s.tau]).toEqual([0.1, 0.9, 0.99, 1e-9]);
    // m_0 = 0, v_0 = τ² = 1e-18.
    // Round 1, Δ_1 = (0.1, −0.2, 0.3):
    //   m_1 = 0.9·0 + 0.1·Δ_1 = (0.01, −0.02, 0.03)
    //   v_1 = 0.99·1e-18 + 0.01·Δ_1² = 0.01·(0.01, 0.04, 0.09) = (1e-4, 4e-4, 9e-4)   (+1e-18)
    //   √v_1 = (0.01, 0.02, 0.03)
    //   x_1 = x_0 + 0.1·m_1/(√v_1 + 1e-9) = (1 + 0.1·0.01/0.01, 2 − 0.1·0.02/0.02, 3 + 0.1·0.03/0.03)
    //       = (1.1, 1.9, 3.1)   (each step smaller by a factor 1 − 1e-7 from τ: 1.09999999, …)
    const x1 = round(s, 1, x0(), ROUND1);
    [1.1, 1.9, 3.1].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
    // Round 2, Δ_2 = (0.1, 0.1, −0.01):
    //   m_2 = 0.9·(0.01, −0.02, 0.03) + 0.1·(0.1, 0.1, −0.01) = (0.009+0.01, −0.018+0.01, 0.027−0.001) = (0.019, −0.008, 0.026)
    //   v_2 = 0.99·(1e-4, 4e-4, 9e-4) + 0.01·(0.01, 0.01, 1e-4) = (0.99e-4+1e-4, 3.96e-4+1e-4, 8.91e-4+0.01e-4)
    //       = (1.99e-4, 4.96e-4, 8.92e-4)
    //   √v_2 = (0.014106736, 0.022271057, 0.029866369)
    //   x_2 = x_1 + 0.1·m_2/√v_2 = (1.1 + 0.0019/0.014106736, 1.9 − 0.0008/0.022271057, 3.1 + 0.0026/0.029866369)
    //       = (1.1 + 0.134687419, 1.9 − 0.035921054, 3.1 + 0.087054436) = (1.234687419, 1.864078946, 3.187054436)
    //   (τ = 1e-9 shifts these by ~1e-8; the exact float64 values are 1.234687409, 1.864078946, 3.187054433)
    const x2 = round(s, 2, x1, ROUND2);
    [1.234687409, 1.864078946, 3.187054433].forEach((e, i) => expect(x2[0].data[i]).toBeCloseTo(e, 6));
    expect(x2[0].name).toBe('w');
    expect(x2[0].shape).toEqual([3]);
  });

  it('keeps its moments in the state: m_1 and v_1 after round 1', () => {
    // m and v are float64, but Δ_1 is the float32 weighted mean (0.3 → 0.30000001…), hence 8 digits for m.
    const s = new AdamOptimizer();
    expect(s.getState()).toEqual({ strategy: 'adam', steps: 0, m: null, v: null });
    round(s, 1, x0(), ROUND1);
    const st = s.getState();
    expect(st.steps).toBe(1);
    expect(st.m![0].name).toBe('w');
    [0.01, -0.02, 0.03].forEach((e, i) => expect(st.m![0].data[i]).toBeCloseTo(e, 8));
    [1e-4, 4e-4, 9e-4].forEach((e, i) => expect(st.v![0].data[i]).toBeCloseTo(e, 9));
  });

  it('refuses bad hyperparameters with a RangeError, and FEDMQ_BAD_CONFIG naming the flag through the descriptor', () => {
    const flags = { serverLr: '--server-lr', beta1: '--beta1', beta2: '--beta2', tau: '--tau' } as const;
    for (const bad of [{ serverLr: 0 }, { serverLr: -1 }, { serverLr: Infinity }, { beta1: 1 }, { beta1: -0.1 }, { beta2: 1 }, { beta2: NaN }, { tau: 0 }, { tau: -1e-9 }]) {
      expect(() => new AdamOptimizer(bad)).toThrow(RangeError);
      const flag = flags[Object.keys(bad)[0] as keyof typeof flags];
      expect(() => createComponent(adamDescriptor, bad, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining(flag) }));
    }
  });

  it('refuses a state of another model at the next step, and malformed or foreign states', () => {
    const s = new AdamOptimizer();
    s.setState({ strategy: 'adam', steps: 1, m: [{ name: 'other', data: [0, 0] }], v: [{ name: 'other', data: [1, 1] }] });
    expect(() => round(s, 2, x0(), ROUND2)).toThrow(RangeError);
    expect(() => s.setState({ strategy: 'adam', steps: 1, m: [{ name: 'w', data: [0, 0, 0] }], v: null })).toThrow(TypeError);
    expect(() => s.setState({ strategy: 'adam', steps: -1, m: null, v: null })).toThrow(TypeError);
    expect(() => s.setState({ strategy: 'adam', steps: 1, m: [{ name: 'w', data: [0, 0, 0] }], v: [{ name: 'u', data: [0, 0, 0] }] })).toThrow(TypeError);
    expect(() => s.setState({ strategy: 'yogi', steps: 0, m: null, v: null })).toThrow(TypeError);
    expect(() => s.setState({ strategy: 'fedadam', steps: 0, m: null, v: null })).toThrow(TypeError); // the pre-split name
  });
});
