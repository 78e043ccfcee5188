import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { expectCode, runCodecSuite } from './codec-suite.ts';
import { float32Codec } from './float32.ts';
import { seededRng } from './rng.ts';

runCodecSuite(float32Codec, {
  params: {},
  accuracy: 'exact',
  malformed: [
    {
      label: 'NaN value (FEDMQ_NON_FINITE)',
      code: ErrorCodes.NON_FINITE,
      make: (t) => {
        const b = Uint8Array.from(t.data as Uint8Array);
        new DataView(b.buffer).setFloat32(8, NaN, true);
        return { ...t, data: b };
      },
    },
  ],
});

describe('float32 codec', () => {
  it('carries exactly 4 bytes per value, little-endian', () => {
    const [t] = float32Codec.encode([{ name: 'w', shape: [2], data: Float32Array.of(1, -2) }], {}, undefined, seededRng(1));
    expect(Buffer.from(t.data as Uint8Array).toString('hex')).toBe('0000803f000000c0');
    expect(Object.keys(t).sort()).toEqual(['codec', 'data', 'name', 'shape']);
  });
  it('decode rejects +Infinity (FEDMQ_NON_FINITE)', () => {
    expectCode(() => float32Codec.decode({ name: 'w', shape: [1], codec: 'float32', data: Uint8Array.of(0, 0, 0x80, 0x7f) }), ErrorCodes.NON_FINITE);
  });
});
