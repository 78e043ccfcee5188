import { describe, expect, it } from 'vitest';
import { WeightedDeltaSum, addable, applyDelta } from './aggregate.ts';
import { float32Codec, seededRng } from '@fedmq/protocol';

const global = [{ name: 'w', shape: [3], data: new Float32Array([1, 1, 1]) }, { name: 'b', shape: [1], data: new Float32Array([0]) }];
const t = (w: number[], b: number) => [{ name: 'w', shape: [3], data: new Float32Array(w) }, { name: 'b', shape: [1], data: new Float32Array([b]) }];
/** The same delta as the coordinator folds it: tensors that add themselves into the sums. */
const d = (w: number[], b: number) => t(w, b).map(addable);

// FedAvg's hand-computed weighted mean and the empty round are tested in strategies/mean.test.ts,
// the node sampling in strategies/fedavg-selector.test.ts.
describe('WeightedDeltaSum', () => {
  it('does not depend on arrival order beyond float32 rounding', () => {
    const deltas = Array.from({ length: 20 }, (_, k) => ({ d: d([Math.sin(k) * 1e3, 1e-4 * k, -k], k / 7), n: 1 + ((k * 37) % 101) }));
    const a = new WeightedDeltaSum(global);
    const b = new WeightedDeltaSum(global);
    for (const x of deltas) a.add(x.d, x.n);
    for (const x of [...deltas].reverse()) b.add(x.d, x.n);
    expect(Array.from(a.mean()[0].data)).toEqual(Array.from(b.mean()[0].data));
    expect(a.mean()[0].shape).toEqual([3]);
  });

  it('refuses a non-positive weight or a wrong size', () => {
    const s = new WeightedDeltaSum(global);
    expect(() => s.add(d([1, 1, 1], 1), 0)).toThrow(RangeError);
    expect(() => s.add([addable({ data: new Float32Array(2) }), addable({ data: new Float32Array(1) })], 1)).toThrow(RangeError);
    expect(() => s.mean()).toThrow(RangeError);
  });

  it('applies a step to the global weights', () => {
    expect(Array.from(applyDelta(global, t([1, 2, 3], -1))[0].data)).toEqual([2, 3, 4]);
  });
});

describe('WeightedDeltaSum with a scale (FedBuff staleness weights)', () => {
  const deltas = Array.from({ length: 9 }, (_, k) => ({ d: d([Math.sin(k) * 1e3, 1e-4 * k, -k], k / 7), n: 1 + ((k * 37) % 101), s: 1 / (1 + k) ** 0.5 }));

  it('gives exactly the unscaled sum for scale 1 and no scale, via both paths', () => {
    const plain = new WeightedDeltaSum(global);
    const one = new WeightedDeltaSum(global);
    const viaCodec = new WeightedDeltaSum(global);
    for (const x of deltas) {
      plain.add(x.d, x.n);
      one.add(x.d, x.n, 1);
    }
    for (const [k, x] of deltas.entries()) {
      const w = [Math.sin(k) * 1e3, 1e-4 * k, -k];
      viaCodec.add(t(w, k / 7).map((ts) => float32Codec.prepare(float32Codec.encode([ts], {}, undefined, Math.random)[0])), x.n, 1);
    }
    expect(one.mean().map((m) => Array.from(m.data))).toEqual(plain.mean().map((m) => Array.from(m.data)));
    expect(viaCodec.mean().map((m) => Array.from(m.data))).toEqual(plain.mean().map((m) => Array.from(m.data)));
  });

  it('folds n_k·s_k·Δ_k into the sum and n_k into the denominator', () => {
    const s = new WeightedDeltaSum(global);
    for (const x of deltas) s.add(x.d, x.n, x.s);
    expect(s.totalWeight).toBe(deltas.reduce((a, x) => a + x.n, 0));
    expect(s.count).toBe(deltas.length);
    const mean = s.mean();
    const total = s.totalWeight;
    for (const [ti, size] of [[0, 3], [1, 1]] as const) {
      for (let i = 0; i < size; i++) {
        const want = deltas.reduce((a, x, k) => a + x.n * x.s * (ti === 0 ? [Math.fround(Math.sin(k) * 1e3), Math.fround(1e-4 * k), -k][i] : Math.fround(k / 7)), 0) / total;
        expect(mean[ti].data[i]).toBeCloseTo(want, 4);
        expect(Math.abs(mean[ti].data[i] - want)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want)));
      }
    }
    // a scale of 0 counts the update's examples but not its delta
    const z = new WeightedDeltaSum(global);
    z.add(d([1, 1, 1], 1), 1, 0);
    z.add(d([2, 2, 2], 2), 1, 1);
    expect(Array.from(z.mean()[0].data)).toEqual([1, 1, 1]);
  });

  it('refuses a negative or non-finite scale without folding anything', () => {
    const s = new WeightedDeltaSum(global);
    for (const bad of [-1, NaN, Infinity]) expect(() => s.add(d([1, 1, 1], 1), 1, bad)).toThrow(RangeError);
    expect(s.count).toBe(0);
    expect(s.totalWeight).toBe(0);
    s.add(d([1, 2, 3], 4), 2, 1);
    expect(Array.from(s.mean()[0].data)).toEqual([1, 2, 3]);
  });
});

describe('WeightedDeltaSum order independence', () => {
  it('gives the same float32 mean bit for bit in any arrival order', () => {
    const rng = seededRng(7);
    const size = 20_000;
    // magnitudes over many binades, mixed signs: plain float64 sums differ between orders here
    const deltas = Array.from({ length: 12 }, () => {
      const d = new Float32Array(size);
      for (let i = 0; i < size; i++) d[i] = (rng() - 0.5) * 10 ** Math.floor(rng() * 12 - 8);
      return d;
    });
    const weights = deltas.map(() => 1 + Math.floor(rng() * 6000));
    const like = [{ name: 'w', shape: [size], data: new Float32Array(size) }];
    const meanIn = (order: number[]) => {
      const s = new WeightedDeltaSum(like);
      for (const k of order) s.add([addable({ data: deltas[k] })], weights[k]);
      return s.mean()[0].data;
    };
    const forward = meanIn(deltas.map((_, k) => k));
    const orders = [deltas.map((_, k) => deltas.length - 1 - k), [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]];
    for (const order of orders) expect(Buffer.from(meanIn(order).buffer).equals(Buffer.from(forward.buffer))).toBe(true);
    // the float32 codec's fused path gives the same bits as the generic one
    const viaCodec = (order: number[]) => {
      const s = new WeightedDeltaSum(like);
      for (const k of order) s.add([float32Codec.prepare(float32Codec.encode([{ ...like[0], data: deltas[k] }], {}, undefined, Math.random)[0])], weights[k]);
      return s.mean()[0].data;
    };
    for (const order of [deltas.map((_, k) => k), ...orders]) expect(Buffer.from(viaCodec(order).buffer).equals(Buffer.from(forward.buffer))).toBe(true);
    // the case a plain float64 running sum gets wrong: 2^60 + 1 − 2^60 (the 1 is lost in that order)
    const big = [2 ** 60, 1, -(2 ** 60)].map((v) => [addable({ data: new Float32Array([v]) })]);
    const one = [{ name: 'w', shape: [1], data: new Float32Array(1) }];
    for (const order of [[0, 1, 2], [0, 2, 1], [1, 2, 0]]) {
      const s = new WeightedDeltaSum(one);
      for (const k of order) s.add(big[k], 1);
      expect(s.mean()[0].data[0]).toBe(Math.fround(1 / 3));
    }
  });
});
