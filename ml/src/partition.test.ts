import { describe, expect, it } from 'vitest';
import { FedmqMlError } from './errors.ts';
import { parsePartition, partition } from './partition.ts';
import { createRng, sampleDirichlet, sampleGamma } from './rng.ts';

/** 10 classes, 200 examples each, labels interleaved. */
const labels = Int32Array.from({ length: 2000 }, (_, i) => i % 10);

function expectExactCover(parts: number[][], n: number): void {
  const seen = new Uint8Array(n);
  for (const p of parts) for (const i of p) seen[i]++;
  expect(seen.every((c) => c === 1)).toBe(true);
}

function meanLabelEntropy(parts: number[][]): number {
  let total = 0;
  for (const p of parts) {
    const counts = new Array<number>(10).fill(0);
    for (const i of p) counts[labels[i]]++;
    let h = 0;
    for (const c of counts) if (c > 0) h -= (c / p.length) * Math.log2(c / p.length);
    total += h;
  }
  return total / parts.length;
}

describe('createRng / samplers', () => {
  it('is deterministic per seed, in [0,1), and differs across seeds', () => {
    const a = createRng(7);
    const b = createRng(7);
    const c = createRng(8);
    const sa = Array.from({ length: 100 }, a);
    expect(Array.from({ length: 100 }, b)).toEqual(sa);
    expect(Array.from({ length: 100 }, c)).not.toEqual(sa);
    expect(sa.every((v) => v >= 0 && v < 1)).toBe(true);
  });

  it('gamma has the right mean and dirichlet sums to 1', () => {
    const rng = createRng(1);
    for (const shape of [0.3, 1, 4]) {
      let s = 0;
      for (let i = 0; i < 20000; i++) s += sampleGamma(rng, shape);
      expect(s / 20000).toBeCloseTo(shape, 1);
    }
    const d = sampleDirichlet(rng, 0.5, 10);
    expect(d.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
    expect(d.every((v) => v >= 0)).toBe(true);
  });
});

describe('parsePartition', () => {
  it('parses the three forms', () => {
    expect(parsePartition('iid')).toEqual({ kind: 'iid' });
    expect(parsePartition(' Dirichlet:0.5 ')).toEqual({ kind: 'dirichlet', alpha: 0.5 });
    expect(parsePartition('natural')).toEqual({ kind: 'natural', groups: [] });
  });

  it.each(['', 'dirichlet', 'dirichlet:0', 'dirichlet:-1', 'dirichlet:abc', 'shards'])('rejects %j with ML_BAD_PARTITION', (s) => {
    expect(() => parsePartition(s)).toThrow(FedmqMlError);
    try {
      parsePartition(s);
    } catch (err) {
      expect((err as FedmqMlError).code).toBe('ML_BAD_PARTITION');
    }
  });
});

describe('partition', () => {
  for (const spec of [{ kind: 'iid' } as const, { kind: 'dirichlet', alpha: 0.5 } as const]) {
    it(`${spec.kind}: exact cover, no empty node, deterministic per seed`, () => {
      const a = partition(labels, 10, spec, 42);
      expect(a).toHaveLength(10);
      expectExactCover(a, labels.length);
      expect(a.every((p) => p.length > 0)).toBe(true);
      expect(partition(labels, 10, spec, 42)).toEqual(a);
      expect(partition(labels, 10, spec, 43)).not.toEqual(a);
    });
  }

  it('iid gives near-equal sizes', () => {
    const sizes = partition(labels, 7, { kind: 'iid' }, 1).map((p) => p.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  });

  it('dirichlet with small alpha is label-skewed (lower mean per-node label entropy than iid)', () => {
    const iid = meanLabelEntropy(partition(labels, 10, { kind: 'iid' }, 42));
    const dir = meanLabelEntropy(partition(labels, 10, { kind: 'dirichlet', alpha: 0.1 }, 42));
    const dirLarge = meanLabelEntropy(partition(labels, 10, { kind: 'dirichlet', alpha: 100 }, 42));
    expect(iid).toBeGreaterThan(3.2); // log2(10) = 3.32
    expect(dir).toBeLessThan(iid - 1);
    expect(dirLarge).toBeGreaterThan(dir);
  });

  it('never leaves a node empty, even with tiny alpha and many nodes', () => {
    const few = Int32Array.from({ length: 60 }, (_, i) => i % 3);
    for (let seed = 0; seed < 20; seed++) {
      const parts = partition(few, 50, { kind: 'dirichlet', alpha: 0.01 }, seed);
      expectExactCover(parts, few.length);
      expect(parts.every((p) => p.length > 0)).toBe(true);
    }
  });

  it('natural: one node per group, ordered by group id', () => {
    const groups = [3, 1, 3, 2, 1, 3];
    expect(partition(new Int32Array(6), 3, { kind: 'natural', groups }, 0)).toEqual([[1, 4], [3], [0, 2, 5]]);
    expect(() => partition(new Int32Array(6), 2, { kind: 'natural', groups }, 0)).toThrow(/3 groups/);
    expect(() => partition(new Int32Array(6), 3, { kind: 'natural', groups: [] }, 0)).toThrow(FedmqMlError);
  });

  it('rejects more nodes than examples with ML_BAD_PARTITION', () => {
    expect(() => partition([0, 1], 3, { kind: 'iid' }, 0)).toThrow(expect.objectContaining({ code: 'ML_BAD_PARTITION' }));
  });
});
