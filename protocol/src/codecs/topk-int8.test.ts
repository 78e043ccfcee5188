import { describe, expect, it } from 'vitest';
import { errorFeedbackRounds, runCodecSuite, sampleDelta } from './codec-suite.ts';
import { seededRng } from './rng.ts';
import { topkInt8Codec } from './topk-int8.ts';
import { topkCodec } from './topk.ts';
import type { CodecParams, CodecState, EncodedTensor } from './types.ts';

const minus128 = {
  label: 'int8 value −128',
  make: (t: EncodedTensor) => {
    const b = Uint8Array.from(t.values as Uint8Array);
    b[3] = 0x80;
    return { ...t, values: b };
  },
};
const badParams: CodecParams[] = [{ k: 0 }, { k: 2 }, { blockSize: -3 }, { rounding: 'floor' as 'nearest' }];
runCodecSuite(topkInt8Codec, { params: { k: 0.01, blockSize: 256 }, accuracy: 'sparse', malformed: [minus128], badParams });
runCodecSuite(topkInt8Codec, { label: 'k = 0.5, one scale per tensor', params: { k: 0.5, blockSize: 0 }, accuracy: 'sparse', malformed: [minus128] });
runCodecSuite(topkInt8Codec, { label: 'k = 0.2, blockSize 3', params: { k: 0.2, blockSize: 3 }, accuracy: 'sparse' });

const bytes = (v: unknown) => Uint8Array.from(v as Uint8Array);

describe('topk-int8 codec', () => {
  it('keeps the same indices as topk; sent values within one step; residual = corrected − decoded (quantisation error fed back)', () => {
    const shape = [200, 784];
    const state: CodecState = {};
    const rng = seededRng(3);
    let prev = new Float32Array(200 * 784);
    for (let round = 0; round < 3; round++) {
      const delta = sampleDelta(shape, 50 + round);
      const corrected = Float32Array.from(delta, (d, i) => d + prev[i]);
      const [t] = topkInt8Codec.encode([{ name: 'fc', shape, data: delta }], { k: 0.01, blockSize: 256 }, state, rng);
      const [ref] = topkCodec.encode([{ name: 'fc', shape, data: corrected }], { k: 0.01 }, undefined, rng);
      expect(bytes(t.indices)).toEqual(bytes(ref.indices));
      const idx = new Uint32Array(bytes(t.indices).buffer);
      const scales = new Float32Array(bytes(t.scales).buffer);
      expect(scales.length).toBe(Math.ceil(1568 / 256));
      expect((t.values as Uint8Array).byteLength).toBe(1568);
      const y = topkInt8Codec.decode(t).data;
      const r = state.residual!.get('fc')!;
      const kept = new Set(idx);
      idx.forEach((i, j) => {
        const s = scales[Math.floor(j / 256)];
        expect(Math.abs(y[i] - corrected[i])).toBeLessThan(s * (1 + 2 ** -20));
      });
      for (let i = 0; i < corrected.length; i++) {
        if (kept.has(i)) {
          if (r[i] !== Math.fround(corrected[i] - y[i])) throw new Error(`[${i}] residual ${r[i]} ≠ ${corrected[i]} − ${y[i]}`);
          // decoded + residual = corrected up to one float32 rounding
          if (Math.abs(y[i] + r[i] - corrected[i]) > Math.abs(corrected[i]) * 2 ** -23) throw new Error(`[${i}] ledger`);
        } else if (r[i] !== corrected[i] || y[i] !== 0) throw new Error(`[${i}] dropped value not kept in residual`);
      }
      prev = r.slice();
    }
  });

  it('with error feedback the cumulative sent sum tracks the cumulative delta; without, it does not', () => {
    const withEf = errorFeedbackRounds(topkInt8Codec, { k: 0.05, blockSize: 64 }, 2000, 120, true);
    const noEf = errorFeedbackRounds(topkInt8Codec, { k: 0.05, blockSize: 64 }, 2000, 120, false);
    expect(withEf.ledgerError).toBeLessThan(1e-5 * withEf.cumNorm);
    expect(withEf.relError).toBeLessThan(0.1);
    expect(noEf.relError).toBeGreaterThan(0.5);
    const early = Math.max(...withEf.residualNorms.slice(10, 40));
    const late = Math.max(...withEf.residualNorms.slice(80));
    expect(late).toBeLessThan(1.5 * early);
  });

  it('one scale per block of kept values; blockSize 0 → one scale', () => {
    const x = sampleDelta([10_000], 4);
    for (const [bs, nb] of [[0, 1], [256, 1], [30, 4], [1, 100]]) {
      const [t] = topkInt8Codec.encode([{ name: 'w', shape: [10_000], data: x }], { k: 0.01, blockSize: bs }, undefined, seededRng(1));
      expect(t.blockSize).toBe(bs);
      expect((t.scales as Uint8Array).byteLength).toBe(nb * 4);
    }
  });
});
