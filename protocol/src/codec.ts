import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { Packr, Unpackr } from 'msgpackr';
import { ErrorCodes, FedmqError } from './errors.ts';
import { sizeOf } from './tensor.ts';
import type { NamedTensor } from './tensor.ts';

/**
 * Wire format of binary payloads (docs/protocol.md §1 "Overview and conventions" and §4): standard MessagePack
 * (no msgpackr records or extensions), maps with string keys, tensors as
 * `{name, shape, dtype, data}` where `data` is a MessagePack `bin` holding the values as raw
 * little-endian bytes, row-major.
 */

/** Element types a wire tensor may carry. `float16` values are IEEE 754 binary16 bit patterns. */
export const DTYPES = ['float32', 'float64', 'float16', 'int32', 'int16', 'int8', 'uint32', 'uint16', 'uint8'] as const;
export type Dtype = (typeof DTYPES)[number];

/** In-memory array for each dtype (`float16` travels as its 16-bit patterns). */
export type TypedArrayOf = {
  float32: Float32Array;
  float64: Float64Array;
  float16: Uint16Array;
  int32: Int32Array;
  int16: Int16Array;
  int8: Int8Array;
  uint32: Uint32Array;
  uint16: Uint16Array;
  uint8: Uint8Array;
};
export type AnyTypedArray = TypedArrayOf[Dtype];

type Ctor = { new (buf: ArrayBufferLike, byteOffset: number, length: number): AnyTypedArray; new (length: number): AnyTypedArray; BYTES_PER_ELEMENT: number };
const CTORS: Record<Dtype, Ctor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint32: Uint32Array,
  uint16: Uint16Array,
  uint8: Uint8Array,
} as unknown as Record<Dtype, Ctor>;

/** Bytes per element of `dtype`. */
export function bytesPerElement(dtype: Dtype): number {
  return CTORS[dtype].BYTES_PER_ELEMENT;
}

/** A tensor as it travels: raw little-endian bytes. */
export interface WireTensor {
  name: string;
  shape: number[];
  dtype: Dtype;
  /** `prod(shape) * bytesPerElement(dtype)` bytes, little-endian. */
  data: Uint8Array;
}

/** A decoded tensor of any dtype. */
export interface TypedTensor<D extends Dtype = Dtype> {
  name: string;
  shape: number[];
  dtype: D;
  data: TypedArrayOf[D];
}

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += width) for (let j = 0; j < width; j++) out[i + j] = bytes[i + width - 1 - j];
  return out;
}

function dtypeOf(data: AnyTypedArray): Dtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Uint32Array) return 'uint32';
  if (data instanceof Uint16Array) return 'uint16';
  return 'uint8';
}

function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(name)}: shape must be up to 8 non-negative integers`, { name });
  }
  return shape as number[];
}

/**
 * Turns an in-memory tensor into its wire form. The bytes are a view of `data` on a
 * little-endian host (no copy); a big-endian host gets a byte-swapped copy.
 *
 * @param dtype overrides the dtype inferred from the array (needed for `float16`, held in a Uint16Array).
 * @throws FedmqError FEDMQ_BAD_TENSOR when `data.length` does not match `shape`.
 */
export function toWireTensor(t: { name: string; shape: number[]; data: AnyTypedArray }, dtype: Dtype = dtypeOf(t.data)): WireTensor {
  checkShape(t.name, t.shape);
  if (t.data.length !== sizeOf(t.shape)) {
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(t.name)}: ${t.data.length} values for shape [${t.shape}]`, { name: t.name });
  }
  if (bytesPerElement(dtype) !== t.data.BYTES_PER_ELEMENT) {
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(t.name)}: array does not hold ${dtype}`, { name: t.name });
  }
  let bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (!LITTLE_ENDIAN_HOST && t.data.BYTES_PER_ELEMENT > 1) bytes = swapBytes(bytes, t.data.BYTES_PER_ELEMENT);
  return { name: t.name, shape: [...t.shape], dtype, data: bytes };
}

/**
 * Reads a wire tensor (as decoded from MessagePack, where `data` may be a Buffer at any byte
 * offset) into a typed array. Aligned data is viewed without a copy; misaligned data
 * (`byteOffset % bytesPerElement !== 0`, common for MQTT payloads) is copied.
 *
 * @throws FedmqError FEDMQ_BAD_TENSOR on an unknown dtype, a bad shape, a non-binary `data`,
 *   or a byte length other than `prod(shape) * bytesPerElement(dtype)`.
 */
export function fromWireTensor(w: unknown): TypedTensor {
  if (typeof w !== 'object' || w === null) throw new FedmqError(ErrorCodes.BAD_TENSOR, 'tensor must be a map');
  const { name, shape, dtype, data } = w as Record<string, unknown>;
  if (typeof name !== 'string' || name.length === 0 || name.length > 256) throw new FedmqError(ErrorCodes.BAD_TENSOR, 'tensor name must be a string of 1-256 characters');
  checkShape(name, shape);
  if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)}`, { name });
  }
  if (!(data instanceof Uint8Array)) throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(name)}: data must be binary`, { name });
  const d = dtype as Dtype;
  const width = bytesPerElement(d);
  const n = sizeOf(shape as number[]);
  if (data.byteLength !== n * width) {
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(name)}: ${data.byteLength} bytes, expected ${n * width} for ${d}[${shape}]`, { name });
  }
  const C = CTORS[d];
  let arr: AnyTypedArray;
  if (!LITTLE_ENDIAN_HOST && width > 1) {
    const swapped = swapBytes(data, width);
    arr = new C(swapped.buffer, 0, n);
  } else if (data.byteOffset % width === 0) {
    arr = new C(data.buffer, data.byteOffset, n);
  } else {
    const copy = new Uint8Array(data.byteLength);
    copy.set(data);
    arr = new C(copy.buffer, 0, n);
  }
  return { name, shape: [...(shape as number[])], dtype: d, data: arr } as TypedTensor;
}

/** Wire form of float32 weights. */
export function weightsToWire(weights: readonly NamedTensor[]): WireTensor[] {
  return weights.map((w) => toWireTensor(w, 'float32'));
}

/**
 * Reads float32 weights from wire tensors.
 * @throws FedmqError FEDMQ_BAD_TENSOR on a malformed tensor or a dtype other than float32.
 */
export function weightsFromWire(tensors: readonly unknown[]): NamedTensor[] {
  return tensors.map((w) => {
    const t = fromWireTensor(w);
    if (t.dtype !== 'float32') throw new FedmqError(ErrorCodes.BAD_TENSOR, `tensor ${JSON.stringify(t.name)}: expected float32, got ${t.dtype}`, { name: t.name });
    return { name: t.name, shape: t.shape, data: t.data as Float32Array };
  });
}

/**
 * sha256 (hex) of a model's weights: the hash of, for each tensor in order, its name (UTF-8),
 * a 0 byte, its shape as comma-separated decimals (UTF-8), a 0 byte, and its raw little-endian
 * bytes (docs/protocol.md §4 "Tensors and the global model hash"). The dtype is not hashed:
 * global models are float32.
 */
export function weightsSha256(tensors: readonly WireTensor[]): string {
  const h = createHash('sha256');
  for (const t of tensors) {
    h.update(t.name, 'utf8');
    h.update(new Uint8Array([0]));
    h.update(t.shape.join(','), 'utf8');
    h.update(new Uint8Array([0]));
    h.update(t.data);
  }
  return h.digest('hex');
}

const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false, variableMapSize: true });
// 64-bit integers (other languages' packers use them for epoch-ms timestamps) decode as numbers, not BigInt.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });

/** Encodes a message as standard MessagePack. `undefined` fields are left out. */
export function packMessage(msg: object): Buffer {
  return packr.pack(stripUndefined(msg));
}

/**
 * Decodes standard MessagePack.
 * @throws FedmqError FEDMQ_BAD_PAYLOAD when the bytes are not one complete MessagePack value.
 */
export function unpackMessage(payload: Uint8Array): unknown {
  try {
    return unpackr.unpack(payload);
  } catch (err) {
    throw new FedmqError(ErrorCodes.BAD_PAYLOAD, `payload is not MessagePack: ${(err as Error).message}`, {}, { cause: err });
  }
}

function stripUndefined(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
  if (Array.isArray(v)) return v.map(stripUndefined);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = stripUndefined(x);
  return out;
}
