import { describe, expect, it } from 'vitest';
import { FedAvgSelector, sample } from './fedavg-selector.ts';
import { seededRng } from './strategy-suite.ts';

describe('FedAvgSelector (McMahan et al. 2017)', () => {
  it('selects min(K, max(⌈C·K⌉, minFitNodes)) distinct available nodes, sorted, reproducibly', () => {
    const opts = { fraction: 0.3, minFitNodes: 2 };
    for (const k of [0, 1, 2, 3, 7, 10, 20, 101]) {
      const nodes = Array.from({ length: k }, (_, i) => `n${String(i).padStart(3, '0')}`);
      const expected = Math.min(k, Math.max(opts.minFitNodes, Math.ceil(opts.fraction * k)));
      const s = new FedAvgSelector(opts);
      const a = s.select(1, nodes, seededRng(42));
      expect(a).toHaveLength(expected);
      expect(new Set(a).size).toBe(expected);
      for (const id of a) expect(nodes).toContain(id);
      expect(a).toEqual([...a].sort());
      expect(s.select(1, nodes, seededRng(42))).toEqual(a);
      expect(new FedAvgSelector(opts).select(2, nodes, seededRng(42))).toEqual(a);
    }
  });

  it('samples max(C·K, minFitNodes): 3 of 10 at C = 0.3, 4 of 10 at C = 0.1 with minFitNodes 4', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    let s = 1;
    const rng = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const selected = new FedAvgSelector({ fraction: 0.3, minFitNodes: 2 }).select(1, nodes, rng);
    expect(selected).toHaveLength(3);
    expect(new Set(selected).size).toBe(3);
    expect(new FedAvgSelector({ fraction: 0.1, minFitNodes: 4 }).select(1, nodes, rng)).toHaveLength(4);
  });

  it('draws exactly k numbers from the rng per round, as sample does', () => {
    const nodes = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    let draws = 0;
    const base = seededRng(9);
    const counted = () => (draws++, base());
    const selected = new FedAvgSelector({ fraction: 0.3, minFitNodes: 2 }).select(1, nodes, counted);
    expect(draws).toBe(6);
    expect(selected).toEqual(sample(nodes, 6, seededRng(9)));
  });

  it('refuses a fraction outside (0, 1] or a minFitNodes that is not an integer ≥ 1 (RangeError)', () => {
    for (const fraction of [0, -0.1, 1.5, NaN]) expect(() => new FedAvgSelector({ fraction, minFitNodes: 1 })).toThrow(RangeError);
    for (const minFitNodes of [0, -1, 1.5, NaN]) expect(() => new FedAvgSelector({ fraction: 1, minFitNodes })).toThrow(RangeError);
    expect(() => new FedAvgSelector({ fraction: 1, minFitNodes: 1 })).not.toThrow();
  });
});

describe('sample', () => {
  it('picks k distinct items in items order, reproducibly for the same rng', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    let s = 1;
    const rng = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const again = sample(nodes, 3, rng);
    s = 1;
    expect(sample(nodes, 3, rng)).toEqual(again);
    expect(new Set(again).size).toBe(3);
    expect(again).toEqual(nodes.filter((n) => again.includes(n)));
    expect(sample(nodes, 10, rng).sort()).toEqual([...nodes].sort());
    expect(sample(nodes, 0, rng)).toEqual([]);
  });
});
