/**
 * `float32` codec: the baseline, exact. Wire: `{name, shape, codec: 'float32', data}` where
 * `data` is `prod(shape) × 4` bytes of float32, little-endian, row-major (docs/codecs.md).
 */
import type { NamedTensor } from '../tensor.ts';
import type { CodecParams, CodecState, EncodedTensor, UpdateCodec, PreparedTensor } from './types.ts';
import { addScaled, addScaledTwoSum, checkDelta, checkTarget, expectBytes, f32View, firstNonFinite, leBytes, nonFinite, readHeader, type Header } from './wire.ts';

const FIELDS = { data: 'bin' } as const;

function read(t: unknown): { h: Header; v: Float32Array } {
  const h = readHeader(t, 'float32', FIELDS);
  const v = f32View(expectBytes(h, 'data', h.n * 4));
  const i = firstNonFinite(v);
  if (i >= 0) throw nonFinite(h.name, i);
  return { h, v };
}

/** The exact float32 codec. `encode` returns views of the deltas' memory (no copy on a little-endian host): pack before mutating them. */
export const float32Codec: UpdateCodec = {
  name: 'float32',
  encode(delta: readonly NamedTensor[], _params: CodecParams, _state: CodecState | undefined, _rng: () => number): EncodedTensor[] {
    return delta.map((t) => {
      checkDelta(t);
      return { name: t.name, shape: [...t.shape], codec: 'float32', data: leBytes(t.data) };
    });
  },
  prepare(t: unknown): PreparedTensor {
    const { h, v } = read(t);
    return {
      name: h.name,
      shape: h.shape,
      addTo(target: Float64Array, weight: number): void {
        checkTarget(h, target, weight);
        addScaled(target, v, weight);
      },
      addToCompensated(hi: Float64Array, lo: Float64Array, weight: number): void {
        checkTarget(h, hi, weight);
        checkTarget(h, lo, weight);
        addScaledTwoSum(hi, lo, v, weight);
      },
    };
  },
  accumulate(t: unknown, target: Float64Array, weight: number): void {
    float32Codec.prepare(t).addTo(target, weight);
  },
  decode(t: unknown): NamedTensor {
    const { h, v } = read(t);
    return { name: h.name, shape: h.shape, data: v.slice() };
  },
  errorBound(t: unknown): Float64Array {
    return new Float64Array(read(t).h.n);
  },
};
