/**
 * `int8` codec: per-block absmax quantisation with stochastic rounding.
 *
 * Wire: `{name, shape, codec: 'int8', blockSize, scales, data}`:
 * - `blockSize`: values per block (uint; 0 = one block for the whole tensor);
 * - `scales`: `nb × 4` bytes, float32 little-endian, `nb = 0` for an empty tensor, else 1 when
 *   `blockSize = 0`, else `ceil(n / blockSize)`; each finite and ≥ 0;
 * - `data`: `n` bytes, int8 in [−127, 127] (−128 is rejected).
 * Value i decodes to `fround(q[i] × s[floor(i / blockSize)])`.
 *
 * Per block, s = max|x| / 127 (rounded up to a float32 so that |x/s| ≤ 127) and
 * q = ⌊x/s + u⌋ with u ~ U[0,1) (stochastic rounding: E[q·s] = x, |x − q·s| < s), or
 * q = round(x/s) with `rounding: 'nearest'` (|x − q·s| ≤ s/2, biased). See docs/codecs.md.
 */
import type { NamedTensor } from '../tensor.ts';
import type { CodecParams, CodecState, EncodedTensor, UpdateCodec, PreparedTensor } from './types.ts';
import {
  bad, blockCount, checkDelta, checkTarget, expectBytes, f32View, i8View, leBytes, paramBlockSize, paramRounding, readHeader, type Header,
} from './wire.ts';

const SCR_F32 = new Float32Array(1);
const SCR_U32 = new Uint32Array(SCR_F32.buffer);

/** Smallest float32 scale s with max/s ≤ 127 (s = 0 when max = 0). */
function scaleFor(max: number): number {
  if (max === 0) return 0;
  let s = Math.fround(max / 127);
  while (!(max / s <= 127)) {
    SCR_F32[0] = s;
    SCR_U32[0] += 1; // next float32 up (s ≥ 0)
    s = SCR_F32[0];
  }
  return s;
}

/** Quantised values with their scales. */
export interface Int8Blocks {
  scales: Float32Array;
  q: Int8Array;
}

/**
 * Quantises `x` to int8 in blocks of `blockSize` values (0 = one block) with absmax scales.
 * `rng` is called once per value, in order, when `rounding` is `'stochastic'`.
 */
export function quantizeInt8(x: Float32Array, blockSize: number, rounding: 'nearest' | 'stochastic', rng: () => number): Int8Blocks {
  const n = x.length;
  const nb = blockCount(n, blockSize);
  const bs = blockSize === 0 ? n : blockSize;
  const scales = new Float32Array(nb);
  const q = new Int8Array(n);
  for (let b = 0; b < nb; b++) {
    const start = b * bs;
    const end = Math.min(n, start + bs);
    let max = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(x[i]);
      if (a > max) max = a;
    }
    const s = scaleFor(max);
    scales[b] = s;
    if (s === 0) continue;
    for (let i = start; i < end; i++) {
      const v = x[i] / s;
      let r = rounding === 'stochastic' ? Math.floor(v + rng()) : Math.round(v);
      if (r > 127) r = 127;
      else if (r < -127) r = -127;
      q[i] = r;
    }
  }
  return { scales, q };
}

/**
 * Validates int8 blocks from the wire: `count` int8 values in `valuesField`, `blockSize`, `scales`.
 * @throws FedmqError FEDMQ_BAD_TENSOR
 */
export function readInt8Blocks(h: Header, valuesField: string, count: number): { q: Int8Array; scales: Float32Array; bs: number } {
  const blockSize = h.fields.blockSize as number;
  if (blockSize > 0xffff_ffff) throw bad(h.name, `blockSize ${blockSize} too large`);
  const nb = blockCount(count, blockSize);
  const scales = f32View(expectBytes(h, 'scales', nb * 4));
  for (let b = 0; b < nb; b++) {
    const s = scales[b];
    if (!(Number.isFinite(s) && s >= 0)) throw bad(h.name, `scale ${b} is ${s}, must be finite and ≥ 0`);
  }
  const q = i8View(expectBytes(h, valuesField, count));
  for (let i = 0; i < count; i++) if (q[i] === -128) throw bad(h.name, `${valuesField}[${i}] is −128, must be in [−127, 127]`);
  return { q, scales, bs: blockSize === 0 ? count : blockSize };
}

const FIELDS = { blockSize: 'uint', scales: 'bin', data: 'bin' } as const;

function read(t: unknown): { h: Header; q: Int8Array; scales: Float32Array; bs: number } {
  const h = readHeader(t, 'int8', FIELDS);
  return { h, ...readInt8Blocks(h, 'data', h.n) };
}

/** The int8 codec (params: `blockSize`, default 256; `rounding`, default `'stochastic'`). */
export const int8Codec: UpdateCodec = {
  name: 'int8',
  encode(delta: readonly NamedTensor[], params: CodecParams, _state: CodecState | undefined, rng: () => number): EncodedTensor[] {
    const blockSize = paramBlockSize(params);
    const rounding = paramRounding(params);
    return delta.map((t) => {
      checkDelta(t);
      const { scales, q } = quantizeInt8(t.data, blockSize, rounding, rng);
      return { name: t.name, shape: [...t.shape], codec: 'int8', blockSize, scales: leBytes(scales), data: leBytes(q) };
    });
  },
  prepare(t: unknown): PreparedTensor {
    const { h, q, scales, bs } = read(t);
    return {
      name: h.name,
      shape: h.shape,
      addTo(target: Float64Array, weight: number): void {
        checkTarget(h, target, weight);
        for (let b = 0, start = 0; b < scales.length; b++, start += bs) {
          const s = scales[b];
          const end = Math.min(h.n, start + bs);
          for (let i = start; i < end; i++) target[i] += weight * Math.fround(q[i] * s);
        }
      },
    };
  },
  accumulate(t: unknown, target: Float64Array, weight: number): void {
    int8Codec.prepare(t).addTo(target, weight);
  },
  decode(t: unknown): NamedTensor {
    const { h, q, scales, bs } = read(t);
    const out = new Float32Array(h.n);
    for (let b = 0, start = 0; b < scales.length; b++, start += bs) {
      const s = scales[b];
      const end = Math.min(h.n, start + bs);
      for (let i = start; i < end; i++) out[i] = q[i] * s;
    }
    return { name: h.name, shape: h.shape, data: out };
  },
  /** s/2 per coordinate of a block with `rounding: 'nearest'`, s (strict bound) with `'stochastic'` (default). */
  errorBound(t: unknown, params?: Pick<CodecParams, 'rounding'>): Float64Array {
    const half = paramRounding(params) === 'nearest';
    const { h, scales, bs } = read(t);
    const out = new Float64Array(h.n);
    for (let b = 0; b < scales.length; b++) out.fill(half ? scales[b] / 2 : scales[b], b * bs, Math.min(h.n, (b + 1) * bs));
    return out;
  },
};
