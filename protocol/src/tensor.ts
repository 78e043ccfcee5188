/**
 * In-memory named tensor: the unit of a model's weights everywhere in fedmq.
 *
 * `data` holds the values in row-major order; `data.length` must equal the product of `shape`
 * (1 for a scalar, `shape = []`). On the wire a tensor travels as
 * `{name, shape, dtype, data: raw little-endian bytes}` (see docs/protocol.md, "Tensors").
 */
export interface NamedTensor {
  /** Stable weight name, e.g. `dense_1/kernel`. Unique within a model. */
  name: string;
  /** Dimensions, outermost first. `[]` is a scalar. */
  shape: number[];
  /** Values, row-major. Float32 for every weight fedmq trains. */
  data: Float32Array;
}

/** Number of elements a tensor of `shape` holds (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}
