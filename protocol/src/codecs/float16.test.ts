import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { expectCode, runCodecSuite, sampleDelta } from './codec-suite.ts';
import { FLOAT16_MAX, float16Codec, float16ToFloat32, float32ToFloat16, halfToNumber, numberToHalf } from './float16.ts';
import { seededRng } from './rng.ts';

runCodecSuite(float16Codec, {
  params: {},
  accuracy: 'bounded',
  malformed: [
    { label: 'NaN pattern (FEDMQ_NON_FINITE)', code: ErrorCodes.NON_FINITE, make: (t) => withHalf(t, 0x7e00) },
    { label: '+Infinity pattern (FEDMQ_NON_FINITE)', code: ErrorCodes.NON_FINITE, make: (t) => withHalf(t, 0x7c00) },
    { label: '−Infinity pattern (FEDMQ_NON_FINITE)', code: ErrorCodes.NON_FINITE, make: (t) => withHalf(t, 0xfc00) },
  ],
});

function withHalf(t: Record<string, unknown>, bits: number): Record<string, unknown> {
  const b = Uint8Array.from(t.data as Uint8Array);
  b[6] = bits & 0xff;
  b[7] = bits >> 8;
  return { ...t, data: b };
}

/** Reference float16 rounding: binary search among all finite halves, ties to the even pattern. */
const HALVES = Float64Array.from({ length: 0x7c00 }, (_, h) => halfToNumber(h));
function referenceHalf(x: number, saturate: boolean): number {
  if (Number.isNaN(x)) return 0x7e00; // sign ignored
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | (saturate && a !== Infinity ? 0x7bff : 0x7c00);
  let lo = 0;
  let hi = 0x7bff; // HALVES[lo] <= a < HALVES[hi+1]
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (HALVES[mid] <= a) lo = mid;
    else hi = mid - 1;
  }
  if (lo === 0x7bff) return sign | lo;
  const dLo = a - HALVES[lo];
  const dHi = HALVES[lo + 1] - a;
  const h = dLo < dHi ? lo : dHi < dLo ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
  return sign | h;
}

describe('float16 helpers', () => {
  it('round-trips every finite float16 and ±Infinity exactly; NaN stays NaN', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const f = float16ToFloat32(all);
    const back = float32ToFloat16(f);
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN) {
        expect(Number.isNaN(f[h])).toBe(true);
        expect(back[h] & 0x7fff).toBe(0x7e00);
      } else if (back[h] !== h) throw new Error(`0x${h.toString(16)} → ${f[h]} → 0x${back[h].toString(16)}`);
    }
  });

  it('matches a reference round-to-nearest-even on 300k random float32 bit patterns and the edge cases', () => {
    const rng = seededRng(2024);
    const bits = new Uint32Array(300_000);
    for (let i = 0; i < bits.length; i++) {
      // Half of them concentrated around the float16 range (exponents 100..145).
      const r = Math.floor(rng() * 2 ** 32) >>> 0;
      bits[i] = i % 2 ? r : (r & 0x807fffff) | ((100 + Math.floor(rng() * 46)) << 23);
    }
    const x = new Float32Array(bits.buffer);
    const edges = Float32Array.of(0, -0, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -26, 2 ** -14, 2 ** -14 - 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519.99, 65520, 1e30, Infinity, -Infinity, NaN, 1e-45);
    for (const arr of [x, edges]) {
      for (const saturate of [false, true]) {
        const got = float32ToFloat16(arr, undefined, saturate);
        for (let i = 0; i < arr.length; i++) {
          const want = referenceHalf(arr[i], saturate);
          const g = Number.isNaN(arr[i]) ? got[i] & 0x7fff : got[i]; // NaN keeps its sign bit
          if (g !== want) throw new Error(`${arr[i]} (saturate ${saturate}): got 0x${got[i].toString(16)}, want 0x${want.toString(16)}`);
        }
      }
    }
  });

  it('rounds ties to even, handles subnormals, overflow, infinities and NaN', () => {
    expect(numberToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even (1.0)
    expect(numberToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (1 + 2⁻⁹)
    expect(numberToHalf(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(numberToHalf(2 ** -25)).toBe(0x0000); // tie → even (0)
    expect(numberToHalf(3 * 2 ** -25)).toBe(0x0002); // tie → even
    expect(numberToHalf(2 ** -14)).toBe(0x0400); // smallest normal
    expect(numberToHalf(-0)).toBe(0x8000);
    expect(numberToHalf(65504)).toBe(0x7bff);
    expect(numberToHalf(65519)).toBe(0x7bff);
    expect(numberToHalf(65520)).toBe(0x7c00); // overflow → +Infinity …
    expect(numberToHalf(65520, true)).toBe(0x7bff); // … or 65504 saturated
    expect(numberToHalf(-1e9, true)).toBe(0xfbff);
    expect(numberToHalf(Infinity, true)).toBe(0x7c00); // Infinity is not "overflow"
    expect(numberToHalf(-Infinity)).toBe(0xfc00);
    expect(numberToHalf(NaN)).toBe(0x7e00);
    expect(halfToNumber(0x7bff)).toBe(FLOAT16_MAX);
    expect(halfToNumber(0x0001)).toBe(2 ** -24);
    expect(Object.is(halfToNumber(0x8000), -0)).toBe(true);
    expect(() => float32ToFloat16(new Float32Array(3), new Uint16Array(2))).toThrow(RangeError);
    expect(() => float16ToFloat32(new Uint16Array(3), new Float32Array(4))).toThrow(RangeError);
  });
});

describe('float16 codec', () => {
  it('relative error ≤ 2⁻¹¹ (< 1e-3) over the normal float16 range; absolute ≤ 2⁻²⁵ below it', () => {
    const rng = seededRng(9);
    const n = 200_000;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (rng() < 0.5 ? -1 : 1) * 2 ** (-14 + rng() * 29.99); // [2⁻¹⁴, 65504)
    const [t] = float16Codec.encode([{ name: 'w', shape: [n], data: x }], {}, undefined, rng);
    const y = float16Codec.decode(t).data;
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(y[i] - x[i]) / Math.abs(x[i]));
    expect(worst).toBeLessThanOrEqual(2 ** -11);
    expect(worst).toBeLessThan(1e-3);
    expect(worst).toBeGreaterThan(4.8e-4); // the bound is tight

    const small = Float32Array.from(sampleDelta([10_000], 3), (v) => v * 1e-4); // |x| ≲ 5e-6 < 2⁻¹⁴
    const ys = float16Codec.decode(float16Codec.encode([{ name: 's', shape: [10_000], data: small }], {}, undefined, rng)[0]).data;
    for (let i = 0; i < small.length; i++) expect(Math.abs(ys[i] - small[i])).toBeLessThanOrEqual(2 ** -25);
  });

  it('clamps finite overflow to ±65504 instead of ±Infinity (a non-finite delta would be rejected)', () => {
    const x = Float32Array.of(70000, -1e20, 65504, 65519, 3.4e38);
    const [t] = float16Codec.encode([{ name: 'w', shape: [5], data: x }], {}, undefined, seededRng(1));
    expect(Array.from(float16Codec.decode(t).data)).toEqual([65504, -65504, 65504, 65504, 65504]);
    expect(Array.from(float16Codec.errorBound!(t)).every((b) => b === Infinity)).toBe(true);
  });

  it('carries 2 bytes per value, little-endian', () => {
    const [t] = float16Codec.encode([{ name: 'w', shape: [2], data: Float32Array.of(1, -2) }], {}, undefined, seededRng(1));
    expect(Buffer.from(t.data as Uint8Array).toString('hex')).toBe('003c00c0');
  });

  it('decode of a misaligned non-finite pattern still throws FEDMQ_NON_FINITE', () => {
    const b = new Uint8Array(7).subarray(1, 5);
    b.set([0, 0x3c, 0x00, 0x7c]);
    expectCode(() => float16Codec.decode({ name: 'w', shape: [2], codec: 'float16', data: b }), ErrorCodes.NON_FINITE);
  });
});
