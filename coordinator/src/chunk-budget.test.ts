import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { createModel, initBackend } from '@fedmq/ml';
import {
  ErrorCodes, PROTOCOL_VERSION, RoundTaskSchema, decodeJson, encodeJson, encodePacked, float32Codec, packMessage, splitPayload, topics,
  type RoundTask, type UpdateMessage,
} from '@fedmq/protocol';
import { Coordinator } from './coordinator.ts';
import { FedAvg } from './strategies/fedavg.ts';

// Regression (found while writing the chunk fuzz of test/fuzz.test.ts): the coordinator fed
// chunks from every node id into its one reassembler, whose pending budget (1 GiB, 10,000
// transfers) is shared. Four first chunks on made-up node ids, each announcing a 256 MiB
// transfer, used it all up, and every selected node's update was then refused with
// FEDMQ_CHUNK_LIMIT: the round failed. Chunks from nodes not selected for the open round (or
// with no round open) are now refused before reassembly.
const JOB = 'chunk-budget';
let broker: RunningBroker | undefined;
let coordinator: Coordinator | undefined;
const clients: MqttClient[] = [];
afterEach(async () => {
  await coordinator?.close();
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await broker?.close();
});

describe('chunked updates from nodes that were not selected', () => {
  it('are refused before reassembly, so they cannot use up the budget the selected nodes need', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    coordinator = new Coordinator({
      brokerUrl: broker.url, job: JOB, model: 'mlp-3x2', rounds: 1, minNodes: 1, deadlineMs: 20_000, maxPayloadBytes: 2048, maxRoundRetries: 0,
      strategy: new FedAvg({ fractionFit: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 8, learningRate: 0.1 } }),
    });
    const rejected: string[] = [];
    coordinator.on('rejected', (r) => rejected.push(`${r.nodeId} ${r.error.code}`));
    const done = coordinator.run();

    const node = await mqtt.connectAsync(broker.url, { clientId: 'n1', reconnectPeriod: 0 });
    clients.push(node);
    const gotTask = new Promise<RoundTask>((resolve) => node.on('message', (t, p) => t === topics.task(JOB) && p.length > 0 && resolve(decodeJson(RoundTaskSchema, p, 'task'))));
    await node.subscribeAsync(topics.task(JOB), { qos: 1 });
    await node.publishAsync(topics.nodeStatus(JOB, 'n1'), encodeJson({ v: 1, job: JOB, nodeId: 'n1', state: 'idle', ts: Date.now(), numExamples: 10 }), { qos: 1, retain: true });
    const task = await gotTask;
    expect(task.selected).toEqual(['n1']);

    // first chunks of 256 MiB transfers (1 KiB chunks) on node ids nobody selected
    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 0 });
    clients.push(attacker);
    for (let i = 0; i < 5; i++) {
      const chunk = packMessage({ v: 1, transfer: String(i).padStart(32, 'b'), index: 0, count: 262_144, total: 256 * 2 ** 20, sha256: 'a'.repeat(64), data: new Uint8Array(1024) });
      await attacker.publishAsync(topics.nodeUpdate(JOB, `ghost-${i}`), chunk, { qos: 1 });
    }

    const zeros = createModel('mlp-3x2', 1).getWeights().map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
    const update: UpdateMessage = {
      v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId: 'n1', round: 1, modelVersion: task.modelVersion, numExamples: 10, codec: 'float32', kind: 'delta',
      metrics: { loss: 1, trainMs: 1 }, tensors: float32Codec.encode(zeros, {}, undefined, Math.random), ts: Date.now(),
    };
    const chunks = splitPayload(encodePacked(update), 2048);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) await node.publishAsync(topics.nodeUpdate(JOB, 'n1'), c, { qos: 1 });

    const [record] = await done;
    expect(record.reported).toBe(1);
    expect(rejected).toEqual(Array.from({ length: 5 }, (_, i) => `ghost-${i} ${ErrorCodes.NOT_SELECTED}`));
  });
});
