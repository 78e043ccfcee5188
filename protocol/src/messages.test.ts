import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { unpackMessage } from './codec.ts';
import { float32Codec } from './codecs/float32.ts';
import { NodeStatusSchema, RoundTaskSchema, decodeJson, decodeUpdate, encodeJson, encodePacked, type UpdateMessage } from './messages.ts';

const task = {
  v: 1, job: 'j', runId: 'r1', round: 1, modelVersion: 1, selected: ['a', 'b'], deadline: 1_700_000_000_000, timeoutMs: 60_000,
  config: { epochs: 1, batchSize: 32, learningRate: 0.1 }, codec: 'float32', updateKind: 'delta', ts: 1_700_000_000_000,
};

describe('messages', () => {
  it('round-trips a round task as JSON', () => {
    expect(decodeJson(RoundTaskSchema, encodeJson(task), 'task')).toEqual(task);
  });

  it('round-trips an update as MessagePack', () => {
    const update: UpdateMessage = {
      v: 1, job: 'j', runId: 'r1', nodeId: 'a', round: 3, modelVersion: 3, numExamples: 10, codec: 'float32', kind: 'delta',
      metrics: { loss: 0.5, trainMs: 12 }, tensors: float32Codec.encode([{ name: 'fc1/kernel', shape: [2], data: new Float32Array([1, -1]) }], {}, undefined, Math.random), ts: 5,
    };
    const back = decodeUpdate(encodePacked(update));
    expect(back.numExamples).toBe(10);
    expect(Array.from(float32Codec.decode(back.tensors[0]).data)).toEqual([1, -1]);
  });

  it.each([
    ['not JSON', Buffer.from('{oops'), ErrorCodes.BAD_PAYLOAD],
    ['another protocol version', encodeJson({ ...task, v: 2 }), ErrorCodes.UNSUPPORTED_VERSION],
    ['a missing field', encodeJson({ ...task, config: undefined }), ErrorCodes.SCHEMA],
    ['a zero batch size', encodeJson({ ...task, config: { ...task.config, batchSize: 0 } }), ErrorCodes.SCHEMA],
    ['an invalid node id', encodeJson({ ...task, selected: ['a/b'] }), ErrorCodes.SCHEMA],
    ['an unknown codec', encodeJson({ ...task, codec: 'zip' }), ErrorCodes.SCHEMA],
  ])('rejects a task with %s', (_why, payload, code) => {
    expect(() => decodeJson(RoundTaskSchema, payload, 'task')).toThrow(expect.objectContaining({ code }));
  });

  it('reads 64-bit integers (as other languages pack epoch-ms timestamps) as numbers', () => {
    // {"ts": 1700000000000} with ts as uint64 (0xcf), as Python's msgpack packs it
    const payload = Buffer.from([0x81, 0xa2, 0x74, 0x73, 0xcf, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]);
    expect(unpackMessage(payload)).toEqual({ ts: 1_700_000_000_000 });
  });

  it('rejects an update that is not MessagePack or misses numExamples', () => {
    expect(() => decodeUpdate(Buffer.from([0xc1, 0xc1]))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_PAYLOAD }));
    expect(() => decodeUpdate(encodePacked({ v: 1, job: 'j' } as unknown as UpdateMessage))).toThrow(expect.objectContaining({ code: ErrorCodes.SCHEMA }));
  });

  it('accepts the Last Will status shape', () => {
    expect(NodeStatusSchema.parse({ v: 1, job: 'j', nodeId: 'n', state: 'offline', ts: 0 }).state).toBe('offline');
  });
});
