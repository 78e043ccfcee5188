import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { unpackMessage } from './codec.ts';
import { float32Codec } from './codecs/float32.ts';
import {
  EvaluateResultSchema, NodeStatusSchema, NodeTaskSchema, RoundMetricsSchema, decodeJson, decodeUpdate, encodeJson, encodePacked, type UpdateMessage,
} from './messages.ts';

const sha = 'ab'.repeat(32);
const fit = {
  v: 2, job: 'j', runId: 'r1', nodeId: 'a', taskId: 7, round: 1, stage: 'fit', modelVersion: 1, modelSha256: sha, deadline: 1_700_000_000_000,
  timeoutMs: 60_000, valFraction: 0, config: { epochs: 1, batchSize: 32, learningRate: 0.1 }, codec: 'float32', updateKind: 'delta', ts: 1_700_000_000_000,
};
const evaluate = {
  v: 2, job: 'j', runId: 'r1', nodeId: 'a', taskId: 8, round: 1, stage: 'evaluate', modelVersion: 2, modelSha256: sha, deadline: 1_700_000_000_000,
  timeoutMs: 60_000, valFraction: 0.1, batchSize: 256, ts: 1_700_000_000_000,
};

describe('messages', () => {
  it('round-trips fit and evaluate tasks as JSON', () => {
    expect(decodeJson(NodeTaskSchema, encodeJson(fit), 'task')).toEqual(fit);
    expect(decodeJson(NodeTaskSchema, encodeJson(evaluate), 'task')).toEqual(evaluate);
  });

  it('round-trips an update as MessagePack', () => {
    const update: UpdateMessage = {
      v: 2, job: 'j', runId: 'r1', nodeId: 'a', taskId: 3, round: 3, modelVersion: 3, numExamples: 10, codec: 'float32', kind: 'delta',
      metrics: { loss: 0.5, trainMs: 12, bytesDown: 1000 }, tensors: float32Codec.encode([{ name: 'fc1/kernel', shape: [2], data: new Float32Array([1, -1]) }], {}, undefined, Math.random), ts: 5,
    };
    const back = decodeUpdate(encodePacked(update));
    expect(back.numExamples).toBe(10);
    expect(back.taskId).toBe(3);
    expect(Array.from(float32Codec.decode(back.tensors[0]).data)).toEqual([1, -1]);
  });

  it.each([
    ['not JSON', Buffer.from('{oops'), ErrorCodes.BAD_PAYLOAD],
    ['protocol version 1', encodeJson({ ...fit, v: 1 }), ErrorCodes.UNSUPPORTED_VERSION],
    ['a missing field', encodeJson({ ...fit, config: undefined }), ErrorCodes.SCHEMA],
    ['a zero batch size', encodeJson({ ...fit, config: { ...fit.config, batchSize: 0 } }), ErrorCodes.SCHEMA],
    ['an unknown fit config key (would be trained without)', encodeJson({ ...fit, config: { ...fit.config, momentum: 0.9 } }), ErrorCodes.SCHEMA],
    ['an unknown task key', encodeJson({ ...fit, clipNorm: 1 }), ErrorCodes.SCHEMA],
    ['an invalid node id', encodeJson({ ...fit, nodeId: 'a/b' }), ErrorCodes.SCHEMA],
    ['an unknown codec', encodeJson({ ...fit, codec: 'zip' }), ErrorCodes.SCHEMA],
    ['an unknown stage', encodeJson({ ...fit, stage: 'unmask' }), ErrorCodes.SCHEMA],
    ['a bad model hash', encodeJson({ ...fit, modelSha256: 'xyz' }), ErrorCodes.SCHEMA],
    ['valFraction above 0.9', encodeJson({ ...evaluate, valFraction: 0.95 }), ErrorCodes.SCHEMA],
  ])('rejects a task with %s', (_why, payload, code) => {
    expect(() => decodeJson(NodeTaskSchema, payload, 'task')).toThrow(expect.objectContaining({ code }));
  });

  it('reads 64-bit integers (as other languages pack epoch-ms timestamps) as numbers', () => {
    // {"ts": 1700000000000} with ts as uint64 (0xcf), as Python's msgpack packs it
    const payload = Buffer.from([0x81, 0xa2, 0x74, 0x73, 0xcf, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00]);
    expect(unpackMessage(payload)).toEqual({ ts: 1_700_000_000_000 });
  });

  it('rejects an update that is not MessagePack, is of v1, or misses its task id', () => {
    expect(() => decodeUpdate(Buffer.from([0xc1, 0xc1]))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_PAYLOAD }));
    expect(() => decodeUpdate(encodePacked({ v: 1, job: 'j' } as unknown as UpdateMessage))).toThrow(expect.objectContaining({ code: ErrorCodes.UNSUPPORTED_VERSION }));
    expect(() => decodeUpdate(encodePacked({ v: 2, job: 'j' } as unknown as UpdateMessage))).toThrow(expect.objectContaining({ code: ErrorCodes.SCHEMA }));
  });

  it('accepts the Last Will status shape', () => {
    expect(NodeStatusSchema.parse({ v: 2, job: 'j', nodeId: 'n', state: 'offline', ts: 0 }).state).toBe('offline');
  });

  it('validates evaluation results: accuracy in [0, 1], local null before any training', () => {
    const r = { v: 2, job: 'j', runId: 'r', nodeId: 'n', taskId: 2, round: 1, modelVersion: 2, numExamples: 60, global: { loss: 0.3, accuracy: 0.9 }, local: null, evalMs: 5, ts: 1 };
    expect(EvaluateResultSchema.parse(r).local).toBeNull();
    expect(EvaluateResultSchema.safeParse({ ...r, global: { loss: 0.3, accuracy: 1.5 } }).success).toBe(false);
  });

  it('requires accepted and federatedEval in round metrics', () => {
    const m = {
      v: 2, job: 'j', runId: 'r', round: 1, modelVersion: 2, accepted: true, mode: 'sync', selected: 2, reported: 2, failures: {}, trainLoss: 0.4,
      testLoss: null, testAccuracy: null, federatedEval: null, bytesDown: 10, bytesUp: 10, durationMs: 5, phases: { trainMs: 1, aggregateMs: 1, evalMs: 1 }, ts: 1,
    };
    expect(RoundMetricsSchema.parse(m).accepted).toBe(true);
    const { accepted: _a, ...noAccepted } = m;
    expect(RoundMetricsSchema.safeParse(noAccepted).success).toBe(false);
  });
});
