import { ErrorCodes } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { applyDelta } from '../aggregate.ts';
import { createComponent } from './descriptor.ts';
import { SGD_SERVER_LR, SgdOptimizer, sgdDescriptor } from './sgd.ts';
import { ROUND1, round, x0 } from './server-fixtures.ts';
import { runOptimizerSuite, seededRng } from './strategy-suite.ts';

runOptimizerSuite(() => new SgdOptimizer());
runOptimizerSuite(() => new SgdOptimizer({ serverLr: 0.5 }), { title: 'optimizer contract: sgd (η 0.5)' });

describe('server SGD', () => {
  it('defaults to η = 1: x + Δ, bit for bit applyDelta for float32 steps and g + d in float64 for float64 steps', () => {
    expect(SGD_SERVER_LR).toBe(1);
    expect(new SgdOptimizer().serverLr).toBe(1);
    expect((createComponent(sgdDescriptor, {}, {}) as SgdOptimizer).serverLr).toBe(1);
    const rng = seededRng(3);
    const global = [{ name: 'w', shape: [500], data: Float32Array.from({ length: 500 }, () => rng() * 4 - 2) }];
    const f32 = [{ name: 'w', shape: [500], data: Float32Array.from({ length: 500 }, () => (rng() - 0.5) * 1e-3) }];
    expect(Array.from(new SgdOptimizer().step(global, f32)[0].data)).toEqual(Array.from(applyDelta(global, f32)[0].data));
    const f64 = [{ name: 'w', shape: [500], data: Float64Array.from({ length: 500 }, () => (rng() - 0.5) * 1e-3) }];
    const next = new SgdOptimizer().step(global, f64)[0].data;
    for (let i = 0; i < 500; i++) expect(next[i]).toBe(Math.fround(global[0].data[i] + f64[0].data[i]));
  });

  it('scales the step by η: x_0 + 0.5·Δ_1 = (1.05, 1.9, 3.15)', () => {
    // Δ_1 = (0.1, −0.2, 0.3) (server-fixtures ROUND1)
    const x1 = round(new SgdOptimizer({ serverLr: 0.5 }), 1, x0(), ROUND1);
    [1.05, 1.9, 3.15].forEach((e, i) => expect(x1[0].data[i]).toBeCloseTo(e, 6));
  });

  it('refuses a bad η: RangeError from the class, FEDMQ_BAD_CONFIG naming --server-lr from the descriptor', () => {
    for (const serverLr of [0, -1, NaN, Infinity]) {
      expect(() => new SgdOptimizer({ serverLr })).toThrow(RangeError);
      expect(() => createComponent(sgdDescriptor, { serverLr }, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining('--server-lr') }));
    }
  });
});
