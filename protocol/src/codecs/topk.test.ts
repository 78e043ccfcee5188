import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { errorFeedbackRounds, expectCode, runCodecSuite, sampleDelta } from './codec-suite.ts';
import { seededRng } from './rng.ts';
import { keptCount, selectNth, topKIndices } from './select.ts';
import { topkCodec } from './topk.ts';
import type { CodecParams, CodecState, EncodedTensor } from './types.ts';

const badParams: CodecParams[] = [{ k: 0 }, { k: -0.1 }, { k: 1.5 }, { k: NaN }];
const nanValue = {
  label: 'NaN value (FEDMQ_NON_FINITE)',
  code: ErrorCodes.NON_FINITE,
  make: (t: EncodedTensor) => {
    const b = Uint8Array.from(t.values as Uint8Array);
    new DataView(b.buffer).setFloat32(4, NaN, true);
    return { ...t, values: b };
  },
};
runCodecSuite(topkCodec, { params: { k: 0.01 }, accuracy: 'sparse', malformed: [nanValue], badParams });
runCodecSuite(topkCodec, { label: 'k = 0.3', params: { k: 0.3 }, accuracy: 'sparse' });
runCodecSuite(topkCodec, { label: 'k = 1', params: { k: 1 }, accuracy: 'exact' });

/** Reference: sort by (|x| desc, index asc), take k, sort indices ascending. */
function referenceTopK(x: Float32Array, k: number): number[] {
  const order = Array.from(x, (_, i) => i).sort((a, b) => Math.abs(x[b]) - Math.abs(x[a]) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

function u32(bytes: unknown): Uint32Array {
  return new Uint32Array(Uint8Array.from(bytes as Uint8Array).buffer);
}
function f32(bytes: unknown): Float32Array {
  return new Float32Array(Uint8Array.from(bytes as Uint8Array).buffer);
}

describe('top-k selection', () => {
  it('keptCount = max(1, ceil(k·n)), robust to floating-point noise', () => {
    expect(keptCount(100, 0.07)).toBe(7); // 0.07 × 100 = 7.000000000000001
    expect(keptCount(156_800, 0.01)).toBe(1568);
    expect(keptCount(199_210, 0.01)).toBe(1993);
    expect(keptCount(10, 0.01)).toBe(1);
    expect(keptCount(10, 0.15)).toBe(2);
    expect(keptCount(5, 1)).toBe(5);
    expect(keptCount(0, 0.5)).toBe(0);
  });

  it('selectNth returns the order statistic', () => {
    const rng = seededRng(4);
    for (const n of [1, 2, 3, 10, 1000]) {
      const a = Float32Array.from({ length: n }, () => Math.round(rng() * 20));
      const sorted = Array.from(a).sort((p, q) => p - q);
      for (const pos of [0, n >> 1, n - 1]) expect(selectNth(a.slice(), pos)).toBe(sorted[pos]);
    }
  });

  it('keeps exactly the k largest magnitudes, ties broken by lower index (random, quantised with many ties, zeros, sorted, constant)', () => {
    const rng = seededRng(8);
    const inputs: Float32Array[] = [
      sampleDelta([20_000], 5),
      Float32Array.from(sampleDelta([20_000], 6), (v) => Math.round(v * 300) / 4), // heavy ties
      Float32Array.from({ length: 5000 }, (_, i) => (i % 3 === 0 ? 0 : i)), // ascending, zeros
      Float32Array.from({ length: 5000 }, (_, i) => -(5000 - i)), // descending magnitudes
      new Float32Array(3000).fill(-0.5), // all equal: the first k
      new Float32Array(3000), // all zero
      Float32Array.from({ length: 7 }, () => rng() - 0.5),
    ];
    for (const x of inputs) {
      for (const frac of [0.001, 0.01, 0.1, 0.5, 0.99, 1]) {
        const k = keptCount(x.length, frac);
        const got = Array.from(topKIndices(x, k));
        expect(got).toEqual(referenceTopK(x, k));
      }
    }
  });

  it('handles 1M values (O(n) selection)', () => {
    const x = sampleDelta([1_000_000], 12);
    const idx = topKIndices(x, 10_000);
    expect(idx.length).toBe(10_000);
    const mags = Array.from(x, Math.abs).sort((a, b) => b - a);
    const threshold = mags[9_999];
    let minKept = Infinity;
    for (const i of idx) minKept = Math.min(minKept, Math.abs(x[i]));
    expect(minKept).toBe(threshold);
    for (let j = 1; j < idx.length; j++) expect(idx[j]).toBeGreaterThan(idx[j - 1]);
  });
});

describe('topk codec', () => {
  it('sends exactly the k largest corrected values; sent + residual === corrected; the residual holds exactly what was dropped', () => {
    const shape = [200, 784];
    const state: CodecState = {};
    const rng = seededRng(1);
    let prev = new Float32Array(200 * 784);
    for (let round = 0; round < 4; round++) {
      const delta = sampleDelta(shape, 300 + round);
      const corrected = Float32Array.from(delta, (d, i) => d + prev[i]);
      const [t] = topkCodec.encode([{ name: 'fc', shape, data: delta }], { k: 0.01 }, state, rng);
      const idx = u32(t.indices);
      expect(idx.length).toBe(1568);
      expect(Array.from(idx)).toEqual(referenceTopK(corrected, 1568));
      const values = f32(t.values);
      idx.forEach((i, j) => expect(values[j]).toBe(corrected[i]));
      const sent = topkCodec.decode(t).data;
      const residual = state.residual!.get('fc')!;
      const kept = new Set(idx);
      for (let i = 0; i < corrected.length; i++) {
        if (sent[i] + residual[i] !== corrected[i]) throw new Error(`[${i}] ${sent[i]} + ${residual[i]} !== ${corrected[i]}`);
        if (kept.has(i) ? residual[i] !== 0 : residual[i] !== corrected[i] || sent[i] !== 0) throw new Error(`[${i}] wrong split`);
      }
      prev = residual.slice();
    }
  });

  it('with error feedback the cumulative sent sum tracks the cumulative delta and the residual stays bounded; without, it does not', () => {
    const withEf = errorFeedbackRounds(topkCodec, { k: 0.05 }, 2000, 120, true);
    const noEf = errorFeedbackRounds(topkCodec, { k: 0.05 }, 2000, 120, false);
    expect(withEf.ledgerError).toBeLessThan(1e-5 * withEf.cumNorm); // Σ sent + residual = Σ delta
    expect(withEf.relError).toBeLessThan(0.1); // ≈ 0.06: the error is the bounded residual, so it falls like 1/rounds
    expect(noEf.relError).toBeGreaterThan(0.5);
    const early = Math.max(...withEf.residualNorms.slice(10, 40));
    const late = Math.max(...withEf.residualNorms.slice(80));
    expect(late).toBeLessThan(1.5 * early); // bounded, not growing with the rounds
  });

  it('keeps no residual without state; creates the map with state {}', () => {
    const d = [{ name: 'a', shape: [100], data: sampleDelta([100], 1) }];
    expect(topkCodec.encode(d, { k: 0.1 }, undefined, seededRng(1))).toHaveLength(1);
    const state: CodecState = {};
    topkCodec.encode(d, { k: 0.1 }, state, seededRng(1));
    expect(state.residual?.get('a')?.length).toBe(100);
  });

  it('rejects a stored residual of another length (FEDMQ_MODEL_MISMATCH) and leaves the state untouched when encode fails', () => {
    const state: CodecState = { residual: new Map([['a', new Float32Array(99)]]) };
    expectCode(() => topkCodec.encode([{ name: 'a', shape: [100], data: sampleDelta([100], 1) }], {}, state, seededRng(1)), ErrorCodes.MODEL_MISMATCH);
    const r = new Float32Array(10).fill(1);
    const s2: CodecState = { residual: new Map([['a', r]]) };
    const bad = sampleDelta([5], 1);
    bad[2] = NaN;
    expectCode(
      () => topkCodec.encode([{ name: 'a', shape: [10], data: sampleDelta([10], 2) }, { name: 'b', shape: [5], data: bad }], {}, s2, seededRng(1)),
      ErrorCodes.NON_FINITE,
    );
    expect(s2.residual!.get('a')).toBe(r);
    expect(Array.from(r)).toEqual(new Array(10).fill(1));
    expect(s2.residual!.has('b')).toBe(false);
  });

  it('wire: k uint32 indices and k float32 values, little-endian', () => {
    const [t] = topkCodec.encode([{ name: 'w', shape: [4], data: Float32Array.of(0.5, -3, 1, 2) }], { k: 0.5 }, undefined, seededRng(1));
    expect(Buffer.from(t.indices as Uint8Array).toString('hex')).toBe('0100000003000000');
    expect(Buffer.from(t.values as Uint8Array).toString('hex')).toBe('000040c000000040');
    expect(Object.keys(t).sort()).toEqual(['codec', 'indices', 'name', 'shape', 'values']);
  });
});
