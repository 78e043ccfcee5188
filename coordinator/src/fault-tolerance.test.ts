import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { initBackend } from '@fedmq/ml';
import {
  ErrorCodes, PROTOCOL_VERSION, RoundTaskSchema, decodeGlobalModel, decodeJson, encodeJson, encodePacked, float32Codec, isFedmqError, topics,
  weightsFromWire, type NamedTensor, type RoundTask, type UpdateMessage,
} from '@fedmq/protocol';
import { Coordinator, type CoordinatorCheckpoint, type CoordinatorOptions } from './coordinator.ts';
import { FedAvg } from './strategies/fedavg.ts';
import { FedAvgM } from './strategies/fedavgm.ts';

const JOB = 'ft-test';
const FIT = { epochs: 1, batchSize: 8, learningRate: 0.1 };
let broker: RunningBroker | undefined;
const coordinators: Coordinator[] = [];
const clients: MqttClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(coordinators.splice(0).map((c) => c.close()));
  await Promise.all(clients.splice(0).map((c) => c.endAsync()));
  await broker?.close();
  broker = undefined;
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/**
 * A scripted node: announces itself, keeps the latest global model, and answers each task that
 * selects it with delta = 0.1 · (k − w) elementwise (k its constant), unless `answer` says no.
 */
async function scriptedNode(url: string, nodeId: string, k: number, answer: (task: RoundTask) => boolean = () => true) {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: `scripted:${nodeId}` });
  clients.push(c);
  let global: { runId: string; version: number; weights: NamedTensor[] } | undefined;
  const answered: number[] = [];
  c.on('message', (t, p) => {
    if (p.length === 0) return;
    if (t === topics.model(JOB)) {
      const m = decodeGlobalModel(p);
      global = { runId: m.runId, version: m.version, weights: weightsFromWire(m.tensors) };
      return;
    }
    const task = decodeJson(RoundTaskSchema, p, 'task');
    if (!task.selected.includes(nodeId) || !answer(task) || !global || global.version !== task.modelVersion || global.runId !== task.runId) return;
    const delta = global.weights.map((w) => ({ ...w, data: Float32Array.from(w.data, (x) => 0.1 * (k - x)) }));
    const u: UpdateMessage = {
      v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId, round: task.round, modelVersion: task.modelVersion, numExamples: 10 * k,
      codec: 'float32', kind: 'delta', metrics: { loss: 1, trainMs: 1 }, tensors: float32Codec.encode(delta, {}, undefined, Math.random), ts: Date.now(),
    };
    answered.push(task.round);
    void c.publishAsync(topics.nodeUpdate(JOB, nodeId), encodePacked(u), { qos: 1 });
  });
  // the model first: the retained task of a round may name it
  await c.subscribeAsync(topics.model(JOB), { qos: 1 });
  await c.subscribeAsync(topics.task(JOB), { qos: 1 });
  await c.publishAsync(topics.nodeStatus(JOB, nodeId), encodeJson({ v: 1, job: JOB, nodeId, state: 'idle', ts: Date.now(), numExamples: 10 * k }), { qos: 1, retain: true });
  return { answered };
}

function coordinator(o: Partial<CoordinatorOptions> & Pick<CoordinatorOptions, 'rounds' | 'strategy'>): Coordinator {
  const c = new Coordinator({ brokerUrl: broker!.url, job: JOB, model: 'mlp-3x2', minNodes: 4, deadlineMs: 60_000, seed: 5, reconnect: false, ...o });
  coordinators.push(c);
  return c;
}

const fedavg = (fractionFit = 1, minFitNodes = 1) => new FedAvg({ fractionFit, minFitNodes, fitConfig: FIT });

describe('round acceptance', () => {
  it('keeps the model after a round with too few updates and retries it as the next round', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const c = coordinator({ rounds: 1, strategy: fedavg(), minFitNodes: 3, deadlineMs: 400 });
    const done = c.run();
    // in round 1 only a and b answer; from round 2 on everybody does
    for (const [id, k] of [['a', 1], ['b', 2], ['c', 3], ['d', 4]] as const) await scriptedNode(broker.url, id, k, (t) => t.round > 1 || id < 'c');
    const history = await done;
    expect(history.map((r) => [r.round, r.accepted, r.reported])).toEqual([[1, false, 2], [2, true, 4]]);
    expect(history[0].failures).toEqual({ timeout: 2 });
    // the failed round published no model: round 2 trained on the same version
    expect(history[1].modelVersion).toBe(history[0].modelVersion + 1);
  });

  it('aborts with FEDMQ_ROUND_FAILED after maxRoundRetries failed rounds in a row, model unchanged', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const c = coordinator({ rounds: 3, strategy: fedavg(), minCompletionRate: 0.75, maxRoundRetries: 1, deadlineMs: 300 });
    const rounds: boolean[] = [];
    c.on('round', (r) => rounds.push(r.accepted));
    const done = c.run().then(() => undefined, (err: unknown) => err);
    let before: NamedTensor[] | undefined;
    c.once('phase', () => { before = c.globalWeights(); });
    for (const [id, k] of [['a', 1], ['b', 2], ['c', 3], ['d', 4]] as const) await scriptedNode(broker.url, id, k, () => id === 'a');
    const err = await done;
    expect(isFedmqError(err, ErrorCodes.ROUND_FAILED)).toBe(true);
    expect(rounds).toEqual([false, false]);
    expect(c.globalWeights()).toEqual(before);
  });

  it('over-selects and closes the round once the strategy\'s pick has reported', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    // FedAvg picks 2 of 4; over-selection 1 selects all 4; d never answers, c answers only after a and b
    const c = coordinator({ rounds: 1, strategy: fedavg(0.5, 2), overSelection: 1 });
    const done = c.run();
    const accepted: string[] = [];
    c.on('accepted', (a) => accepted.push(a.nodeId));
    for (const [id, k] of [['a', 1], ['b', 2]] as const) await scriptedNode(broker.url, id, k);
    for (const [id, k] of [['c', 3], ['d', 4]] as const) await scriptedNode(broker.url, id, k, () => false);
    const [record] = await done;
    expect(record.selected).toBe(4);
    expect(record.accepted).toBe(true);
    expect(accepted.sort()).toEqual(['a', 'b']);
    expect(record.failures).toEqual({}); // d still training is not a failure: the round had what it needed
  });
});

describe('checkpoints', () => {
  it('a run resumed from the checkpoint of round 2 ends with the same model, bit for bit, as an uninterrupted one', async () => {
    await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    for (const [id, k] of [['a', 1], ['b', 2], ['c', 3], ['d', 4]] as const) await scriptedNode(broker.url, id, k);
    // server momentum and a random half of the nodes each round: state and random draws both matter
    const strategy = () => new FedAvgM({ fractionFit: 0.5, minFitNodes: 2, fitConfig: FIT, serverLearningRate: 1, serverMomentum: 0.9 });

    const whole = coordinator({ rounds: 4, strategy: strategy(), runId: 'whole' });
    await whole.run();
    const expected = whole.globalWeights();

    const dir = await mkdtemp(join(tmpdir(), 'fedmq-ckpt-'));
    dirs.push(dir);
    const first = coordinator({ rounds: 2, strategy: strategy(), runId: 'first', checkpointDir: dir });
    await first.run();
    await first.close();
    const cp = await Coordinator.loadCheckpoint(dir);
    expect(cp.round).toBe(2);
    expect(cp.strategyState).not.toBeNull();
    const resumed = coordinator({ rounds: 4, strategy: strategy(), runId: 'resumed', checkpointDir: dir, resume: cp });
    const history = await resumed.run();
    expect(history.map((r) => r.round)).toEqual([1, 2, 3, 4]);
    const got = resumed.globalWeights();
    for (let t = 0; t < expected.length; t++) expect(Buffer.from(got[t].data.buffer).equals(Buffer.from(expected[t].data.buffer))).toBe(true);
    // and the momentum mattered: without the saved state the resumed model differs
    const fresh = coordinator({ rounds: 4, strategy: strategy(), runId: 'stateless', resume: { ...cp, strategyState: null } });
    await fresh.run();
    expect(fresh.globalWeights()[0].data).not.toEqual(expected[0].data);
  });

  it('refuses a missing checkpoint, and one of another job, model, strategy or seed, with FEDMQ_CHECKPOINT', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedmq-ckpt-'));
    dirs.push(dir);
    await expect(Coordinator.loadCheckpoint(dir)).rejects.toMatchObject({ code: ErrorCodes.CHECKPOINT });
    const cp = {
      format: 'fedmq-checkpoint', v: 1, job: JOB, runId: 'r', model: 'mlp-3x2', seed: 5, round: 1, modelVersion: 2, failedInARow: 0, rngDraws: 0,
      strategy: 'fedavgm', strategyState: null, history: [], weights: [], ts: 0,
    } satisfies CoordinatorCheckpoint;
    const make = (resume: CoordinatorCheckpoint) => new Coordinator({ brokerUrl: 'mqtt://127.0.0.1:1', job: JOB, model: 'mlp-3x2', rounds: 2, minNodes: 1, deadlineMs: 1000, seed: 5, strategy: fedavg(), resume: { ...resume, weights: [] } });
    expect(() => make({ ...cp, strategy: 'fedavg' })).not.toThrow();
    for (const patch of [{ strategy: 'fedavgm' }, { job: 'other' }, { model: 'mnist-2nn' }, { seed: 6 }]) {
      expect(() => make({ ...cp, strategy: 'fedavg', ...patch })).toThrow(expect.objectContaining({ code: ErrorCodes.CHECKPOINT }));
    }
  });
});
