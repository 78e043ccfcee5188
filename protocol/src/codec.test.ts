import { describe, expect, it } from 'vitest';
import { DTYPES, bytesPerElement, fromWireTensor, packMessage, toWireTensor, unpackMessage, weightsSha256, type AnyTypedArray, type Dtype } from './codec.ts';
import { ErrorCodes, isFedmqError } from './errors.ts';
import { sizeOf } from './tensor.ts';

const SHAPES: number[][] = [[], [0], [1], [7], [3, 5], [2, 3, 4], [1, 1, 1, 1, 3]];

function sample(dtype: Dtype, n: number): AnyTypedArray {
  const vals = Array.from({ length: n }, (_, i) => i * 37 - 11);
  switch (dtype) {
    case 'float32': return Float32Array.from(vals, (v) => v / 3 + 0.1);
    case 'float64': return Float64Array.from(vals, (v) => v / 7 - 1e-300);
    case 'float16': return Uint16Array.from(vals, (v) => (v * 97) & 0xffff);
    case 'int32': return Int32Array.from(vals, (v) => v * 100_000);
    case 'int16': return Int16Array.from(vals, (v) => v * 50);
    case 'int8': return Int8Array.from(vals, (v) => ((v % 128) + 128) % 256 - 128);
    case 'uint32': return Uint32Array.from(vals, (v) => Math.abs(v) * 1_000_003);
    case 'uint16': return Uint16Array.from(vals, (v) => Math.abs(v) * 3);
    case 'uint8': return Uint8Array.from(vals, (v) => Math.abs(v) % 256);
  }
}

/** Places `bytes` at an odd offset inside a bigger buffer, as MQTT payloads often are. */
function misalign(bytes: Uint8Array, offset: number): Uint8Array {
  const buf = new Uint8Array(bytes.length + offset + 3);
  buf.set(bytes, offset);
  return buf.subarray(offset, offset + bytes.length);
}

describe('tensor codec', () => {
  for (const dtype of DTYPES) {
    for (const shape of SHAPES) {
      it(`round-trips ${dtype}[${shape}] through MessagePack, aligned and misaligned`, () => {
        const data = sample(dtype, sizeOf(shape));
        const wire = toWireTensor({ name: 'w', shape, data }, dtype);
        expect(wire.data.byteLength).toBe(sizeOf(shape) * bytesPerElement(dtype));
        const packed = packMessage({ tensors: [wire] });
        for (const offset of [0, 1, 2, 3, 5]) {
          const decoded = unpackMessage(misalign(packed, offset)) as { tensors: unknown[] };
          const t = fromWireTensor(decoded.tensors[0]);
          expect(t.dtype).toBe(dtype);
          expect(t.shape).toEqual(shape);
          expect(Array.from(t.data)).toEqual(Array.from(data));
          expect(t.data.byteOffset % bytesPerElement(dtype)).toBe(0);
        }
      });
    }
  }

  it('keeps float32 bit patterns exactly (NaN payloads, -0, subnormals)', () => {
    const data = new Float32Array([-0, 1e-45, 3.4028234663852886e38, -Infinity, NaN]);
    const t = fromWireTensor(unpackMessage(packMessage(toWireTensor({ name: 'x', shape: [5], data }))));
    expect(new Uint32Array((t.data as Float32Array).buffer, t.data.byteOffset, 5)).toEqual(new Uint32Array(data.buffer));
  });

  it('rejects a byte length that does not match shape × dtype', () => {
    const bad = { name: 'w', shape: [2, 2], dtype: 'float32', data: new Uint8Array(15) };
    expect(() => fromWireTensor(bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TENSOR }));
  });

  it.each([
    ['unknown dtype', { name: 'w', shape: [1], dtype: 'bfloat16', data: new Uint8Array(2) }],
    ['negative dimension', { name: 'w', shape: [-1], dtype: 'uint8', data: new Uint8Array(0) }],
    ['fractional dimension', { name: 'w', shape: [1.5], dtype: 'uint8', data: new Uint8Array(1) }],
    ['non-binary data', { name: 'w', shape: [1], dtype: 'uint8', data: [1] }],
    ['missing name', { shape: [1], dtype: 'uint8', data: new Uint8Array(1) }],
    ['not a map', 42],
  ])('rejects a tensor with %s', (_why, value) => {
    try {
      fromWireTensor(value);
      expect.unreachable();
    } catch (err) {
      expect(isFedmqError(err, ErrorCodes.BAD_TENSOR)).toBe(true);
    }
  });

  it('refuses to encode data that does not fill the shape', () => {
    expect(() => toWireTensor({ name: 'w', shape: [3], data: new Float32Array(2) })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TENSOR }));
  });

  it('reports garbage as FEDMQ_BAD_PAYLOAD', () => {
    expect(() => unpackMessage(new Uint8Array([0x01, 0x02]))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_PAYLOAD }));
    expect(() => unpackMessage(new Uint8Array([0xc7, 0x01, 0x05, 0x00]))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_PAYLOAD }));
    expect(() => unpackMessage(new Uint8Array([0x92, 0x01]))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_PAYLOAD }));
  });

  it('hashes weights by name, shape and bytes', () => {
    const a = toWireTensor({ name: 'w', shape: [2], data: new Float32Array([1, 2]) });
    const b = toWireTensor({ name: 'w', shape: [2], data: new Float32Array([1, 2.0000002]) });
    const c = toWireTensor({ name: 'w', shape: [1, 2], data: new Float32Array([1, 2]) });
    expect(weightsSha256([a])).toMatch(/^[0-9a-f]{64}$/);
    expect(weightsSha256([a])).toBe(weightsSha256([toWireTensor({ name: 'w', shape: [2], data: new Float32Array([1, 2]) })]));
    expect(weightsSha256([a])).not.toBe(weightsSha256([b]));
    expect(weightsSha256([a])).not.toBe(weightsSha256([c]));
  });
});
