import { ErrorCodes } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { createComponent } from './descriptor.ts';
import { MOMENTUM_BETA, MOMENTUM_SERVER_LR, MomentumOptimizer, momentumDescriptor } from './momentum.ts';
import { SgdOptimizer } from './sgd.ts';
import { ROUND1, ROUND2, round, x0 } from './server-fixtures.ts';
import { runOptimizerSuite } from './strategy-suite.ts';

runOptimizerSuite(() => new MomentumOptimizer());
runOptimizerSuite(() => new MomentumOptimizer({ serverLr: 0.7, serverMomentum: 0.5 }), { title: 'optimizer contract: momentum (η 0.7, β 0.5)' });

describe('server momentum (FedAvgM, Hsu et al. 2019)', () => {
  it('takes the hand-computed steps with the defaults η=1, β=0.9', () => {
    const s = new MomentumOptimizer();
    expect([s.serverLr, s.serverMomentum]).toEqual([1, 0.9]);
    expect([MOMENTUM_SERVER_LR, MOMENTUM_BETA]).toEqual([1, 0.9]);
    const viaDescriptor = createComponent(momentumDescriptor, {}, {}) as MomentumOptimizer;
    expect([viaDescriptor.serverLr, viaDescriptor.serverMomentum]).toEqual([1, 0.9]);
    // v_0 = 0.
    // Round 1: v_1 = 0.9·0 + Δ_1 = (0.1, −0.2, 0.3); x_1 = x_0 + 1·v_1 = (1.1, 1.8, 3.3)
    const x1 = round(s, 1, x0(), ROUND1);
    [1.1, 1.8, 3.3].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
    // Round 2: v_2 = 0.9·(0.1, −0.2, 0.3) + (0.1, 0.1, −0.01) = (0.09+0.1, −0.18+0.1, 0.27−0.01) = (0.19, −0.08, 0.26)
    //          x_2 = x_1 + v_2 = (1.1+0.19, 1.8−0.08, 3.3+0.26) = (1.29, 1.72, 3.56)
    const x2 = round(s, 2, x1, ROUND2);
    [1.29, 1.72, 3.56].forEach((e, i) => expect(x2[0].data[i]).toBeCloseTo(e, 6));
    const st = s.getState();
    expect(st.strategy).toBe('momentum');
    [0.19, -0.08, 0.26].forEach((e, i) => expect(st.momentum![0].data[i]).toBeCloseTo(e, 7));
  });

  it('scales by the server learning rate: η=0.5, β=0.5', () => {
    const s = new MomentumOptimizer({ serverLr: 0.5, serverMomentum: 0.5 });
    // Round 1: v_1 = Δ_1 = (0.1, −0.2, 0.3); x_1 = x_0 + 0.5·v_1 = (1.05, 1.9, 3.15)
    const x1 = round(s, 1, x0(), ROUND1);
    [1.05, 1.9, 3.15].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
    // Round 2: v_2 = 0.5·(0.1, −0.2, 0.3) + (0.1, 0.1, −0.01) = (0.15, 0, 0.14); x_2 = x_1 + 0.5·v_2 = (1.125, 1.9, 3.22)
    const x2 = round(s, 2, x1, ROUND2);
    [1.125, 1.9, 3.22].forEach((e, i) => expect(x2[0].data[i]).toBeCloseTo(e, 6));
  });

  it('equals server SGD (FedAvg) exactly with β=0 and η=1', () => {
    const m = new MomentumOptimizer({ serverLr: 1, serverMomentum: 0 });
    const a = new SgdOptimizer();
    const m1 = round(m, 1, x0(), ROUND1);
    const a1 = round(a, 1, x0(), ROUND1);
    expect(Array.from(m1[0].data)).toEqual(Array.from(a1[0].data));
    expect(Array.from(round(m, 2, m1, ROUND2)[0].data)).toEqual(Array.from(round(a, 2, a1, ROUND2)[0].data));
  });

  it('refuses bad options with a RangeError (FEDMQ_BAD_CONFIG naming the flag through the descriptor), and a state of another optimizer with a TypeError', () => {
    for (const bad of [{ serverLr: 0 }, { serverLr: NaN }, { serverMomentum: 1 }, { serverMomentum: -0.1 }]) {
      expect(() => new MomentumOptimizer(bad)).toThrow(RangeError);
      const flag = 'serverLr' in bad ? '--server-lr' : '--server-momentum';
      expect(() => createComponent(momentumDescriptor, bad, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining(flag) }));
    }
    expect(() => new MomentumOptimizer().setState({ strategy: 'adam', steps: 0, m: null, v: null })).toThrow(TypeError);
    expect(() => new MomentumOptimizer().setState({ strategy: 'fedavgm', momentum: null })).toThrow(TypeError); // the pre-split name
    expect(() => new MomentumOptimizer().setState({ strategy: 'momentum', momentum: [{ name: 'w', data: [1, 'x', 3] }] })).toThrow(TypeError);
  });

  it('refuses a state of another model at the next step (RangeError)', () => {
    const s = new MomentumOptimizer();
    s.setState({ strategy: 'momentum', momentum: [{ name: 'other', data: [0, 0] }] });
    expect(() => round(s, 2, x0(), ROUND2)).toThrow(RangeError);
  });
});
