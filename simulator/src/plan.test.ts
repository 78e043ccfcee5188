import { describe, expect, it } from 'vitest';
import { loadMnist } from '@fedmq/ml';
import { balance, parseShard, planNodes, shardOf } from './plan.ts';
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

  it('cuts a fleet into disjoint shards that together are the unsharded plan (same ids, same examples)', () => {
    const fleet = planNodes(train, 100, { kind: 'dirichlet', alpha: 0.5 }, 42);
    for (const count of [1, 3, 7]) {
      const shards = Array.from({ length: count }, (_, index) => shardOf(fleet, { index, count }));
      expect(shards.flat()).toEqual(fleet);
      expect(new Set(shards.flat().map((n) => n.nodeId)).size).toBe(100);
      expect(Math.max(...shards.map((s) => s.length)) - Math.min(...shards.map((s) => s.length))).toBeLessThanOrEqual(1);
    }
    // the same seed planned again in another process gives shard 2 of 3 the same nodes and data
    const again = shardOf(planNodes(train, 100, { kind: 'dirichlet', alpha: 0.5 }, 42), { index: 1, count: 3 });
    expect(again.map((n) => [n.nodeId, Array.from(n.indices)])).toEqual(shardOf(fleet, { index: 1, count: 3 }).map((n) => [n.nodeId, Array.from(n.indices)]));
  });

  it('parses --shard I/N (1-based) and refuses bad shards with FEDMQ_BAD_CONFIG', () => {
    expect(parseShard('2/3')).toEqual({ index: 1, count: 3 });
    expect(parseShard('1/1')).toEqual({ index: 0, count: 1 });
    for (const bad of ['0/3', '4/3', '3', 'a/b', '1/0', '-1/2', '1.5/3']) expect(() => parseShard(bad)).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(() => shardOf([1, 2], { index: 0, count: 3 })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
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
