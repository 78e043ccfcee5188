/**
 * The coordinator's adapters on a real broker (port 0), with scripted v2 nodes: what the round
 * engine's transitions look like on the wire (engine/*.test.ts test every transition with a fake
 * clock), the update acceptance rules end to end, chunked updates and the reassembly budget,
 * checkpoint files, and reconnecting.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { createModel, initBackend } from '@fedmq/ml';
import { pino } from 'pino';
import { ErrorCodes, PROTOCOL_VERSION, chunkSpan, encodeJson, float32Codec, packMessage, splitPayload, topics, type NamedTensor } from '@fedmq/protocol';
import { CHECKPOINT_FILE, Coordinator, type CoordinatorOptions } from './coordinator.ts';
import { createStrategy } from './strategies/index.ts';
import type { CoordinatorCheckpoint } from './engine/types.ts';
import { scriptedNode, updateFor } from './test-nodes.ts';
import { maxUpdateBytes } from './validate.ts';

const JOB = 'coord-test';
const FIT = { epochs: 1, batchSize: 8, learningRate: 0.1 };
let broker: RunningBroker | undefined;
const coordinators: Coordinator[] = [];
const clients: MqttClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await broker?.close();
  broker = undefined;
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const fedavg = (fraction = 1, minFitNodes = 1) => createStrategy({ strategy: 'fedavg', fraction, minFitNodes, fitConfig: FIT });

async function setup(o: Partial<CoordinatorOptions> & Pick<CoordinatorOptions, 'rounds'>): Promise<Coordinator> {
  await initBackend('cpu');
  broker ??= await startBroker({ port: 0, host: '127.0.0.1' });
  const c = new Coordinator({ brokerUrl: broker.url, job: JOB, model: 'mlp-3x2', minAvailableNodes: 2, deadlineMs: 60_000, seed: 5, reconnect: false, strategy: fedavg(), ...o });
  coordinators.push(c);
  return c;
}

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fedmq-coord-'));
  dirs.push(d);
  return d;
}

describe('coordinator on a real broker', () => {
  it('rejects each bad update with its code, folds each valid update once, averages by numExamples, and saves the model', async () => {
    const out = await tempDir();
    const c = await setup({ rounds: 1, outDir: out });
    const rejected: string[] = [];
    c.on('rejected', (r) => rejected.push(r.error.code));
    const done = c.run();
    const a = await scriptedNode(broker!.url, JOB, 'a', 1, () => false, clients);
    const b = await scriptedNode(broker!.url, JOB, 'b', 5, () => false, clients);
    const [ta, tb] = await Promise.all([a.nextTask(), b.nextTask()]);
    const global: NamedTensor[] = await a.waitModel(1);
    const ones = (k: number) => global.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(k) }));
    const send = (client: MqttClient, nodeId: string, payload: Buffer | string) => client.publishAsync(topics.nodeUpdate(JOB, nodeId), payload, { qos: 1 });
    // a NaN written into the bytes by hand: fedmq's own encoder refuses to encode one
    const nanTensors = float32Codec.encode(ones(1), {}, undefined, Math.random);
    const nanBytes = Uint8Array.from(nanTensors[2].data as Uint8Array);
    new DataView(nanBytes.buffer).setFloat32(5 * 4, NaN, true);
    nanTensors[2] = { ...nanTensors[2], data: nanBytes };
    const wrongShape = ones(1).map((t, i) => (i === 0 ? { name: t.name, shape: [t.shape[0] + 1, t.shape[1]], data: new Float32Array((t.shape[0] + 1) * t.shape[1]) } : t));
    await send(a.client, 'a', 'not msgpack at all');
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1), { tensors: nanTensors }));
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, wrongShape));
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1), { codec: 'int8' }));
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1), { taskId: ta.taskId + 100 }));
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1), { job: 'other-job' }));
    await send(a.client, 'a', updateFor(JOB, tb, 'b', 10, ones(1))); // claims to be b on a's topic
    await send(a.client, 'a', updateFor(JOB, tb, 'a', 10, ones(1))); // answers b's task as itself
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1))); // valid
    await send(a.client, 'a', updateFor(JOB, ta, 'a', 10, ones(1))); // duplicate
    await send(b.client, 'b', updateFor(JOB, tb, 'b', 30, ones(5))); // valid, closes the round
    const [record] = await done;
    expect(record.reported).toBe(2);
    const expected = {
      [ErrorCodes.BAD_PAYLOAD]: 1, [ErrorCodes.NON_FINITE]: 1, [ErrorCodes.MODEL_MISMATCH]: 1, [ErrorCodes.WRONG_CODEC]: 1,
      [ErrorCodes.STALE_UPDATE]: 1, [ErrorCodes.WRONG_JOB]: 1, [ErrorCodes.SCHEMA]: 1, [ErrorCodes.NOT_SELECTED]: 1, [ErrorCodes.DUPLICATE_UPDATE]: 1,
    };
    expect(record.failures).toEqual(expected);
    expect([...rejected].sort()).toEqual(Object.keys(expected).sort());
    // new global = global + (10·1 + 30·5)/40 = global + 4 in every coordinate
    const next = c.globalWeights();
    for (let t = 0; t < global.length; t++) for (const i of [0, global[t].data.length - 1]) expect(next[t].data[i]).toBeCloseTo(global[t].data[i] + 4, 5);
    // the saved model is the aggregated one, even without a test set to evaluate on; history and checkpoint are there
    const saved = new Float32Array((await readFile(join(out, 'model', 'weights.bin'))).buffer.slice(0));
    expect(saved[0]).toBeCloseTo(global[0].data[0] + 4, 5);
    expect(JSON.parse(await readFile(join(out, 'history.json'), 'utf8'))[0].round).toBe(1);
    expect((await Coordinator.loadCheckpoint(out)).round).toBe(1);
  });

  it('sends the model only to the selected nodes: tasks go to their own topics, the others receive nothing of the round', async () => {
    const c = await setup({ rounds: 1, strategy: fedavg(0.5), minAvailableNodes: 4 });
    const done = c.run();
    const nodes = await Promise.all(['a', 'b', 'c', 'd'].map((id, i) => scriptedNode(broker!.url, JOB, id, i + 1, undefined, clients)));
    const record = (await done)[0];
    expect(record.selected).toBe(2);
    expect(nodes.map((n) => n.tasks.length).sort()).toEqual([0, 0, 1, 1]);
  });

  it('runs without a central test set, and refuses an update that answers no task', async () => {
    const c = await setup({ rounds: 1, minAvailableNodes: 1 });
    const rejected: string[] = [];
    c.on('rejected', (r) => rejected.push(`${r.nodeId} ${r.error.code}`));
    const done = c.run();
    const ghost = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, clientId: 'ghost' });
    clients.push(ghost);
    const zeros = createModel('mlp-3x2', 1).getWeights().map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
    const fake = { v: 2, job: JOB, runId: c.runId, nodeId: 'g', taskId: 1, round: 1, stage: 'fit', modelVersion: 1 } as const;
    await ghost.publishAsync(topics.nodeUpdate(JOB, 'g'), updateFor(JOB, fake as never, 'g', 10, zeros), { qos: 1 });
    await scriptedNode(broker!.url, JOB, 'a', 1, undefined, clients);
    const [r] = await done;
    expect(r.testAccuracy).toBeNull();
    expect(r.reported).toBe(1);
    expect(rejected).toEqual([`g ${ErrorCodes.STALE_UPDATE}`]);
  });
});

describe('chunked updates', () => {
  // Regression (found while writing the chunk fuzz of test/fuzz.e2e.test.ts): chunks from every node
  // id went into one reassembler whose pending budget is shared; four first chunks on made-up
  // ids announcing 256 MiB transfers used it up and every selected node's update was refused.
  // Only nodes with an open fit task may use the budget now.
  it('are refused before reassembly from nodes without an open fit task, and reassembled from the others', async () => {
    const c = await setup({ rounds: 1, minAvailableNodes: 1, maxPayloadBytes: 2048, maxRoundRetries: 0, deadlineMs: 20_000 });
    const rejected: string[] = [];
    c.on('rejected', (r) => rejected.push(`${r.nodeId} ${r.error.code}`));
    const done = c.run();
    const n1 = await scriptedNode(broker!.url, JOB, 'n1', 1, () => false, clients);
    const task = await n1.nextTask();
    expect(task.maxPayloadBytes).toBe(2048);
    expect(task.modelChunks).toBeGreaterThan(1);
    const attacker = await mqtt.connectAsync(broker!.url, { clientId: 'attacker', reconnectPeriod: 0 });
    clients.push(attacker);
    for (let i = 0; i < 5; i++) {
      const chunk = packMessage({ v: 2, transfer: String(i).padStart(32, 'b'), index: 0, count: 262_144, total: 256 * 2 ** 20, sha256: 'a'.repeat(64), data: new Uint8Array(1024) });
      await attacker.publishAsync(topics.nodeUpdate(JOB, `ghost-${i}`), chunk, { qos: 1 });
    }
    const zeros = createModel('mlp-3x2', 1).getWeights().map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
    const chunks = splitPayload(updateFor(JOB, task, 'n1', 10, zeros), 2048);
    expect(chunks.length).toBeGreaterThan(1);
    // a one-chunk transfer of junk from n1 in the middle of its real one: refused, and not counted into the real one's bytes
    const [junk] = splitPayload(Buffer.from('x'), 2048);
    for (const [i, ch] of chunks.entries()) {
      await n1.client.publishAsync(topics.nodeUpdate(JOB, 'n1'), ch, { qos: 1 });
      if (i === 0) await n1.client.publishAsync(topics.nodeUpdate(JOB, 'n1'), junk, { qos: 1 });
    }
    const [record] = await done;
    expect(record.reported).toBe(1);
    expect(record.bytesUp).toBe(chunks.reduce((s, x) => s + x.length, 0));
    expect(rejected.slice(0, 5)).toEqual(Array.from({ length: 5 }, (_, i) => `ghost-${i} ${ErrorCodes.NOT_SELECTED}`));
    expect(rejected.slice(5)).toEqual([`n1 ${ErrorCodes.SCHEMA}`]); // 'x' is MessagePack for 120, not an Update
  });
});

describe('chunked updates from a selected node', () => {
  // Regression (issue 12): a node *with* an open fit task could still take the whole shared
  // budget: four first chunks announcing 256 MiB transfers made every honest update fail with
  // FEDMQ_CHUNK_LIMIT (logged against the victims) and the run died with FEDMQ_ROUND_FAILED.
  it('a node holds one transfer of at most one update: oversized ones are refused and its older one superseded, both against it; honest updates are accepted; a partial transfer is dropped when its round closes', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const c = await setup({ rounds: 1, minAvailableNodes: 4, maxPayloadBytes: 2048, maxRoundRetries: 0, deadlineMs: 60_000, logger });
    const rejected: string[] = [];
    c.on('rejected', (r) => rejected.push(`${r.nodeId} ${r.error.code}`));
    const done = c.run();
    const [n1, n2] = [await scriptedNode(broker!.url, JOB, 'n1', 1, () => false, clients), await scriptedNode(broker!.url, JOB, 'n2', 2, () => false, clients)];
    const m = await scriptedNode(broker!.url, JOB, 'm', 3, () => false, clients);
    const willPayload = encodeJson({ v: PROTOCOL_VERSION, job: JOB, nodeId: 'p', state: 'offline', ts: Date.now() });
    const p = await scriptedNode(broker!.url, JOB, 'p', 4, () => false, clients, { will: { topic: topics.nodeStatus(JOB, 'p'), payload: willPayload, qos: 1, retain: true } });
    const [t1, t2, tm, tp] = await Promise.all([n1.nextTask(), n2.nextTask(), m.nextTask(), p.nextTask()]);
    const zeros = createModel('mlp-3x2', 1).getWeights().map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
    const honest = (task: typeof t1, id: string, k: number) => splitPayload(updateFor(JOB, task, id, k, zeros), 2048);
    const limit = maxUpdateBytes(c.globalWeights(), 'float32');
    const first = (transfer: number, total: number) => {
      const count = Math.ceil(total / 1024);
      return packMessage({ v: 2, transfer: String(transfer).padStart(32, 'c'), index: 0, count, total, sha256: 'a'.repeat(64), data: new Uint8Array(chunkSpan(total, count, 0)!.length) });
    };
    // the attack: four 256 MiB transfers announced by a selected node
    for (let i = 0; i < 4; i++) await m.client.publishAsync(topics.nodeUpdate(JOB, 'm'), first(i, 256 * 2 ** 20), { qos: 1 });
    // at the bound: held; a second transfer of m supersedes it
    await m.client.publishAsync(topics.nodeUpdate(JOB, 'm'), first(10, limit), { qos: 1 });
    await m.client.publishAsync(topics.nodeUpdate(JOB, 'm'), first(11, limit), { qos: 1 });
    // one byte over the bound: refused
    await m.client.publishAsync(topics.nodeUpdate(JOB, 'm'), first(12, limit + 1), { qos: 1 });
    // the honest nodes' chunked updates, and m's real one after all that
    for (const ch of honest(t1, 'n1', 10)) await n1.client.publishAsync(topics.nodeUpdate(JOB, 'n1'), ch, { qos: 1 });
    for (const ch of honest(t2, 'n2', 20)) await n2.client.publishAsync(topics.nodeUpdate(JOB, 'n2'), ch, { qos: 1 });
    for (const ch of honest(tm, 'm', 30)) await m.client.publishAsync(topics.nodeUpdate(JOB, 'm'), ch, { qos: 1 });
    // p starts its upload and vanishes (no DISCONNECT: the broker publishes its Last Will)
    const pChunks = honest(tp, 'p', 40);
    await p.client.publishAsync(topics.nodeUpdate(JOB, 'p'), pChunks[0], { qos: 1 });
    p.client.stream.destroy();
    const [record] = await done;
    expect(record.accepted).toBe(true);
    expect(record.reported).toBe(3);
    expect(record.failures.offline).toBe(1);
    expect(rejected).toEqual([
      ...Array.from({ length: 4 }, () => `m ${ErrorCodes.CHUNK_TOO_LARGE}`),
      `m ${ErrorCodes.CHUNK_LIMIT}`, // transfer 10 superseded by 11
      `m ${ErrorCodes.CHUNK_TOO_LARGE}`, // limit + 1
      `m ${ErrorCodes.CHUNK_LIMIT}`, // transfer 11 superseded by m's real update
    ]);
    // p's first chunk held its buffer until the round closed, then it was freed
    expect(lines.filter((l) => l.msg === 'incomplete update transfer dropped: its task closed').map((l) => l.nodeId)).toEqual(['p']);
  });
});

describe('ending the run', () => {
  // Regression (issue 12): the persistent session stayed on the broker after a run, subscribed to
  // nodes/+/update, and the broker queued every later update for it (421 → 1,082 MB for 100 × 8 MiB).
  it('close() leaves the coordinator\'s session without subscriptions, so the broker queues nothing for it', async () => {
    const c = await setup({ rounds: 1, minAvailableNodes: 1 });
    const done = c.run();
    await scriptedNode(broker!.url, JOB, 'a', 1, () => true, clients);
    await done;
    const id = `fedmq:${JOB}:coordinator`;
    // the broker's session store (aedes-persistence, promise API)
    const store = (broker!.aedes as unknown as { persistence: { subscriptionsByClient(c: { id: string }): Promise<unknown[]> } }).persistence;
    const subs = async () => (await store.subscriptionsByClient({ id })) ?? [];
    expect((await subs()).length).toBe(5); // while it runs: status, update, secure-aggregation answers, evaluation, v1 status
    await c.close();
    expect(await subs()).toEqual([]);
  });
});

describe('checkpoints', () => {
  it('a run resumed from the checkpoint of round 2 ends with the same model, bit for bit, as an uninterrupted one', async () => {
    await setup({ rounds: 1 }).then((c) => c.close());
    for (const [id, k] of [['a', 1], ['b', 2], ['c', 3], ['d', 4]] as const) await scriptedNode(broker!.url, JOB, id, k, undefined, clients);
    // server momentum and a random half of the nodes each round: state and random draws both matter
    const strategy = () => createStrategy({ strategy: 'fedavgm', fraction: 0.5, minFitNodes: 2, fitConfig: FIT });
    const whole = await setup({ rounds: 4, strategy: strategy(), runId: 'whole', minAvailableNodes: 4 });
    await whole.run();
    const expected = whole.globalWeights();
    const dir = await tempDir();
    const first = await setup({ rounds: 2, strategy: strategy(), runId: 'first', checkpointDir: dir, minAvailableNodes: 4 });
    await first.run();
    await first.close();
    const cp = await Coordinator.loadCheckpoint(dir);
    expect(cp.round).toBe(2);
    expect(cp.strategyState).not.toBeNull();
    const resumed = await setup({ rounds: 4, strategy: strategy(), runId: 'resumed', checkpointDir: dir, resume: cp, minAvailableNodes: 4 });
    const history = await resumed.run();
    expect(history.map((r) => r.round)).toEqual([1, 2, 3, 4]);
    const got = resumed.globalWeights();
    for (let t = 0; t < expected.length; t++) expect(Buffer.from(got[t].data.buffer).equals(Buffer.from(expected[t].data.buffer))).toBe(true);
  });

  it('refuses a missing checkpoint, one of format 1, and one of another job, model, strategy or seed, with FEDMQ_CHECKPOINT', async () => {
    const dir = await tempDir();
    await expect(Coordinator.loadCheckpoint(dir)).rejects.toMatchObject({ code: ErrorCodes.CHECKPOINT });
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, CHECKPOINT_FILE), packMessage({ format: 'fedmq-checkpoint', v: 1, weights: [], history: [] }));
    await expect(Coordinator.loadCheckpoint(dir)).rejects.toMatchObject({ code: ErrorCodes.CHECKPOINT });
    const cp: CoordinatorCheckpoint = {
      format: 'fedmq-checkpoint', v: 2, job: JOB, runId: 'r', model: 'mlp-3x2', seed: 5, mode: 'sync', round: 1, modelVersion: 2, failedInARow: 0, rngDraws: 0,
      evalRngDraws: 0, taskId: 3, strategy: 'fedavg', strategyState: null, history: [], weights: createModel('mlp-3x2', 5).getWeights(), ts: 0,
    };
    await initBackend('cpu');
    const make = (resume: CoordinatorCheckpoint) => new Coordinator({ brokerUrl: 'mqtt://127.0.0.1:1', job: JOB, model: 'mlp-3x2', rounds: 2, minAvailableNodes: 1, deadlineMs: 1000, seed: 5, strategy: fedavg(), resume });
    expect(() => make(cp)).not.toThrow();
    for (const patch of [{ strategy: 'fedavgm' }, { job: 'other' }, { model: 'mnist-2nn' }, { seed: 6 }, { mode: 'async' as const }]) {
      expect(() => make({ ...cp, ...patch })).toThrow(expect.objectContaining({ code: ErrorCodes.CHECKPOINT }));
    }
  });
});

describe('reconnecting', () => {
  it('republishes the model and the open tasks after a broker restart, and the round completes', async () => {
    await initBackend('cpu');
    // the restarted broker keeps sessions and retained messages, as a Redis-backed one would
    const { createPersistence } = await import('@fedmq/broker');
    const persistence = createPersistence('memory').persistence;
    broker = await startBroker({ port: 0, host: '127.0.0.1', aedes: { persistence } });
    const port = broker.port;
    const c = new Coordinator({
      brokerUrl: broker.url, job: JOB, model: 'mlp-3x2', minAvailableNodes: 1, deadlineMs: 60_000, seed: 5, rounds: 1, strategy: fedavg(),
      reconnect: { initialMs: 20, maxMs: 200 },
    });
    coordinators.push(c);
    const done = c.run();
    let answer = false;
    const node = await scriptedNode(broker.url, JOB, 'a', 1, () => answer, clients, { clean: false, reconnectPeriod: 50 });
    const task = await node.nextTask();
    answer = true;
    const republished = node.nextTask();
    await broker.close();
    broker = await startBroker({ port, host: '127.0.0.1', aedes: { persistence } });
    // the coordinator reconnects and sends the open task again (the node's session queues it): the same task id
    expect((await republished).taskId).toBe(task.taskId);
    const [record] = await done;
    expect(record.reported).toBe(1);
    expect(node.answered).toEqual([1]);
  });
});
