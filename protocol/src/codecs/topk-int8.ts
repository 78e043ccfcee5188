/**
 * `topk-int8` codec: top-k by magnitude (as `topk`, with error feedback) whose kept values are
 * quantised to int8 with absmax scales per block of kept values and stochastic rounding.
 *
 * Wire: `{name, shape, codec: 'topk-int8', indices, blockSize, scales, values}`: `indices` as in
 * `topk` (k × 4 bytes uint32 LE, strictly increasing, < prod(shape)); `blockSize` kept values per
 * scale (0 = one scale per tensor); `scales` nb × 4 bytes float32 LE (nb = 0 when k = 0, else 1
 * when blockSize = 0, else ceil(k / blockSize)), finite, ≥ 0; `values` k bytes int8 in [−127, 127].
 * Kept value j decodes to `fround(q[j] × s[floor(j / blockSize)])` at coordinate `indices[j]`.
 *
 * Error feedback also feeds back the quantisation error: new residual = corrected − decoded, i.e.
 * corrected at the dropped coordinates and `fround(corrected − fround(q·s))` at the sent ones.
 */
import type { NamedTensor } from '../tensor.ts';
import { quantizeInt8, readInt8Blocks } from './int8.ts';
import { corrected, keptCount, topKIndices } from './select.ts';
import { readIndices } from './topk.ts';
import type { CodecParams, CodecState, EncodedTensor, UpdateCodec, PreparedTensor } from './types.ts';
import { checkTarget, leBytes, paramBlockSize, paramK, paramRounding, readHeader, type Header } from './wire.ts';

const FIELDS = { indices: 'bin', blockSize: 'uint', scales: 'bin', values: 'bin' } as const;

function read(t: unknown): { h: Header; idx: Uint32Array; q: Int8Array; scales: Float32Array; bs: number } {
  const h = readHeader(t, 'topk-int8', FIELDS);
  const idx = readIndices(h);
  return { h, idx, ...readInt8Blocks(h, 'values', idx.length) };
}

/** The top-k + int8 codec with error feedback (params `k`, default 0.01; `blockSize`, default 256; `rounding`, default `'stochastic'`). */
export const topkInt8Codec: UpdateCodec = {
  name: 'topk-int8',
  encode(delta: readonly NamedTensor[], params: CodecParams, state: CodecState | undefined, rng: () => number): EncodedTensor[] {
    const k = paramK(params);
    const blockSize = paramBlockSize(params);
    const rounding = paramRounding(params);
    const out: EncodedTensor[] = [];
    const residuals: [string, Float32Array][] = [];
    for (const t of delta) {
      const c = corrected(t, state);
      const idx = topKIndices(c, keptCount(c.length, k));
      const kept = new Float32Array(idx.length);
      for (let j = 0; j < idx.length; j++) kept[j] = c[idx[j]];
      const { scales, q } = quantizeInt8(kept, blockSize, rounding, rng);
      const bs = blockSize === 0 ? idx.length : blockSize;
      for (let j = 0; j < idx.length; j++) c[idx[j]] = kept[j] - Math.fround(q[j] * scales[Math.floor(j / bs)]);
      residuals.push([t.name, c]);
      out.push({ name: t.name, shape: [...t.shape], codec: 'topk-int8', indices: leBytes(idx), blockSize, scales: leBytes(scales), values: leBytes(q) });
    }
    if (state) {
      state.residual ??= new Map();
      for (const [name, r] of residuals) state.residual.set(name, r);
    }
    return out;
  },
  prepare(t: unknown): PreparedTensor {
    const { h, idx, q, scales, bs } = read(t);
    return {
      name: h.name,
      shape: h.shape,
      addTo(target: Float64Array, weight: number): void {
        checkTarget(h, target, weight);
        for (let b = 0, start = 0; b < scales.length; b++, start += bs) {
          const s = scales[b];
          const end = Math.min(idx.length, start + bs);
          for (let j = start; j < end; j++) target[idx[j]] += weight * Math.fround(q[j] * s);
        }
      },
    };
  },
  accumulate(t: unknown, target: Float64Array, weight: number): void {
    topkInt8Codec.prepare(t).addTo(target, weight);
  },
  decode(t: unknown): NamedTensor {
    const { h, idx, q, scales, bs } = read(t);
    const out = new Float32Array(h.n);
    for (let b = 0, start = 0; b < scales.length; b++, start += bs) {
      const s = scales[b];
      const end = Math.min(idx.length, start + bs);
      for (let j = start; j < end; j++) out[idx[j]] = q[j] * s;
    }
    return { name: h.name, shape: h.shape, data: out };
  },
};
