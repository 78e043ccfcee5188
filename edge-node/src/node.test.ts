import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type ByteDataset, type Dataset } from '@fedmq/ml';
import {
  ErrorCodes, EvaluateResultSchema, NodeStatusSchema, PROTOCOL_VERSION, UpdateSchema, decodeJson, encodeJson, getCodec, topicFilter, topics,
  type FedmqError, type NamedTensor,
} from '@fedmq/protocol';
import { EdgeNode, type EdgeNodeOptions } from './node.ts';
import { deviceInfo } from './device.ts';
import { heldOutCount, splitDataset, splitIndices } from './split.ts';
import { FakeCoordinator, initialWeights, nodeClientId, observedBroker, tabularData, type Delivery, type ObservedBroker } from './test-support.ts';

let ob: ObservedBroker;
let backend: string;
const logLines: { code?: string; msg: string; job?: string; nodeId?: string }[] = [];
const open: { nodes: EdgeNode[]; coordinators: FakeCoordinator[] } = { nodes: [], coordinators: [] };
let jobs = 0;

const sink = new Writable({
  write(chunk, _enc, cb) {
    for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
    cb();
  },
});

beforeAll(async () => {
  backend = await initBackend('cpu');
  ob = await observedBroker();
});

afterEach(async () => {
  await Promise.all(open.nodes.splice(0).map((n) => n.stop()));
  await Promise.all(open.coordinators.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await ob?.broker.close();
});

/** A fresh job with its fake coordinator and started nodes. */
async function setup(nodeIds: string[], o: Partial<EdgeNodeOptions> = {}, n = 40): Promise<{ job: string; coord: FakeCoordinator; nodes: EdgeNode[] }> {
  const job = `edge-${++jobs}`;
  const coord = await FakeCoordinator.connect(ob.broker.url, job);
  open.coordinators.push(coord);
  const nodes = nodeIds.map((nodeId, i) => new EdgeNode({
    brokerUrl: ob.broker.url, job, nodeId, data: tabularData(n, i + 1), device: deviceInfo(backend), logger: pino({ level: 'info' }, sink), ...o,
  }));
  open.nodes.push(...nodes);
  for (const node of nodes) {
    const announced = new Promise<void>((resolve) => node.once('announced', resolve));
    await node.start();
    await announced;
  }
  return { job, coord, nodes };
}

/** The next `problem` the node emits. */
function nextProblem(node: EdgeNode): Promise<FedmqError> {
  return new Promise((resolve) => node.once('problem', resolve));
}

/** Deliveries of model payloads (whole or chunks) to a node's client. */
function modelDeliveries(job: string, nodeId: string) {
  const prefix = `fedmq/v2/${job}/models/`;
  return ob.deliveries.filter((d) => d.clientId === nodeClientId(job, nodeId) && d.topic.startsWith(prefix));
}

describe('fit tasks', () => {
  it('fetches models/{v} only for a task, answers with a valid Update, and unsubscribes', async () => {
    const { job, coord } = await setup(['pi-1']);
    const weights = initialWeights(7);
    const { sha256 } = await coord.publishModel(1, weights);
    expect(modelDeliveries(job, 'pi-1')).toEqual([]); // published, retained, but nobody asked
    const unsubscribed = ob.unsubscribed(nodeClientId(job, 'pi-1'), topics.model(job, 1));
    const task = coord.fitTask('pi-1', 1, sha256, { round: 3 });
    await coord.send('pi-1', task);
    const { update } = await coord.nextUpdate('pi-1');
    expect(UpdateSchema.safeParse(update).success).toBe(true);
    expect(update).toMatchObject({ v: PROTOCOL_VERSION, job, runId: 'r1', nodeId: 'pi-1', taskId: task.taskId, round: 3, modelVersion: 1, numExamples: 40, codec: 'float32', kind: 'delta' });
    expect(update.tensors.map((t) => t.name)).toEqual(weights.map((w) => w.name));
    expect(Number.isFinite(update.metrics.loss)).toBe(true);
    expect(update.metrics.bytesDown).toBeGreaterThan(0);
    expect(modelDeliveries(job, 'pi-1').map((d) => d.topic)).toEqual([topics.model(job, 1)]);
    expect(ob.subscriptions.filter((s) => s.clientId === nodeClientId(job, 'pi-1') && s.topic.includes('/models/')).map((s) => s.topic)).toEqual([topics.model(job, 1)]);
    await unsubscribed;
  });

  it('trains on pixel bytes (a ByteDataset) exactly as on their float32 values: the same delta, with and without a held-out split', async () => {
    const t = tabularData(40);
    const bytes: ByteDataset = { ...t, x: Uint8Array.from(t.x, (v) => Math.round(v * 255)), xDivisor: 255 };
    const floats: Dataset = { ...t, x: Float32Array.from(bytes.x, (b) => b / 255) };
    const deltas: Float32Array[][] = [];
    for (const data of [floats, bytes]) {
      for (const valFraction of [0, 0.25]) {
        const { coord } = await setup(['pi-1'], { data });
        const { sha256 } = await coord.publishModel(1, initialWeights(5));
        await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256, { round: 2, valFraction }));
        const { update } = await coord.nextUpdate('pi-1');
        deltas.push(update.tensors.map((w) => getCodec('float32').decode(w).data as Float32Array));
      }
    }
    expect(deltas[2]).toEqual(deltas[0]);
    expect(deltas[3]).toEqual(deltas[1]);
    expect(deltas[1]).not.toEqual(deltas[0]);
  });

  it('an unselected node never receives a model payload', async () => {
    const { job, coord } = await setup(['a', 'b']);
    const { sha256 } = await coord.publishModel(1, initialWeights(1));
    await coord.send('a', coord.fitTask('a', 1, sha256));
    await coord.nextUpdate('a');
    expect(modelDeliveries(job, 'a')).toHaveLength(1);
    expect(modelDeliveries(job, 'b')).toEqual([]);
    expect(ob.subscriptions.filter((s) => s.clientId === nodeClientId(job, 'b')).map((s) => s.topic).sort()).toEqual(
      [topics.coordinatorStatus(job), topics.legacyCoordinatorStatus(job), topics.nodeTask(job, 'b')].sort(),
    );
  });

  it('handles a duplicate taskId once, and a new run starts its task ids afresh', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const { sha256 } = await coord.publishModel(1, initialWeights(2));
    const first = coord.fitTask('pi-1', 1, sha256, { taskId: 1 });
    await coord.send('pi-1', first);
    await coord.send('pi-1', first); // QoS 1 redelivery while queued or running
    expect((await coord.nextUpdate('pi-1')).update.taskId).toBe(1);
    await coord.send('pi-1', first); // the coordinator republishes after a reconnect
    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256, { taskId: 2, round: 2 }));
    expect((await coord.nextUpdate('pi-1')).update.taskId).toBe(2);
    expect(coord.count(topics.nodeUpdate(job, 'pi-1'))).toBe(2);
    // a new run: task id 1 again is a new task (and its model is fetched for its run)
    coord.runId = 'r2';
    const next = await coord.publishModel(2, initialWeights(3));
    const updated = new Promise((resolve) => node.once('updated', resolve));
    await coord.send('pi-1', coord.fitTask('pi-1', 2, next.sha256, { taskId: 1 }));
    const { update } = await coord.nextUpdate('pi-1');
    expect(update).toMatchObject({ runId: 'r2', taskId: 1, modelVersion: 2 });
    expect(await updated).toMatchObject({ round: 1, taskId: 1 });
  });

  it('reuses a held model by sha256: the next answer counts only the task bytes', async () => {
    const { job, coord } = await setup(['pi-1']);
    const { sha256, bytes } = await coord.publishModel(1, initialWeights(4));
    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256));
    const a = (await coord.nextUpdate('pi-1')).update;
    expect(a.metrics.bytesDown).toBeGreaterThanOrEqual(bytes);
    const sent = await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256, { round: 2 }));
    const b = (await coord.nextUpdate('pi-1')).update;
    expect(b.metrics.bytesDown).toBe(sent.length);
    expect(modelDeliveries(job, 'pi-1')).toHaveLength(1);
  });

  it('ignores a stale retained model of an earlier run until the right one arrives', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const stale = await coord.publishModel(1, initialWeights(5), { runId: 'old' });
    const right = coord.modelMessage(1, initialWeights(6));
    expect(stale.sha256).not.toBe(right.sha256);
    const task = coord.fitTask('pi-1', 1, right.sha256);
    const isModel = (d: Delivery) => d.clientId === nodeClientId(job, 'pi-1') && d.topic === topics.model(job, 1);
    await coord.send('pi-1', task);
    await ob.delivered(isModel); // the broker handed the stale retained model to the node
    const p = nextProblem(node);
    await coord.publishModel(1, initialWeights(8), { sha256: right.sha256 }); // the right header, other weights
    expect((await p).code).toBe(ErrorCodes.HASH_MISMATCH);
    await coord.publishModel(1, initialWeights(6));
    const { update } = await coord.nextUpdate('pi-1');
    expect(update).toMatchObject({ taskId: task.taskId, modelVersion: 1 });
    expect(logLines.some((l) => l.job === job && l.nodeId === 'pi-1' && l.msg.startsWith('not the model the task names'))).toBe(true);
    expect(modelDeliveries(job, 'pi-1')).toHaveLength(3);
  });

  it('reports FEDMQ_MODEL_UNAVAILABLE when the model never arrives, and keeps working', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const p = nextProblem(node);
    const unsubscribed = ob.unsubscribed(nodeClientId(job, 'pi-1'), topics.model(job, 9));
    await coord.send('pi-1', coord.fitTask('pi-1', 9, 'a'.repeat(64), { timeoutMs: 150 }));
    const err = await p;
    expect(err.code).toBe(ErrorCodes.MODEL_UNAVAILABLE);
    await unsubscribed;
    expect(logLines.some((l) => l.code === ErrorCodes.MODEL_UNAVAILABLE)).toBe(true);
    const { sha256 } = await coord.publishModel(1, initialWeights(1));
    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256));
    expect((await coord.nextUpdate('pi-1')).update.modelVersion).toBe(1);
  });

  it('fetches a chunked model and publishes a chunked update', async () => {
    const { job, coord } = await setup(['pi-1']);
    const weights = initialWeights(3);
    const { sha256, chunks } = await coord.publishModel(4, weights, { chunkBytes: 2048 });
    expect(chunks).toBeGreaterThan(2);
    const unsubscribed = ob.unsubscribed(nodeClientId(job, 'pi-1'), topicFilter('modelChunk', job, { version: 4 }));
    await coord.send('pi-1', coord.fitTask('pi-1', 4, sha256, { modelChunks: chunks, maxPayloadBytes: 1024 }));
    const got = await coord.nextUpdate('pi-1', true);
    expect(got.chunks).toBeGreaterThan(2);
    expect(got.update).toMatchObject({ modelVersion: 4, numExamples: 40 });
    expect(got.update.tensors.map((t) => getCodec('float32').decode(t).shape)).toEqual(weights.map((w) => w.shape));
    expect(modelDeliveries(job, 'pi-1')).toHaveLength(chunks);
    await unsubscribed;
  });

  it('gives transformDelta and onFitTask the task context, and publishes what transformDelta returns', async () => {
    const seen: unknown[] = [];
    const { coord } = await setup(['pi-2'], {
      onFitTask: (ctx) => seen.push({ announced: ctx }),
      transformDelta: async (delta: NamedTensor[], round, ctx) => {
        seen.push({ round, ctx });
        await Promise.resolve();
        return delta.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }));
      },
    });
    const { sha256 } = await coord.publishModel(1, initialWeights(7));
    const task = coord.fitTask('pi-2', 1, sha256, { round: 2, cohort: 3 });
    await coord.send('pi-2', task);
    const { update } = await coord.nextUpdate('pi-2');
    const ctx = { runId: 'r1', round: 2, taskId: task.taskId, deadline: task.deadline, timeoutMs: 60_000, cohort: 3 };
    expect(seen).toEqual([{ announced: { ...ctx, trainMs: 0 } }, { round: 2, ctx: { ...ctx, trainMs: update.metrics.trainMs } }]);
    expect(update.tensors.map((w) => getCodec('float32').decode(w)).every((w) => w.data.every((v) => v === 0.5))).toBe(true);
  });

  it('refuses a model that does not fit the local data with FEDMQ_MODEL_MISMATCH', async () => {
    const { coord, nodes: [node] } = await setup(['pi-1']);
    const { sha256 } = await coord.publishModel(1, initialWeights(1, 'mlp-5x3'), { model: 'mlp-5x3' });
    const p = nextProblem(node);
    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256));
    expect((await p).code).toBe(ErrorCodes.MODEL_MISMATCH);
  });

  it('says in its status that its data does not fit the model (more classes than it has), gives the task up, and clears it once a model fits', async () => {
    const { job, coord } = await setup(['pi-1']); // 4 features, labels 0..2
    const statusTopic = topics.nodeStatus(job, 'pi-1');
    /** The node's next idle status naming `taskId` (statuses before it are skipped). */
    const idleAfter = async (taskId: number) => {
      for (;;) {
        const s = decodeJson(NodeStatusSchema, await coord.next(statusTopic), 'status');
        if (s.state === 'idle' && s.taskId === taskId) return s;
      }
    };
    const wrong = await coord.publishModel(1, initialWeights(1, 'mlp-4x2'), { model: 'mlp-4x2' });
    const t1 = coord.fitTask('pi-1', 1, wrong.sha256);
    await coord.send('pi-1', t1);
    const gaveUp = await idleAfter(t1.taskId);
    expect(gaveUp.dataMismatch).toEqual({
      code: ErrorCodes.MODEL_MISMATCH, model: 'mlp-4x2', message: 'local data: 40 examples of 4 features, 3 classes (labels 0..2); model mlp-4x2 takes 4 features and 2 classes',
    });
    expect(coord.count(topics.nodeUpdate(job, 'pi-1'))).toBe(0);
    const right = await coord.publishModel(2, initialWeights(1));
    const t2 = coord.fitTask('pi-1', 2, right.sha256, { round: 2 });
    await coord.send('pi-1', t2);
    await coord.nextUpdate('pi-1');
    const fits = await idleAfter(t2.taskId);
    expect(fits.dataMismatch).toBeUndefined();
  });
});

describe('evaluate tasks and the held-out split', () => {
  it('evaluates the global model, then the local one after a fit; the splits add up to the dataset', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    expect(node.personalModel()).toBeUndefined();
    const { sha256 } = await coord.publishModel(1, initialWeights(2));
    const evaluated = new Promise((resolve) => node.once('evaluated', resolve));
    const t1 = coord.evaluateTask('pi-1', 1, sha256, { valFraction: 0.2 });
    await coord.send('pi-1', t1);
    const e1 = await coord.nextEvaluation('pi-1');
    expect(EvaluateResultSchema.safeParse(e1).success).toBe(true);
    expect(e1).toMatchObject({ job, nodeId: 'pi-1', taskId: t1.taskId, modelVersion: 1, numExamples: 8, local: null });
    expect(e1.bytesDown).toBeGreaterThan(0);
    expect(await evaluated).toMatchObject({ taskId: t1.taskId, local: null, personal: 'global' });
    const personal = node.personalModel()!;
    expect(personal.map((t) => t.name)).toEqual(initialWeights(2).map((t) => t.name));
    expect(personal[0].data).toEqual(initialWeights(2)[0].data);

    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256, { valFraction: 0.2, config: { epochs: 3, batchSize: 4, learningRate: 0.1 } }));
    const { update } = await coord.nextUpdate('pi-1');
    expect(update.numExamples + e1.numExamples).toBe(40);

    const evaluated2 = new Promise<{ personal: string; local: unknown }>((resolve) => node.once('evaluated', resolve));
    await coord.send('pi-1', coord.evaluateTask('pi-1', 1, sha256, { valFraction: 0.2, round: 2 }));
    const e2 = await coord.nextEvaluation('pi-1');
    expect(e2.numExamples).toBe(8);
    expect(e2.local).not.toBeNull();
    expect(e2.global).toEqual(e1.global); // same model, same split
    const ev = await evaluated2;
    expect(ev.local).toEqual(e2.local);
    expect(ev.personal).toBe(e2.local!.accuracy > e2.global.accuracy ? 'local' : 'global');
    expect(node.personalModel()).toHaveLength(personal.length);
  });

  it('with valFraction 0 keeps no local model (local null) and trains on the full dataset', async () => {
    const { coord } = await setup(['pi-1']);
    const { sha256 } = await coord.publishModel(1, initialWeights(2));
    await coord.send('pi-1', coord.fitTask('pi-1', 1, sha256, { valFraction: 0 }));
    expect((await coord.nextUpdate('pi-1')).update.numExamples).toBe(40);
    await coord.send('pi-1', coord.evaluateTask('pi-1', 1, sha256, { valFraction: 0.25 }));
    expect(await coord.nextEvaluation('pi-1')).toMatchObject({ numExamples: 10, local: null });
  });

  it('refuses an evaluate task with an empty held-out split (FEDMQ_BAD_CONFIG), without fetching the model', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const { sha256 } = await coord.publishModel(1, initialWeights(2));
    const p = nextProblem(node);
    await coord.send('pi-1', coord.evaluateTask('pi-1', 1, sha256, { valFraction: 0 }));
    expect((await p).code).toBe(ErrorCodes.BAD_CONFIG);
    expect(modelDeliveries(job, 'pi-1')).toEqual([]);
    expect(coord.count(topics.nodeEvaluation(job, 'pi-1'))).toBe(0);
  });

  it('splits deterministically and disjointly, training split in original order', () => {
    const a = splitIndices('pi-1', 40, 0.2);
    expect(splitIndices('pi-1', 40, 0.2)).toEqual(a);
    expect(a.heldOut).toHaveLength(8);
    expect(a.train).toHaveLength(32);
    const all = [...a.heldOut, ...a.train].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect([...a.train]).toEqual([...a.train].sort((x, y) => x - y));
    expect([...splitIndices('pi-2', 40, 0.2).heldOut]).not.toEqual([...a.heldOut]);
    expect(heldOutCount(1, 0.5)).toBe(0);
    expect(heldOutCount(2, 0.9)).toBe(1);
    expect(heldOutCount(100, 0.001)).toBe(1);
    expect(heldOutCount(10, 0.9)).toBe(9);
    expect(heldOutCount(10, 0.25)).toBe(3); // Math.round(2.5)
    const data = tabularData(40);
    expect(splitDataset('pi-1', data, 0).train).toBe(data);
    const s = splitDataset('pi-1', data, 0.2);
    expect(s.heldOut!.y).toEqual(Int32Array.from(a.heldOut, (i) => data.y[i]));
    expect(s.train.x.subarray(0, 4)).toEqual(data.x.subarray(a.train[0] * 4, a.train[0] * 4 + 4));
  });
});

describe('bad input and version detection', () => {
  it('logs a coded error for a task that is not JSON, breaks the schema, or names another node', async () => {
    const { coord, nodes: [node] } = await setup(['pi-1']);
    const sha = 'b'.repeat(64);
    let p = nextProblem(node);
    await coord.send('pi-1', Buffer.from('{"v":2,'));
    expect((await p).code).toBe(ErrorCodes.BAD_PAYLOAD);
    p = nextProblem(node);
    await coord.send('pi-1', { ...coord.fitTask('pi-1', 1, sha), config: { epochs: -1, batchSize: 16, learningRate: 0.05 } });
    expect((await p).code).toBe(ErrorCodes.SCHEMA);
    p = nextProblem(node);
    await coord.send('pi-1', { ...coord.fitTask('pi-1', 1, sha), surprise: true });
    expect((await p).code).toBe(ErrorCodes.SCHEMA);
    p = nextProblem(node);
    await coord.send('pi-1', coord.fitTask('pi-9', 1, sha));
    expect((await p).code).toBe(ErrorCodes.SCHEMA);
    p = nextProblem(node);
    await coord.send('pi-1', { ...coord.fitTask('pi-1', 1, sha), v: 1 });
    expect((await p).code).toBe(ErrorCodes.UNSUPPORTED_VERSION);
    expect(logLines.map((l) => l.code)).toEqual(expect.arrayContaining([ErrorCodes.BAD_PAYLOAD, ErrorCodes.SCHEMA, ErrorCodes.UNSUPPORTED_VERSION]));
  });

  it('reports a v1 coordinator with FEDMQ_UNSUPPORTED_VERSION and answers on its v1 status topic; ignores a v2 beacon there', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const p = nextProblem(node);
    const base = { job, runId: 'r0', state: 'running', round: 0, ts: Date.now() };
    await coord.client.publishAsync(topics.legacyCoordinatorStatus(job), encodeJson({ ...base, v: 2 }), { qos: 1 }); // a v2 coordinator's beacon
    await coord.client.publishAsync(topics.legacyCoordinatorStatus(job), encodeJson({ ...base, v: 1 }), { qos: 1, retain: true });
    const err = await p;
    expect(err.code).toBe(ErrorCodes.UNSUPPORTED_VERSION);
    expect(err.message).toContain(`job ${job}'s coordinator speaks protocol v1; this node speaks v2`);
    const legacy = decodeJson(NodeStatusSchema, await coord.next(topics.legacyNodeStatus(job, 'pi-1')), 'v1 status');
    expect(legacy).toMatchObject({ v: 2, job, nodeId: 'pi-1' });
    await coord.client.publishAsync(topics.legacyCoordinatorStatus(job), Buffer.alloc(0), { qos: 1, retain: true });
  });

  it('emits jobEnded once per run when the coordinator reports done', async () => {
    const { job, coord, nodes: [node] } = await setup(['pi-1']);
    const ended = new Promise((resolve) => node.once('jobEnded', resolve));
    await coord.client.publishAsync(topics.coordinatorStatus(job), encodeJson({ v: 2, job, runId: 'r1', state: 'done', round: 5, ts: Date.now() }), { qos: 1, retain: true });
    expect(await ended).toEqual({ state: 'done', round: 5, runId: 'r1' });
    await coord.client.publishAsync(topics.coordinatorStatus(job), Buffer.alloc(0), { qos: 1, retain: true });
  });
});
