import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { float32Codec } from './float32.ts';
import { topkCodec } from './topk.ts';
import { seededRng } from './rng.ts';
import { Scratch, firstNonFinite, withScratch } from './wire.ts';
import { misalign, viaMsgpack } from './codec-suite.ts';

describe('reading misaligned tensors through a scratch', () => {
  const data = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i) * 1e-3);
  for (const codec of [float32Codec, topkCodec]) {
    it(`${codec.name}: prepare inside withScratch adds exactly what it adds without one`, () => {
      const enc = codec.encode([{ name: 'w', shape: [1001], data }], { k: 0.1 }, undefined, seededRng(1));
      for (const offset of [1, 2, 3]) {
        const [wire] = viaMsgpack(enc, offset);
        const plain = new Float64Array(1001);
        codec.prepare(wire).addTo(plain, 2);
        const scratch = new Scratch();
        const viaScratch = new Float64Array(1001);
        const prepared = withScratch(scratch, () => [codec.prepare(wire), codec.prepare(wire)]);
        for (const p of prepared) p.addTo(viaScratch, 1);
        expect(Array.from(viaScratch)).toEqual(Array.from(plain));
      }
    });
  }

  it('still rejects a NaN hidden in misaligned bytes', () => {
    const bad = Float32Array.from(data);
    const [wire] = viaMsgpack(float32Codec.encode([{ name: 'w', shape: [1001], data: bad }], {}, undefined, seededRng(1)), 3) as [{ data: Uint8Array }];
    const bytes = Uint8Array.from(wire.data);
    new DataView(bytes.buffer).setFloat32(4 * 700, Number.NaN, true);
    const t = { ...(wire as object), data: misalign(bytes, 1) };
    expect(() => withScratch(new Scratch(), () => float32Codec.prepare(t))).toThrow(expect.objectContaining({ code: ErrorCodes.NON_FINITE }));
  });

  it('firstNonFinite finds NaN and ±Infinity, and nothing in finite extremes', () => {
    expect(firstNonFinite(new Float32Array([0, -0, 1e-45, -3.4028234663852886e38, 3.4028234663852886e38]))).toBe(-1);
    expect(firstNonFinite(new Float32Array([1, 2, Number.NaN, Infinity]))).toBe(2);
    expect(firstNonFinite(new Float32Array([1, -Infinity]))).toBe(1);
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
  });

  it('reuses its memory: taking after a reset does not grow it', () => {
    const s = new Scratch();
    const a = s.take(1000);
    s.reset();
    const b = s.take(1000);
    expect(b.buffer).toBe(a.buffer);
    expect(b.byteOffset % 8).toBe(0);
  });
});
