import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { epsilonFor, noiseMultiplierFor } from './calibrate.ts';
import { RdpAccountant } from './accountant.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

describe('epsilonFor', () => {
  it('is the accountant after `rounds` compositions', () => {
    expect(epsilonFor({ q: 0.1, noiseMultiplier: 1.1, rounds: 100, delta: 1e-5 })).toBe(new RdpAccountant().compose(0.1, 1.1, 100).epsilon(1e-5));
    expect(epsilonFor({ q: 0.1, noiseMultiplier: 0, rounds: 3, delta: 1e-5 })).toBe(Infinity);
  });

  it('refuses invalid plans with FEDMQ_BAD_CONFIG', () => {
    const ok = { q: 0.1, noiseMultiplier: 1, rounds: 10, delta: 1e-5 };
    for (const bad of [{ q: 0 }, { q: 1.5 }, { q: NaN }, { rounds: 0 }, { rounds: 2.5 }, { delta: 0 }, { delta: 1 }, { noiseMultiplier: -1 }, { noiseMultiplier: Infinity }]) {
      expect(code(() => epsilonFor({ ...ok, ...bad })), JSON.stringify(bad)).toBe(ErrorCodes.BAD_CONFIG);
    }
  });
});

describe('noiseMultiplierFor', () => {
  it.each([
    { q: 0.1, rounds: 100, targetEpsilon: 8, delta: 1e-5 },
    { q: 0.1, rounds: 100, targetEpsilon: 1, delta: 1e-5 },
    { q: 0.01, rounds: 1000, targetEpsilon: 2, delta: 1e-5 },
    { q: 1, rounds: 10, targetEpsilon: 3, delta: 1e-6 },
    { q: 0.5, rounds: 1, targetEpsilon: 50, delta: 1e-3 }, // σ < 1: the bracket goes down
  ])('returns the smallest σ: ε(σ) ≤ target and ε(σ·(1 − 1e-3)) > target — %o', (plan) => {
    const sigma = noiseMultiplierFor(plan);
    expect(epsilonFor({ ...plan, noiseMultiplier: sigma })).toBeLessThanOrEqual(plan.targetEpsilon);
    expect(epsilonFor({ ...plan, noiseMultiplier: sigma * (1 - 1e-3) })).toBeGreaterThan(plan.targetEpsilon);
    expect(epsilonFor({ ...plan, noiseMultiplier: sigma * (1 - 1e-5) })).toBeGreaterThan(plan.targetEpsilon); // 1e-6 tolerance
  });

  it('q = 1, one round, orders 1.0…100 by 0.001, (1, 1e-6): σ = 4.530877117 (dp_accounting test_compute_epsilon_delta_gaussian chose it for exactly (1, 1e-6)-DP)', () => {
    const orders = Array.from({ length: 99000 }, (_, i) => 0.001 * (i + 1000));
    const sigma = noiseMultiplierFor({ q: 1, rounds: 1, targetEpsilon: 1, delta: 1e-6, orders });
    expect(Math.abs(sigma - 4.530877117)).toBeLessThan(1e-5 * 4.530877117);
  });

  it('σ grows as the target shrinks and with the rounds (monotone)', () => {
    const base = { q: 0.05, rounds: 200, delta: 1e-5 };
    const s = [8, 4, 2, 1].map((targetEpsilon) => noiseMultiplierFor({ ...base, targetEpsilon }));
    for (let i = 1; i < s.length; i++) expect(s[i]).toBeGreaterThan(s[i - 1]);
    expect(noiseMultiplierFor({ ...base, rounds: 400, targetEpsilon: 2 })).toBeGreaterThan(s[2]);
  });

  it('refuses invalid and impossible targets with FEDMQ_BAD_CONFIG', () => {
    const ok = { q: 0.1, rounds: 10, targetEpsilon: 1, delta: 1e-5 };
    for (const bad of [{ targetEpsilon: 0 }, { targetEpsilon: -1 }, { targetEpsilon: Infinity }, { targetEpsilon: NaN }, { q: 0 }, { rounds: 0 }, { delta: 0 }, { relativeTolerance: 0 }]) {
      expect(code(() => noiseMultiplierFor({ ...ok, ...bad })), JSON.stringify(bad)).toBe(ErrorCodes.BAD_CONFIG);
    }
    // ε = 1e-4 over 1e6 full-participation rounds needs σ ≈ 5e7
    expect(code(() => noiseMultiplierFor({ q: 1, rounds: 1_000_000, targetEpsilon: 1e-4, delta: 1e-5 }))).toBe(ErrorCodes.BAD_CONFIG);
  });
});
