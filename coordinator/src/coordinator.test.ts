import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { initBackend } from '@fedmq/ml';
import {
  ErrorCodes, PROTOCOL_VERSION, RoundTaskSchema, float32Codec, decodeGlobalModel, decodeJson, encodeJson, encodePacked, topics, weightsFromWire,
  type NamedTensor, type RoundTask, type UpdateMessage,
} from '@fedmq/protocol';
import { Coordinator } from './coordinator.ts';
import { FedAvg } from './strategies/fedavg.ts';

const JOB = 'coord-test';
let broker: RunningBroker | undefined;
let coordinator: Coordinator | undefined;
let out: string | undefined;
const clients: MqttClient[] = [];
afterEach(async () => {
  await coordinator?.close();
  await Promise.all(clients.splice(0).map((c) => c.endAsync()));
  await broker?.close();
  if (out) await rm(out, { recursive: true, force: true });
});

async function fakeNode(url: string, nodeId: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: `fake:${nodeId}` });
  clients.push(c);
  await c.publishAsync(topics.nodeStatus(JOB, nodeId), encodeJson({ v: 1, job: JOB, nodeId, state: 'idle', ts: Date.now(), numExamples: 10 }), { qos: 1, retain: true });
  return c;
}

function update(task: RoundTask, nodeId: string, numExamples: number, delta: NamedTensor[], patch: Partial<UpdateMessage> = {}): Buffer {
  const u: UpdateMessage = {
    v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId, round: task.round, modelVersion: task.modelVersion, numExamples, codec: 'float32',
    kind: 'delta', metrics: { loss: 1, trainMs: 5 }, tensors: float32Codec.encode(delta, {}, undefined, Math.random), ts: Date.now(), ...patch,
  };
  return encodePacked(u);
}

describe('coordinator under hostile updates', () => {
  it('rejects each bad update with its code, folds each valid update exactly once, and averages by numExamples', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const watcher = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    clients.push(watcher);
    const seen = { task: undefined as RoundTask | undefined, models: [] as NamedTensor[][] };
    const gotTask = new Promise<RoundTask>((resolve) =>
      watcher.on('message', (t, p) => {
        if (t === topics.task(JOB) && p.length > 0) resolve((seen.task = decodeJson(RoundTaskSchema, p, 'task')));
        if (t === topics.model(JOB)) seen.models.push(weightsFromWire(decodeGlobalModel(p).tensors));
      }),
    );
    await watcher.subscribeAsync([topics.task(JOB), topics.model(JOB)], { qos: 1 });

    out = await mkdtemp(join(tmpdir(), 'fedmq-coord-'));
    coordinator = new Coordinator({
      brokerUrl: broker.url, job: JOB, model: 'mlp-3x2', rounds: 1, minNodes: 2, deadlineMs: 60_000, seed: 3, outDir: out,
      strategy: new FedAvg({ fractionFit: 1, minFitNodes: 2, fitConfig: { epochs: 1, batchSize: 8, learningRate: 0.1 } }),
    });
    const rejected: string[] = [];
    coordinator.on('rejected', (r) => rejected.push(r.error.code));
    const done = coordinator.run();
    const a = await fakeNode(broker.url, 'a');
    const b = await fakeNode(broker.url, 'b');
    const task = await gotTask;
    expect(task.selected).toEqual(['a', 'b']);
    const global = seen.models[0];
    const ones = (k: number) => global.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(k) }));

    const send = (c: MqttClient, nodeId: string, payload: Buffer | string) => c.publishAsync(topics.nodeUpdate(JOB, nodeId), payload, { qos: 1 });
    // a NaN written into the bytes by hand: fedmq's own encoder refuses to encode one
    const nanTensors = float32Codec.encode(ones(1), {}, undefined, Math.random);
    const nanBytes = Uint8Array.from(nanTensors[2].data as Uint8Array);
    new DataView(nanBytes.buffer).setFloat32(5 * 4, NaN, true);
    nanTensors[2] = { ...nanTensors[2], data: nanBytes };
    const wrongShape = ones(1).map((t, i) => (i === 0 ? { name: t.name, shape: [t.shape[0] + 1, t.shape[1]], data: new Float32Array((t.shape[0] + 1) * t.shape[1]) } : t));
    await send(a, 'a', 'not msgpack at all');
    await send(a, 'a', update(task, 'a', 10, ones(1), { tensors: nanTensors }));
    await send(a, 'a', update(task, 'a', 10, wrongShape));
    await send(a, 'a', update(task, 'a', 10, ones(1), { codec: 'int8' }));
    await send(a, 'a', update(task, 'a', 10, ones(1), { round: task.round + 1 }));
    await send(a, 'a', update(task, 'a', 10, ones(1), { job: 'other-job' }));
    await send(a, 'a', update(task, 'b', 10, ones(1))); // claims to be b on a's topic
    const c = await fakeNode(broker.url, 'c');
    await send(c, 'c', update(task, 'c', 10, ones(100))); // not selected
    await send(a, 'a', update(task, 'a', 10, ones(1))); // valid
    await send(a, 'a', update(task, 'a', 10, ones(1))); // duplicate
    await send(b, 'b', update(task, 'b', 30, ones(5))); // valid, closes the round

    const [record] = await done;
    expect(record.reported).toBe(2);
    expect([...rejected].sort()).toEqual([
      ErrorCodes.BAD_PAYLOAD, ErrorCodes.NON_FINITE, ErrorCodes.MODEL_MISMATCH, ErrorCodes.WRONG_CODEC, ErrorCodes.STALE_UPDATE,
      ErrorCodes.WRONG_JOB, ErrorCodes.SCHEMA, ErrorCodes.NOT_SELECTED, ErrorCodes.DUPLICATE_UPDATE,
    ].sort());
    expect(record.failures).toEqual({
      [ErrorCodes.BAD_PAYLOAD]: 1, [ErrorCodes.NON_FINITE]: 1, [ErrorCodes.MODEL_MISMATCH]: 1, [ErrorCodes.WRONG_CODEC]: 1,
      [ErrorCodes.STALE_UPDATE]: 1, [ErrorCodes.WRONG_JOB]: 1, [ErrorCodes.SCHEMA]: 1, [ErrorCodes.NOT_SELECTED]: 1, [ErrorCodes.DUPLICATE_UPDATE]: 1,
    });
    // new global = global + (10·1 + 30·5)/40 = global + 4 in every coordinate
    const next = coordinator.globalWeights();
    for (let t = 0; t < global.length; t++) {
      for (const i of [0, global[t].data.length - 1]) expect(next[t].data[i]).toBeCloseTo(global[t].data[i] + 4, 5);
    }
    // the saved model is the aggregated one, even without a test set to evaluate on
    const saved = new Float32Array((await readFile(join(out, 'model', 'weights.bin'))).buffer.slice(0));
    expect(saved[0]).toBeCloseTo(global[0].data[0] + 4, 5);
  });
});
