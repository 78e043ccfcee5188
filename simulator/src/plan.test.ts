import { describe, expect, it } from 'vitest';
import { loadMnist } from '@fedmq/ml';
import { balance, planNodes } from './plan.ts';
import { loadSimDataset } from './datasets.ts';

describe('simulation plan', () => {
  const train = loadMnist('train');

  it('is deterministic for a seed, and covers every example once', () => {
    const a = planNodes(train, 10, { kind: 'dirichlet', alpha: 0.5 }, 42);
    const b = planNodes(train, 10, { kind: 'dirichlet', alpha: 0.5 }, 42);
    const c = planNodes(train, 10, { kind: 'dirichlet', alpha: 0.5 }, 43);
    expect(a.map((n) => Array.from(n.indices))).toEqual(b.map((n) => Array.from(n.indices)));
    expect(a.map((n) => n.indices.length)).not.toEqual(c.map((n) => n.indices.length));
    const all = a.flatMap((n) => Array.from(n.indices)).sort((x, y) => x - y);
    expect(all).toHaveLength(60_000);
    expect(new Set(all).size).toBe(60_000);
    expect(a.map((n) => n.nodeId)).toEqual(Array.from({ length: 10 }, (_, i) => `node-00${i}`));
  });

  it('balances nodes over workers by numExamples (largest first)', () => {
    const nodes = [9, 7, 6, 5, 4, 3].map((n, i) => ({ nodeId: `n${i}`, indices: new Int32Array(n) }));
    const loads = balance(nodes, 2).map((w) => w.reduce((s, n) => s + n.indices.length, 0));
    expect(loads.sort()).toEqual([17, 17]);
    expect(balance(nodes, 10)).toHaveLength(6);
  });

  it('gives a natural split one node per device, named after it', () => {
    const telosb = loadSimDataset('telosb');
    const plan = planNodes(telosb.train, 0, { kind: 'natural', groups: [] }, 1, telosb.groups, telosb.groupPrefix);
    expect(plan.map((n) => n.nodeId)).toEqual(['mote-1', 'mote-2', 'mote-3', 'mote-4']);
    expect(plan.reduce((s, n) => s + n.indices.length, 0)).toBe(telosb.train.numExamples);
    expect(() => planNodes(telosb.train, 3, { kind: 'natural', groups: [] }, 1, telosb.groups)).toThrow();
  });
});
