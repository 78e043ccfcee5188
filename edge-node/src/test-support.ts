/**
 * Test helpers of the edge node's tests (not exported from the package): a small tabular
 * dataset, and a plain MQTT client that plays a protocol v2 coordinator (retained models on
 * `models/{v}`, tasks on `nodes/{id}/task`, answers read back), with no @fedmq/coordinator.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { createModel, createRng, type Dataset } from '@fedmq/ml';
import {
  EvaluateResultSchema, PROTOCOL_VERSION, Reassembler, decodeJson, decodeUpdate, encodeJson, encodePacked, splitPayload, topicFilter, topics,
  weightsSha256, weightsToWire,
  type EvaluateResult, type EvaluateTask, type FitTask, type GlobalModelMessage, type NamedTensor, type UpdateMessage,
} from '@fedmq/protocol';

/** Tabular model of the tests: 4 features, 3 classes (MLP 4-64-32-3). */
export const MODEL = 'mlp-4x3';

/** `n` examples of 4 features and 3 classes; the class is the argmax of the first three features. */
export function tabularData(n: number, seed = 1): Dataset {
  const rng = createRng(seed);
  const x = new Float32Array(n * 4);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 4; j++) x[i * 4 + j] = rng();
    const f = x.subarray(i * 4, i * 4 + 3);
    y[i] = f[0] >= f[1] && f[0] >= f[2] ? 0 : f[1] >= f[2] ? 1 : 2;
  }
  return { x, y, featureShape: [4], numClasses: 3, numExamples: n };
}

/** One payload the broker sent to a client (seen by its `authorizeForward` hook). */
export interface Delivery { clientId: string; topic: string; bytes: number }

/** A broker on port 0 that records what it delivers to whom, and the (un)subscriptions. */
export interface ObservedBroker {
  broker: RunningBroker;
  deliveries: Delivery[];
  subscriptions: { clientId: string; topic: string }[];
  /** Resolves when `clientId` unsubscribes from `topic` (also if it already did). */
  unsubscribed(clientId: string, topic: string): Promise<void>;
  /** Resolves once `count` deliveries (counted from the broker's start) match `match`. */
  delivered(match: (d: Delivery) => boolean, count?: number): Promise<void>;
}

/** Starts an Aedes broker on 127.0.0.1, port `port` (0 = any free one), that records deliveries. */
export async function observedBroker(port = 0): Promise<ObservedBroker> {
  const deliveries: Delivery[] = [];
  const deliveryWaiters = new Set<() => void>();
  const subscriptions: { clientId: string; topic: string }[] = [];
  const unsubscriptions: { clientId: string; topic: string }[] = [];
  const broker = await startBroker({
    port, host: '127.0.0.1',
    aedes: {
      authorizeForward: (client, packet) => {
        deliveries.push({ clientId: client.id, topic: packet.topic, bytes: packet.payload.length });
        for (const w of [...deliveryWaiters]) w();
        return packet;
      },
    },
  });
  broker.aedes.on('subscribe', (subs, client) => { for (const s of subs) subscriptions.push({ clientId: client.id, topic: s.topic }); });
  broker.aedes.on('unsubscribe', (unsubs, client) => { for (const t of unsubs) unsubscriptions.push({ clientId: client.id, topic: t }); });
  const unsubscribed = (clientId: string, topic: string) => new Promise<void>((resolve) => {
    if (unsubscriptions.some((u) => u.clientId === clientId && u.topic === topic)) return resolve();
    const on = (unsubs: string[], client: { id: string }) => {
      if (client.id === clientId && unsubs.includes(topic)) {
        broker.aedes.off('unsubscribe', on);
        resolve();
      }
    };
    broker.aedes.on('unsubscribe', on);
  });
  const delivered = (match: (d: Delivery) => boolean, count = 1) => new Promise<void>((resolve) => {
    const check = () => {
      if (deliveries.filter(match).length < count) return;
      deliveryWaiters.delete(check);
      resolve();
    };
    deliveryWaiters.add(check);
    check();
  });
  return { broker, deliveries, subscriptions, unsubscribed, delivered };
}

/** Client id of a node (as EdgeNode connects). */
export function nodeClientId(job: string, nodeId: string): string {
  return `fedmq:${job}:node:${nodeId}`;
}

interface Received { topic: string; payload: Buffer; claimed: boolean }

/** A plain mqtt.js client playing the coordinator of one job. */
export class FakeCoordinator {
  readonly client: MqttClient;
  readonly job: string;
  runId = 'r1';
  private readonly received: Received[] = [];
  private readonly waiters: { match: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  private nextTaskId = 1;

  private constructor(client: MqttClient, job: string) {
    this.client = client;
    this.job = job;
    client.on('message', (topic, payload) => {
      const m: Received = { topic, payload, claimed: false };
      this.received.push(m);
      const i = this.waiters.findIndex((w) => w.match(m));
      if (i >= 0) {
        m.claimed = true;
        this.waiters.splice(i, 1)[0].resolve(m);
      }
    });
  }

  /** Connects and subscribes to the answers and statuses of every node of `job` (v2 and v1 status topics). */
  static async connect(url: string, job: string): Promise<FakeCoordinator> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    await client.subscribeAsync([
      topicFilter('nodeUpdate', job), topicFilter('nodeEvaluation', job), topicFilter('nodeStatus', job), topicFilter('legacyNodeStatus', job),
    ], { qos: 1 });
    return new FakeCoordinator(client, job);
  }

  /** The next not yet claimed message on `topic` (received already, or the next to arrive). */
  next(topic: string): Promise<Buffer> {
    const match = (m: Received) => !m.claimed && m.topic === topic;
    const seen = this.received.find(match);
    if (seen) {
      seen.claimed = true;
      return Promise.resolve(seen.payload);
    }
    return new Promise((resolve) => this.waiters.push({ match, resolve: (m) => resolve(m.payload) }));
  }

  /** Messages received on `topic` so far. */
  count(topic: string): number {
    return this.received.filter((m) => m.topic === topic).length;
  }

  /** The next update of `nodeId`, reassembled from chunks when `chunked`. */
  async nextUpdate(nodeId: string, chunked = false): Promise<{ update: UpdateMessage; chunks: number }> {
    const topic = topics.nodeUpdate(this.job, nodeId);
    if (!chunked) return { update: decodeUpdate(await this.next(topic)), chunks: 1 };
    const r = new Reassembler({ maxTotalBytes: 2 ** 26, maxPendingBytes: 2 ** 27, timeoutMs: 60_000 });
    for (let chunks = 1; ; chunks++) {
      const whole = r.push(nodeId, await this.next(topic));
      if (whole) {
        r.close();
        return { update: decodeUpdate(whole), chunks };
      }
    }
  }

  /** The next evaluation result of `nodeId`. */
  async nextEvaluation(nodeId: string): Promise<EvaluateResult> {
    return decodeJson(EvaluateResultSchema, await this.next(topics.nodeEvaluation(this.job, nodeId)), 'evaluation');
  }

  /** The global model message of `version` with `weights`. */
  modelMessage(version: number, weights: readonly NamedTensor[], o: { runId?: string; model?: string } = {}): GlobalModelMessage {
    const tensors = weightsToWire(weights);
    return {
      v: PROTOCOL_VERSION, job: this.job, runId: o.runId ?? this.runId, version, round: version - 1, model: o.model ?? MODEL,
      sha256: weightsSha256(tensors), tensors, ts: Date.now(),
    };
  }

  /**
   * Publishes a global model retained on `models/{version}`, or in chunks of `chunkBytes` on
   * `models/{version}/chunks/{i}`. Returns its sha256 and the number of chunks.
   */
  async publishModel(version: number, weights: readonly NamedTensor[], o: { runId?: string; model?: string; chunkBytes?: number; sha256?: string } = {}): Promise<{ sha256: string; chunks: number; bytes: number }> {
    const msg = this.modelMessage(version, weights, o);
    if (o.sha256) msg.sha256 = o.sha256; // a header that lies about its weights
    const whole = encodePacked(msg);
    if (!o.chunkBytes) {
      await this.client.publishAsync(topics.model(this.job, version), whole, { qos: 1, retain: true });
      return { sha256: msg.sha256, chunks: 0, bytes: whole.length };
    }
    const chunks = splitPayload(whole, o.chunkBytes);
    for (let i = 0; i < chunks.length; i++) await this.client.publishAsync(topics.modelChunk(this.job, version, i), chunks[i], { qos: 1, retain: true });
    return { sha256: msg.sha256, chunks: chunks.length, bytes: whole.length };
  }

  /** A fit task for `nodeId` (next task id unless given). */
  fitTask(nodeId: string, modelVersion: number, modelSha256: string, o: Partial<FitTask> = {}): FitTask {
    return {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, nodeId, taskId: this.nextTaskId++, round: 1, modelVersion, modelSha256,
      deadline: Date.now() + 60_000, timeoutMs: 60_000, valFraction: 0, stage: 'fit',
      config: { epochs: 1, batchSize: 8, learningRate: 0.05 }, codec: 'float32', updateKind: 'delta', ts: Date.now(), ...o,
    };
  }

  /** An evaluate task for `nodeId` (next task id unless given). */
  evaluateTask(nodeId: string, modelVersion: number, modelSha256: string, o: Partial<EvaluateTask> = {}): EvaluateTask {
    return {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, nodeId, taskId: this.nextTaskId++, round: 1, modelVersion, modelSha256,
      deadline: Date.now() + 60_000, timeoutMs: 60_000, valFraction: 0.2, stage: 'evaluate', batchSize: 16, ts: Date.now(), ...o,
    };
  }

  /** Sends a task (or any JSON / raw payload) on `nodes/{nodeId}/task`, QoS 1. Returns the payload sent. */
  async send(nodeId: string, task: object | Buffer): Promise<Buffer> {
    const payload = Buffer.isBuffer(task) ? task : encodeJson(task);
    await this.client.publishAsync(topics.nodeTask(this.job, nodeId), payload, { qos: 1 });
    return payload;
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

/** Initial weights of {@link MODEL} for `seed`. */
export function initialWeights(seed: number, model = MODEL): NamedTensor[] {
  const m = createModel(model, seed);
  const w = m.getWeights();
  m.dispose();
  return w;
}
