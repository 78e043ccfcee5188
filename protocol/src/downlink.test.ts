import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { packMessage, toWireTensor, unpackMessage, weightsSha256 } from './codec.ts';
import { globalFromWire, globalToWire } from './downlink.ts';

const weights = [
  { name: 'fc1/kernel', shape: [30, 20], data: Float32Array.from({ length: 600 }, (_, i) => Math.sin(i) * 0.3) },
  { name: 'fc1/bias', shape: [20], data: Float32Array.from({ length: 20 }, (_, i) => i * 1e-3 - 0.01) },
];

describe('global model on the downlink', () => {
  it('float32 round-trips exactly', () => {
    const back = globalFromWire((unpackMessage(packMessage({ t: globalToWire(weights) })) as { t: unknown[] }).t);
    expect(back.map((t) => Array.from(t.data))).toEqual(weights.map((t) => Array.from(t.data)));
  });

  it('float16 halves the bytes and keeps a relative error ≤ 1e-3', () => {
    const wire = globalToWire(weights, 'float16');
    expect(wire.reduce((n, t) => n + t.data.byteLength, 0)).toBe(620 * 2);
    const back = globalFromWire((unpackMessage(packMessage({ t: wire })) as { t: unknown[] }).t);
    for (let t = 0; t < weights.length; t++) {
      expect(back[t].shape).toEqual(weights[t].shape);
      weights[t].data.forEach((x, i) => expect(Math.abs(back[t].data[i] - x)).toBeLessThanOrEqual(Math.abs(x) * 1e-3 + 1e-7));
    }
    expect(weightsSha256(wire)).not.toBe(weightsSha256(globalToWire(weights)));
  });

  it('refuses a global model tensor of another dtype', () => {
    expect(() => globalFromWire([toWireTensor({ name: 'x', shape: [1], data: new Int32Array([1]) })])).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TENSOR }));
  });
});
