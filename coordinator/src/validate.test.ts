import { describe, expect, it } from 'vitest';
import { createModel, initBackend } from '@fedmq/ml';
import { CODEC_NAMES, PROTOCOL_VERSION, encodePacked, getCodec, seededRng, type UpdateMessage } from '@fedmq/protocol';
import { maxMaskedInputBytes, maxUpdateBytes } from './validate.ts';

describe('maxUpdateBytes (the coordinator\'s bound on one chunked update)', () => {
  it('is at least the size of a real Update of mnist-2nn in every codec, with the longest ids, and at most 1 % + 64 KiB above it', async () => {
    await initBackend('cpu');
    const model = createModel('mnist-2nn', 3);
    const global = model.getWeights();
    model.dispose();
    const long = 'x'.repeat(64);
    for (const codec of CODEC_NAMES) {
      const params = { k: 0.01, blockSize: 256 };
      const rng = seededRng(9);
      // a delta unlike the one the bound encodes: large values, zeros and signs mixed
      const delta = global.map((t) => ({ ...t, data: Float32Array.from(t.data, (_, i) => (i % 7 === 0 ? 0 : (rng() - 0.5) * 1e4)) }));
      const u: UpdateMessage = {
        v: PROTOCOL_VERSION, job: long, runId: long, nodeId: long, taskId: 2 ** 31, round: 2 ** 31, modelVersion: 2 ** 31, numExamples: 2 ** 31,
        codec, kind: 'delta', metrics: { loss: -1.2345678901234567e300, trainMs: 1e300, bytesDown: 2 ** 52 }, tensors: getCodec(codec).encode(delta, params, {}, seededRng(4)), ts: 2 ** 52,
      };
      const real = encodePacked(u).byteLength;
      const bound = maxUpdateBytes(global, codec, params);
      expect(bound, codec).toBeGreaterThanOrEqual(real);
      expect(bound, codec).toBeLessThanOrEqual(Math.ceil(real * 1.01) + 64 * 1024);
    }
  });
});

describe('maxMaskedInputBytes (the bound on one chunked masked input, secure aggregation)', () => {
  it('holds the largest masked-input Update of the model (d + 1 words at b = 32), whatever the codec', async () => {
    const { encodePacked, PROTOCOL_VERSION } = await import('@fedmq/protocol');
    const { packBits } = await import('@fedmq/privacy');
    const global = [{ name: 'w', shape: [300, 7], data: new Float32Array(2100) }, { name: 'b', shape: [7], data: new Float32Array(7) }];
    const words = Uint32Array.from({ length: 2108 }, (_, i) => (i * 2654435761) >>> 0);
    const update = encodePacked({
      v: PROTOCOL_VERSION, job: 'j'.repeat(64), runId: 'r'.repeat(64), nodeId: 'n'.repeat(64), taskId: 2 ** 31, round: 999_999, modelVersion: 999_999, numExamples: 1,
      codec: 'float32', kind: 'delta', metrics: { loss: 0, trainMs: 1e9, bytesDown: 2 ** 40 }, secagg: { data: packBits(words, 32) }, tensors: [], ts: Date.now(),
    });
    expect(update.byteLength).toBeLessThanOrEqual(maxMaskedInputBytes(global));
    // int8's own bound is about a quarter of it: too small for a masked input
    expect(maxUpdateBytes(global, 'int8') - 64 * 1024).toBeLessThan(update.byteLength);
  });
});
