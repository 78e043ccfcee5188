import type { NamedTensor } from '../tensor.ts';

/**
 * Names of the update codecs (docs/codecs.md). Uplink: all five. Downlink (global model):
 * `float32` or `float16`.
 */
export type CodecName = 'float32' | 'float16' | 'int8' | 'topk' | 'topk-int8';

/** Codec parameters, as a round task would carry them. Unused fields are ignored by a codec. */
export interface CodecParams {
  /** top-k: fraction of coordinates kept per tensor, (0,1], default 0.01. A tensor of n > 0 values keeps `max(1, ceil(k·n))`. */
  k?: number;
  /** int8 (and topk-int8): values per scale block; 0 = one scale per tensor; default 256. */
  blockSize?: number;
  /**
   * int8 (and topk-int8) rounding: `'stochastic'` (default) rounds x/s to ⌊x/s + u⌋, u ~ U[0,1),
   * so E[decoded] = x (unbiased), error < one step s; `'nearest'` rounds to the nearest integer,
   * error ≤ s/2 but biased. Node-side only: it does not travel on the wire.
   */
  rounding?: 'nearest' | 'stochastic';
}

/** One encoded tensor as it travels inside an update (a plain object of numbers, strings and Uint8Arrays, packed by msgpack). */
export interface EncodedTensor {
  name: string;
  shape: number[];
  codec: CodecName;
  [field: string]: unknown;
}

/** Node-side state kept across rounds (error-feedback residuals per tensor name). */
export interface CodecState {
  residual?: Map<string, Float32Array>;
}

/**
 * An update codec: encodes a node's deltas (trained − global) and folds encoded tensors received
 * from the network into the coordinator's running weighted sum. One implementation per file in
 * `protocol/src/codecs/`, all run by the shared suite `codec-suite.ts`.
 */
/**
 * An encoded tensor that passed every check (structure, byte lengths, index ranges, finite
 * values and scales), holding views of the received bytes, not a decoded copy.
 */
export interface PreparedTensor {
  name: string;
  shape: number[];
  /**
   * Adds `weight × decoded` into `target` (length prod(shape)).
   * @throws RangeError when `target` has the wrong length or `weight` is not finite.
   */
  addTo(target: Float64Array, weight: number): void;
  /**
   * Optional fast path of an order-independent sum: adds `weight × decoded` into the compensated
   * pair (hi, lo) with TwoSum (see `addScaledTwoSum`). Same errors as {@link addTo}.
   */
  addToCompensated?(hi: Float64Array, lo: Float64Array, weight: number): void;
}

export interface UpdateCodec {
  readonly name: CodecName;
  /**
   * Encodes deltas, one {@link EncodedTensor} per input tensor, same order.
   *
   * @param state when given and the codec uses error feedback (`topk`, `topk-int8`), its
   *   `residual` map is read and updated in place (created when absent).
   * @param rng uniform in [0,1) for stochastic rounding (seed it for reproducibility, see `seededRng`).
   * @throws FedmqError FEDMQ_BAD_TENSOR when a tensor's data length does not match its shape;
   *   FEDMQ_NON_FINITE when a delta (or delta + residual) holds NaN/±Infinity; FEDMQ_BAD_CONFIG on
   *   invalid params; FEDMQ_MODEL_MISMATCH when a stored residual has another length than the tensor.
   */
  encode(delta: readonly NamedTensor[], params: CodecParams, state: CodecState | undefined, rng: () => number): EncodedTensor[];
  /**
   * Adds `weight × decoded(t)` into `target` (length prod(shape)) without materialising a float32
   * copy where not needed. Atomic: `t` is validated completely before `target` is touched, so a
   * rejected tensor leaves `target` unchanged. `weight × v` is added in float64, where `v` is
   * exactly the float32 value {@link decode} returns, so accumulate ≡ `target[i] += weight * decode(t).data[i]`.
   *
   * @throws FedmqError FEDMQ_BAD_TENSOR on a malformed encoded tensor (not a map, missing or unknown
   *   fields, wrong field types, `codec` other than this codec, bad shape, wrong byte lengths,
   *   index out of range, indices not strictly increasing, negative or non-finite scale, int8 value −128).
   * @throws FedmqError FEDMQ_NON_FINITE when a carried value is NaN/±Infinity.
   * @throws RangeError when `target.length !== prod(shape)` or `weight` is not finite.
   */
  accumulate(t: unknown, target: Float64Array, weight: number): void;
  /**
   * Validates `t` completely and returns it ready to be added, so that a caller can check every
   * tensor of an update before adding any (an update is folded in whole or not at all).
   * @throws FedmqError FEDMQ_BAD_TENSOR, FEDMQ_NON_FINITE — the same checks as `accumulate`.
   */
  prepare(t: unknown): PreparedTensor;
  /** Full decode (for tests and the downlink). Same errors as {@link accumulate}. */
  decode(t: unknown): NamedTensor;
  /**
   * Upper bound of the absolute error per coordinate the codec introduced for this encoded tensor
   * (index i ↦ bound), if meaningful: 0 for float32, half an ulp of the decoded value for float16
   * (Infinity where the value was clamped to ±65504), s/2 (`rounding: 'nearest'`) or s
   * (stochastic, strict) per int8 block. Not defined for the top-k codecs (their error is the
   * residual). For tests. Same errors as {@link decode}.
   */
  errorBound?(t: unknown, params?: Pick<CodecParams, 'rounding'>): Float64Array;
}
