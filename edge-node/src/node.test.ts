import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { createModel, initBackend, loadMnist, subset } from '@fedmq/ml';
import {
  ErrorCodes, PROTOCOL_VERSION, UpdateSchema, decodePacked, encodeJson, encodePacked, getCodec, topics, weightsSha256, weightsToWire,
  type FedmqError, type GlobalModelMessage, type NamedTensor, type RoundTask,
} from '@fedmq/protocol';
import { EdgeNode } from './node.ts';
import { deviceInfo } from './device.ts';

const JOB = 'edge-test';
let broker: RunningBroker;
let coordinator: MqttClient;
let node: EdgeNode;
const logLines: { code?: string; msg: string }[] = [];

function modelMessage(version: number, weights: NamedTensor[]): Buffer {
  const tensors = weightsToWire(weights);
  const msg: GlobalModelMessage = { v: PROTOCOL_VERSION, job: JOB, runId: 'r1', version, round: version - 1, model: 'mnist-2nn', sha256: weightsSha256(tensors), tensors, ts: Date.now() };
  return encodePacked(msg);
}

function task(round: number, modelVersion: number): RoundTask {
  return {
    v: PROTOCOL_VERSION, job: JOB, runId: 'r1', round, modelVersion, selected: ['pi-1'], deadline: Date.now() + 60_000, timeoutMs: 60_000,
    config: { epochs: 1, batchSize: 16, learningRate: 0.05 }, codec: 'float32', updateKind: 'delta', ts: Date.now(),
  };
}

/** Resolves with the next `problem` the node emits. */
function nextProblem(): Promise<FedmqError> {
  return new Promise((resolve) => node.once('problem', resolve));
}

beforeAll(async () => {
  const backend = await initBackend('cpu');
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      cb();
    },
  });
  const data = subset(loadMnist('train'), Array.from({ length: 64 }, (_, i) => i));
  node = new EdgeNode({ brokerUrl: broker.url, job: JOB, nodeId: 'pi-1', data, device: deviceInfo(backend), logger: pino({ level: 'warn' }, sink) });
  coordinator = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  const announced = new Promise<void>((resolve) => coordinator.on('message', (t) => t.endsWith('/status') && resolve()));
  await coordinator.subscribeAsync(topics.nodeStatus(JOB, 'pi-1'));
  await node.start();
  await announced;
});

afterAll(async () => {
  await node?.stop();
  await coordinator?.endAsync();
  await broker?.close();
});

describe('edge node under bad input', () => {
  it('logs a coded error for a task that is not JSON, and for one that breaks the schema', async () => {
    let p = nextProblem();
    await coordinator.publishAsync(topics.task(JOB), Buffer.from('{"v":1,'), { qos: 1 });
    expect((await p).code).toBe(ErrorCodes.BAD_PAYLOAD);
    p = nextProblem();
    await coordinator.publishAsync(topics.task(JOB), encodeJson({ ...task(1, 1), config: { epochs: -1, batchSize: 16, learningRate: 0.05 } }), { qos: 1 });
    expect((await p).code).toBe(ErrorCodes.SCHEMA);
    expect(logLines.map((l) => l.code)).toEqual(expect.arrayContaining([ErrorCodes.BAD_PAYLOAD, ErrorCodes.SCHEMA]));
  });

  it('refuses a global model of the wrong shape with FEDMQ_MODEL_MISMATCH', async () => {
    const good = createModel('mnist-2nn', 1).getWeights();
    const wrong = good.map((w, i) => (i === 0 ? { name: w.name, shape: [w.shape[0] - 1, w.shape[1]], data: w.data.subarray(0, (w.shape[0] - 1) * w.shape[1]) } : w));
    const p = nextProblem();
    await coordinator.publishAsync(topics.model(JOB), modelMessage(1, wrong), { qos: 1, retain: true });
    expect((await p).code).toBe(ErrorCodes.MODEL_MISMATCH);
    expect(logLines.some((l) => l.code === ErrorCodes.MODEL_MISMATCH)).toBe(true);
  });

  it('refuses a model whose sha256 does not match its weights', async () => {
    const weights = createModel('mnist-2nn', 1).getWeights();
    const tensors = weightsToWire(weights);
    const msg: GlobalModelMessage = { v: PROTOCOL_VERSION, job: JOB, runId: 'r1', version: 1, round: 0, model: 'mnist-2nn', sha256: '0'.repeat(64), tensors, ts: 1 };
    const p = nextProblem();
    await coordinator.publishAsync(topics.model(JOB), encodePacked(msg), { qos: 1 });
    expect((await p).code).toBe(ErrorCodes.HASH_MISMATCH);
  });

  it('keeps running: a valid model and task afterwards produce a valid update', async () => {
    const weights = createModel('mnist-2nn', 7).getWeights();
    const update = new Promise<Buffer>((resolve) => coordinator.on('message', (t, payload) => t === topics.nodeUpdate(JOB, 'pi-1') && resolve(payload)));
    await coordinator.subscribeAsync(topics.nodeUpdate(JOB, 'pi-1'), { qos: 1 });
    await coordinator.publishAsync(topics.model(JOB), modelMessage(1, weights), { qos: 1, retain: true });
    await coordinator.publishAsync(topics.task(JOB), encodeJson(task(1, 1)), { qos: 1, retain: true });
    const u = decodePacked(UpdateSchema, await update, 'update');
    expect(u).toMatchObject({ nodeId: 'pi-1', round: 1, modelVersion: 1, numExamples: 64, codec: 'float32', kind: 'delta' });
    expect(u.tensors.map((t) => t.name)).toEqual(weights.map((w) => w.name));
    expect(Number.isFinite(u.metrics.loss)).toBe(true);
  });

  it('awaits an async transformDelta, gives it the task context, and publishes what it returns', async () => {
    const weights = createModel('mnist-2nn', 7).getWeights();
    const seen: unknown[] = [];
    const other = new EdgeNode({
      brokerUrl: broker.url, job: JOB, nodeId: 'pi-2', data: subset(loadMnist('train'), [0, 1, 2, 3]), device: deviceInfo('cpu'),
      transformDelta: async (delta, round, ctx) => {
        seen.push({ round, ctx });
        await new Promise((r) => setTimeout(r, 20));
        return delta.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }));
      },
    });
    try {
      await other.start();
      const update = new Promise<Buffer>((resolve) => coordinator.on('message', (t, payload) => t === topics.nodeUpdate(JOB, 'pi-2') && resolve(payload)));
      await coordinator.subscribeAsync(topics.nodeUpdate(JOB, 'pi-2'), { qos: 1 });
      await coordinator.publishAsync(topics.model(JOB), modelMessage(1, weights), { qos: 1, retain: true });
      const t = { ...task(2, 1), selected: ['pi-2', 'pi-9'] };
      await coordinator.publishAsync(topics.task(JOB), encodeJson(t), { qos: 1, retain: true });
      const u = decodePacked(UpdateSchema, await update, 'update');
      expect(seen).toEqual([{ round: 2, ctx: { runId: 'r1', selected: ['pi-2', 'pi-9'], deadline: t.deadline, timeoutMs: 60_000 } }]);
      expect(u.tensors.map((w) => getCodec('float32').decode(w)).every((w) => w.data.every((v) => v === 0.5))).toBe(true);
    } finally {
      await other.stop();
    }
  });
});
