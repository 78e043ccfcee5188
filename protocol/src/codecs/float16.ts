/**
 * `float16` codec and IEEE 754 binary16 helpers (Node 20 has no Float16Array).
 *
 * Wire: `{name, shape, codec: 'float16', data}` where `data` is `prod(shape) × 2` bytes of
 * binary16 bit patterns, little-endian, row-major (docs/codecs.md).
 *
 * Conversion float32 → float16 rounds to nearest, ties to even, with subnormals, ±Infinity and
 * NaN (F. Giesen's table-free `float_to_half_fast3_rtne`, adapted to JavaScript). For values in
 * the normal float16 range (2⁻¹⁴ ≤ |x| ≤ 65504) the relative error is ≤ 2⁻¹¹ ≈ 4.9e-4; below
 * 2⁻¹⁴ the absolute error is ≤ 2⁻²⁵ ≈ 3e-8. The update codec **saturates**: finite values beyond
 * ±65504 become ±65504 (not ±Infinity, which the coordinator would reject as non-finite).
 */
import type { NamedTensor } from '../tensor.ts';
import type { CodecParams, CodecState, EncodedTensor, UpdateCodec, PreparedTensor } from './types.ts';
import { checkDelta, checkTarget, expectBytes, leBytes, nonFinite, readHeader, type Header } from './wire.ts';

/** Largest finite float16 value. */
export const FLOAT16_MAX = 65504;

const SCR_F32 = new Float32Array(1);
const SCR_U32 = new Uint32Array(SCR_F32.buffer);

/** binary16 bits of the float32 whose bits are `x` (RNE). `saturate`: finite overflow → ±65504. */
function bitsToHalf(x: number, saturate: boolean): number {
  const sign = (x >>> 16) & 0x8000;
  const f = x & 0x7fffffff;
  let o: number;
  if (f >= 0x47800000) {
    // |x| ≥ 65536, or Inf/NaN. NaN → quiet NaN (payload not kept).
    if (f > 0x7f800000) o = 0x7e00;
    else o = saturate && f !== 0x7f800000 ? 0x7bff : 0x7c00;
  } else if (f < 0x38800000) {
    // |x| < 2⁻¹⁴: subnormal or zero. Adding 0.5 in float32 aligns the mantissa so that its low bits
    // are round(|x| / 2⁻²⁴) with ties to even (2⁻²⁴ = ulp of 0.5 in float32).
    SCR_U32[0] = f;
    SCR_F32[0] = SCR_F32[0] + 0.5;
    o = SCR_U32[0] - 0x3f000000;
  } else {
    const mantOdd = (f >>> 13) & 1;
    // Rebias the exponent (127 → 15) and round the 13 dropped mantissa bits to nearest even.
    o = (f - 0x38000000 + 0xfff + mantOdd) >>> 13;
    if (saturate && o === 0x7c00) o = 0x7bff;
  }
  return o | sign;
}

const POW2 = Float64Array.from({ length: 32 }, (_, e) => 2 ** (e - 25));

/** Value of binary16 bits `h` (exact; NaN for every NaN pattern). */
export function halfToNumber(h: number): number {
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  const v = e === 0 ? m * 5.960464477539063e-8 : e === 31 ? (m === 0 ? Infinity : NaN) : (m + 1024) * POW2[e];
  return h & 0x8000 ? -v : v;
}

/** binary16 bits of `x` rounded to nearest even (x is first rounded to float32). */
export function numberToHalf(x: number, saturate = false): number {
  SCR_F32[0] = x;
  return bitsToHalf(SCR_U32[0], saturate);
}

/**
 * Converts float32 values to IEEE 754 binary16 bit patterns (round to nearest, ties to even;
 * subnormals; ±Infinity; NaN → 0x7e00 / 0xfe00). For the downlink (global model as float16).
 *
 * @param dst where to write (length `src.length`); allocated when omitted.
 * @param saturate finite values beyond ±65504 become ±65504 instead of ±Infinity (default false).
 * @returns `dst`.
 * @throws RangeError when `dst.length !== src.length`.
 */
export function float32ToFloat16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length), saturate = false): Uint16Array {
  if (dst.length !== src.length) throw new RangeError(`dst has ${dst.length} values, src ${src.length}`);
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) dst[i] = bitsToHalf(u[i], saturate);
  return dst;
}

/**
 * Converts binary16 bit patterns to float32 values (exact: every float16 is a float32).
 * @param dst where to write (length `src.length`); allocated when omitted.
 * @returns `dst`.
 * @throws RangeError when `dst.length !== src.length`.
 */
export function float16ToFloat32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  if (dst.length !== src.length) throw new RangeError(`dst has ${dst.length} values, src ${src.length}`);
  for (let i = 0; i < src.length; i++) dst[i] = halfToNumber(src[i]);
  return dst;
}

const FIELDS = { data: 'bin' } as const;

/** Reads `data` as little-endian 16-bit patterns, byte by byte (any alignment, no copy). Rejects Inf/NaN patterns. */
function read(t: unknown): { h: Header; b: Uint8Array } {
  const h = readHeader(t, 'float16', FIELDS);
  const b = expectBytes(h, 'data', h.n * 2);
  for (let i = 0; i < h.n; i++) if ((b[2 * i + 1] & 0x7c) === 0x7c) throw nonFinite(h.name, i);
  return { h, b };
}

/** The float16 codec (saturating at ±65504; see the module comment). */
export const float16Codec: UpdateCodec = {
  name: 'float16',
  encode(delta: readonly NamedTensor[], _params: CodecParams, _state: CodecState | undefined, _rng: () => number): EncodedTensor[] {
    return delta.map((t) => {
      checkDelta(t);
      return { name: t.name, shape: [...t.shape], codec: 'float16', data: leBytes(float32ToFloat16(t.data, undefined, true)) };
    });
  },
  prepare(t: unknown): PreparedTensor {
    const { h, b } = read(t);
    return {
      name: h.name,
      shape: h.shape,
      addTo(target: Float64Array, weight: number): void {
        checkTarget(h, target, weight);
        for (let i = 0, j = 0; i < h.n; i++, j += 2) target[i] += weight * halfToNumber(b[j] | (b[j + 1] << 8));
      },
    };
  },
  accumulate(t: unknown, target: Float64Array, weight: number): void {
    float16Codec.prepare(t).addTo(target, weight);
  },
  decode(t: unknown): NamedTensor {
    const { h, b } = read(t);
    const out = new Float32Array(h.n);
    for (let i = 0, j = 0; i < h.n; i++, j += 2) out[i] = halfToNumber(b[j] | (b[j + 1] << 8));
    return { name: h.name, shape: h.shape, data: out };
  },
  /** Half an ulp of each decoded value (2⁻²⁵ for subnormals); Infinity at ±65504 (maybe clamped). */
  errorBound(t: unknown): Float64Array {
    const { h, b } = read(t);
    const out = new Float64Array(h.n);
    for (let i = 0, j = 0; i < h.n; i++, j += 2) {
      const bits = (b[j] | (b[j + 1] << 8)) & 0x7fff;
      const e = bits >>> 10;
      out[i] = bits === 0x7bff ? Infinity : e === 0 ? 2 ** -25 : 2 ** (e - 26);
    }
    return out;
  },
};
