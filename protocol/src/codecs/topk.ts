/**
 * `topk` codec: top-k sparsification by magnitude with error feedback (Stich et al. 2018,
 * "Sparsified SGD with memory", arXiv:1809.07599; Karimireddy et al. 2019, "Error feedback fixes
 * SignSGD", arXiv:1901.09847).
 *
 * Wire: `{name, shape, codec: 'topk', indices, values}`: `indices` are `k × 4` bytes of uint32
 * little-endian, strictly increasing, each < prod(shape); `values` are `k × 4` bytes of float32
 * little-endian, finite. Coordinates not listed decode to 0.
 *
 * Node side, per tensor: corrected = fround(delta + residual) (residual from `state`, zeros if
 * none); keep the k = max(1, ceil(k·n)) largest |corrected| (ties → lower index); send them
 * exactly; new residual = corrected with the sent coordinates zeroed — exactly what was dropped,
 * so `decoded + residual === corrected` for every coordinate.
 */
import type { NamedTensor } from '../tensor.ts';
import { corrected, keptCount, topKIndices } from './select.ts';
import type { CodecParams, CodecState, EncodedTensor, UpdateCodec, PreparedTensor } from './types.ts';
import { bad, checkTarget, expectBytes, f32View, firstNonFinite, leBytes, nonFinite, paramK, readHeader, u32View, type Header } from './wire.ts';

/**
 * Validates sparse indices from the wire: a multiple of 4 bytes, each < n, strictly increasing.
 * @throws FedmqError FEDMQ_BAD_TENSOR
 */
export function readIndices(h: Header): Uint32Array {
  const bytes = h.fields.indices as Uint8Array;
  if (bytes.byteLength % 4 !== 0) throw bad(h.name, `field indices: ${bytes.byteLength} bytes, not a multiple of 4`);
  const k = bytes.byteLength / 4;
  if (k > h.n) throw bad(h.name, `${k} indices for ${h.n} values`);
  const idx = u32View(bytes);
  let prev = -1;
  for (let j = 0; j < k; j++) {
    const i = idx[j];
    if (i >= h.n) throw bad(h.name, `index ${i} out of range [0, ${h.n})`);
    if (i <= prev) throw bad(h.name, `indices not strictly increasing at position ${j} (${prev}, ${i})`);
    prev = i;
  }
  return idx;
}

const FIELDS = { indices: 'bin', values: 'bin' } as const;

function read(t: unknown): { h: Header; idx: Uint32Array; v: Float32Array } {
  const h = readHeader(t, 'topk', FIELDS);
  const idx = readIndices(h);
  const v = f32View(expectBytes(h, 'values', idx.length * 4));
  const j = firstNonFinite(v);
  if (j >= 0) throw nonFinite(h.name, idx[j]);
  return { h, idx, v };
}

/** The top-k codec with error feedback (param `k`, default 0.01). */
export const topkCodec: UpdateCodec = {
  name: 'topk',
  encode(delta: readonly NamedTensor[], params: CodecParams, state: CodecState | undefined, _rng: () => number): EncodedTensor[] {
    const k = paramK(params);
    const out: EncodedTensor[] = [];
    const residuals: [string, Float32Array][] = [];
    for (const t of delta) {
      const c = corrected(t, state);
      const idx = topKIndices(c, keptCount(c.length, k));
      const values = new Float32Array(idx.length);
      for (let j = 0; j < idx.length; j++) {
        values[j] = c[idx[j]];
        c[idx[j]] = 0; // c becomes the new residual: exactly what was not sent
      }
      residuals.push([t.name, c]);
      out.push({ name: t.name, shape: [...t.shape], codec: 'topk', indices: leBytes(idx), values: leBytes(values) });
    }
    if (state) {
      state.residual ??= new Map();
      for (const [name, r] of residuals) state.residual.set(name, r);
    }
    return out;
  },
  prepare(t: unknown): PreparedTensor {
    const { h, idx, v } = read(t);
    return {
      name: h.name,
      shape: h.shape,
      addTo(target: Float64Array, weight: number): void {
        checkTarget(h, target, weight);
        for (let j = 0; j < idx.length; j++) target[idx[j]] += weight * v[j];
      },
    };
  },
  accumulate(t: unknown, target: Float64Array, weight: number): void {
    topkCodec.prepare(t).addTo(target, weight);
  },
  decode(t: unknown): NamedTensor {
    const { h, idx, v } = read(t);
    const out = new Float32Array(h.n);
    for (let j = 0; j < idx.length; j++) out[idx[j]] = v[j];
    return { name: h.name, shape: h.shape, data: out };
  },
};
