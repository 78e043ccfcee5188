import { describe, expect, it } from 'vitest';
import { CoordinatorStatusSchema, ErrorCodes, RoundMetricsSchema, StageStatusSchema, decodeJson, encodeJson, parseTopic, topics } from '@fedmq/protocol';
import { createStrategy } from '../strategies/index.ts';
import { FIT, Harness, JOB, config, fedavg, publishes, tinyModel, updateEvent } from './test-kit.ts';
import type { Effect } from './types.ts';

/** Starts a harness and brings `nodes` online. */
function started(h: Harness, nodes: readonly string[]): Harness {
  for (const n of nodes) h.status(n);
  h.feed({ type: 'start' });
  return h;
}

const kinds = (effects: readonly Effect[]) => publishes(effects).map((p) => parseTopic(p.topic).kind);
const values = (ts: { data: Float32Array }[]) => ts.map((t) => Array.from(t.data));

describe('round engine: synchronous rounds', () => {
  it('waits for minAvailableNodes, then selects, sends one fit task per selected node and nothing to the others', () => {
    const h = new Harness(config({ strategy: fedavg(0.5), minAvailableNodes: 3 }));
    h.status('a');
    h.status('b');
    h.feed({ type: 'start' });
    expect(h.fitTasks()).toHaveLength(0);
    const stage = publishes(h.effects).filter((p) => parseTopic(p.topic).kind === 'stage').map((p) => decodeJson(StageStatusSchema, p.payload, 's').stage);
    expect(stage).toEqual(['waiting']);
    h.status('c');
    h.status('d');
    const tasks = h.fitTasks();
    expect(tasks).toHaveLength(2); // ⌈0.5 · 4⌉
    expect(new Set(tasks.map((t) => t.nodeId)).size).toBe(2);
    for (const t of tasks) {
      expect(t.round).toBe(1);
      expect(t.modelVersion).toBe(1);
      expect(t.config).toEqual(FIT);
    }
    // the task went to each node's own topic only
    const taskTopics = publishes(h.effects).filter((p) => parseTopic(p.topic).kind === 'nodeTask').map((p) => p.topic);
    expect(taskTopics.sort()).toEqual(tasks.map((t) => topics.nodeTask(JOB, t.nodeId)).sort());
    // the model went to its version's retained topic, before any task
    const order = kinds(h.effects);
    expect(order.indexOf('model')).toBeLessThan(order.indexOf('nodeTask'));
    const model = publishes(h.effects).find((p) => parseTopic(p.topic).kind === 'model')!;
    expect(model.topic).toBe(topics.model(JOB, 1));
    expect(model.retain).toBe(true);
  });

  it("the stage notice carries what coordinator/stage says: the fit cohort, its deadline, the nodes online", () => {
    const h = started(new Harness(config({ strategy: fedavg(0.5), minAvailableNodes: 4 })), ['a', 'b', 'c', 'd']);
    const published = publishes(h.effects).filter((p) => parseTopic(p.topic).kind === 'stage').map((p) => decodeJson(StageStatusSchema, p.payload, 's'));
    const fit = published.find((s) => s.stage === 'fit')!;
    expect(fit).toMatchObject({ round: 1, cohort: 2, online: 4, deadline: h.time + 10_000 });
    expect(h.notices('stage')).toContainEqual({ type: 'stage', round: 1, stage: 'fit', cohort: fit.cohort, deadline: fit.deadline, online: fit.online });
  });

  it('averages by numExamples, publishes the next version, clears the old one, and records the round', () => {
    const h = started(new Harness(config({ rounds: 1 })), ['a', 'b']);
    const [ta, tb] = h.fitTasks();
    h.answer(ta, 10, 1);
    h.answer(tb, 30, -1);
    const { version, weights } = h.latestModel();
    expect(version).toBe(2);
    const expected = tinyModel().map((t) => Array.from(t.data, (x) => Math.fround(x + Math.fround((10 * 1 + 30 * -1) / 40))));
    expect(values(weights)).toEqual(expected);
    // models/1 cleared (empty retained payload) once no task needs it
    const cleared = publishes(h.effects).filter((p) => p.topic === topics.model(JOB, 1) && p.payload.length === 0);
    expect(cleared).toHaveLength(1);
    expect(h.finished?.outcome).toBe('done');
    const [record] = h.machine.history;
    expect(record).toMatchObject({ round: 1, modelVersion: 2, accepted: true, mode: 'sync', selected: 2, reported: 2, failures: {}, bytesDown: 2000, federatedEval: null });
    expect(record.trainLoss).toBeCloseTo(0.5);
    const metrics = publishes(h.effects).filter((p) => parseTopic(p.topic).kind === 'roundMetrics');
    expect(RoundMetricsSchema.parse(JSON.parse(metrics[0].payload.toString())).round).toBe(1);
    const finalStatus = publishes(h.effects).filter((p) => p.topic === topics.coordinatorStatus(JOB)).at(-1)!;
    expect(decodeJson(CoordinatorStatusSchema, finalStatus.payload, 's').state).toBe('done');
    expect(h.effects.some((e) => e.type === 'persist')).toBe(true);
  });

  it('closes the fit stage at its deadline: missing nodes count as timeout, later updates are stale', () => {
    const h = started(new Harness(config({ rounds: 1 })), ['a', 'b', 'c']);
    const [ta, tb, tc] = h.fitTasks();
    h.answer(ta, 10, 1);
    expect(h.machine.history).toHaveLength(0);
    h.fireNextTimer(); // the fit deadline
    expect(h.machine.history[0]).toMatchObject({ reported: 1, selected: 3, failures: { timeout: 2 }, accepted: true });
    h.answer(tb, 10, 1); // too late: the run is over, nothing happens
    const h2 = started(new Harness(config({ rounds: 2 })), ['a', 'b', 'c']);
    const r1 = h2.fitTasks();
    h2.answer(r1[0], 10, 1);
    h2.fireNextTimer();
    h2.answer(r1[1], 10, 1); // round 1's task, during round 2
    expect(h2.rejections()).toEqual([ErrorCodes.STALE_UPDATE]);
    expect(tc.round).toBe(1);
  });

  it('counts a selected node that goes offline, closes early when the rest reported, and takes it back if it returns', () => {
    const h = started(new Harness(config({ rounds: 2 })), ['a', 'b', 'c']);
    const [ta, tb, tc] = h.fitTasks();
    h.status('c', 'offline');
    h.status('c', 'training'); // back after a lost link, still working on the task
    h.answer(ta, 10, 1);
    h.answer(tb, 10, 1);
    expect(h.machine.history).toHaveLength(0); // c still expected
    h.answer(tc, 10, 1);
    expect(h.machine.history[0]).toMatchObject({ reported: 3, failures: {} });
    const r2 = h.fitTasks().filter((t) => t.round === 2);
    h.status(r2[2].nodeId, 'offline');
    h.answer(r2[0], 10, 1);
    h.answer(r2[1], 10, 1);
    expect(h.machine.history[1]).toMatchObject({ reported: 2, failures: { offline: 1 } });
  });

  it('rejects duplicates, foreign and malformed answers with their codes and folds each valid update once', () => {
    const h = started(new Harness(config({ rounds: 1 })), ['a', 'b', 'c']);
    const [ta, tb] = h.fitTasks();
    h.answer(ta, 10, 1);
    h.answer(ta, 10, 1); // QoS 1 redelivery
    h.answer(tb, 10, 1, { nodeId: 'a' }); // a answers b's task on its own topic
    h.feed(updateEvent(tb, 10, 1, { runId: 'old-run' }));
    h.feed(updateEvent(tb, 10, 1, { job: 'other' }));
    h.feed(updateEvent(tb, 10, 1, { taskId: 999 }));
    h.feed(updateEvent(tb, 10, 1, { modelVersion: 7 }));
    h.feed(updateEvent(tb, 10, 1, { codec: 'int8' }));
    h.feed(updateEvent(tb, 10, [{ name: 'dense/kernel', shape: [4], data: new Float32Array(4) }, tinyModel()[1]]));
    h.feed(updateEvent(tb, 10, Number.NaN));
    h.feed({ type: 'message', topic: topics.nodeUpdate(JOB, 'b'), payload: Buffer.from([0xc1, 0xc1]) });
    h.feed({ type: 'message', topic: topics.nodeUpdate(JOB, 'b'), payload: Buffer.from(encodeJson({ v: 1, job: JOB })) });
    expect(h.rejections()).toEqual([
      ErrorCodes.DUPLICATE_UPDATE, ErrorCodes.NOT_SELECTED, ErrorCodes.STALE_UPDATE, ErrorCodes.WRONG_JOB, ErrorCodes.STALE_UPDATE, ErrorCodes.STALE_UPDATE,
      ErrorCodes.WRONG_CODEC, ErrorCodes.MODEL_MISMATCH, ErrorCodes.NON_FINITE, ErrorCodes.BAD_PAYLOAD, ErrorCodes.BAD_PAYLOAD,
    ]);
    h.answer(tb, 30, -1);
    h.fireNextTimer();
    const r = h.machine.history[0];
    expect(r.reported).toBe(2);
    expect(r.failures).toMatchObject({ FEDMQ_DUPLICATE_UPDATE: 1, FEDMQ_NOT_SELECTED: 1, FEDMQ_STALE_UPDATE: 3, FEDMQ_NON_FINITE: 1, timeout: 1 });
    const { weights } = h.latestModel();
    expect(values(weights)[1]).toEqual(Array.from(tinyModel()[1].data, (x) => Math.fround(x + (10 - 30) / 40)));
  });

  it('over-selection: closes once the pick reported; the extra nodes are not failures', () => {
    const h = started(new Harness(config({ rounds: 1, strategy: fedavg(0.5), overSelection: 0.5 })), ['a', 'b', 'c', 'd', 'e', 'f']);
    const tasks = h.fitTasks();
    expect(tasks).toHaveLength(5); // pick 3 + ⌈0.5 · 3⌉
    for (const t of tasks.slice(0, 3)) h.answer(t, 10, 1);
    expect(h.machine.history[0]).toMatchObject({ selected: 5, reported: 3, failures: {} });
    h.answer(tasks[3], 10, 1);
    expect(h.finished?.outcome).toBe('done');
  });

  it('fails a round with too few updates, keeps the model, retries, and aborts after maxRoundRetries', () => {
    const h = started(new Harness(config({ rounds: 1, minAcceptedUpdates: 2, maxRoundRetries: 1 })), ['a', 'b']);
    h.answer(h.fitTasks()[0], 10, 1);
    h.fireNextTimer();
    expect(h.machine.history[0]).toMatchObject({ round: 1, accepted: false, modelVersion: 1 });
    expect(h.latestModel().version).toBe(1);
    const r2 = h.fitTasks().filter((t) => t.round === 2);
    expect(r2.every((t) => t.modelVersion === 1)).toBe(true); // the same model, retried
    h.fireNextTimer();
    expect(h.finished?.outcome).toBe('failed');
    expect(h.finished?.error?.code).toBe(ErrorCodes.ROUND_FAILED);
  });

  it('counts rounds by accepted ones: a failed round is retried and the run still does `rounds` accepted rounds', () => {
    const h = started(new Harness(config({ rounds: 1, minCompletionRate: 1 })), ['a', 'b']);
    h.answer(h.fitTasks()[0], 10, 1);
    h.fireNextTimer();
    const r2 = h.fitTasks().filter((t) => t.round === 2);
    for (const t of r2) h.answer(t, 10, 1);
    expect(h.machine.history.map((r) => r.accepted)).toEqual([false, true]);
    expect(h.finished?.outcome).toBe('done');
  });

  it('central evaluation: asks for it after the model, records its result, and waits for it', () => {
    const h = started(new Harness(config({ rounds: 1, centralEval: true })), ['a', 'b']);
    for (const t of h.fitTasks()) h.answer(t, 10, 1);
    const ev = h.effects.find((e) => e.type === 'evaluate');
    expect(ev).toMatchObject({ type: 'evaluate', version: 2 });
    expect(h.machine.history).toHaveLength(0);
    h.time += 250;
    h.feed({ type: 'evaluated', version: 2, loss: 0.3, accuracy: 0.9 });
    expect(h.machine.history[0]).toMatchObject({ testLoss: 0.3, testAccuracy: 0.9 });
    expect(h.machine.history[0].phases.evalMs).toBe(250);
  });

  it('federated evaluation: evaluate tasks to ⌈f · online⌉ nodes, weighted accuracy, spread, worst decile, local-better fraction', () => {
    const h = started(new Harness(config({ rounds: 1, evaluateFraction: 1, valFraction: 0.1 })), ['a', 'b', 'c', 'd']);
    expect(h.fitTasks().every((t) => t.valFraction === 0.1)).toBe(true);
    for (const t of h.fitTasks()) h.answer(t, 10, 1);
    const ev = h.evaluateTasks();
    expect(ev).toHaveLength(4);
    expect(ev.every((t) => t.modelVersion === 2)).toBe(true);
    const acc: Record<string, [number, number, number | null]> = { a: [10, 0.9, 0.95], b: [30, 0.5, 0.4], c: [20, 0.7, null], d: [40, 0.8, 0.85] };
    for (const t of ev) h.evaluation(t, acc[t.nodeId][0], acc[t.nodeId][1], acc[t.nodeId][2]);
    const fe = h.machine.history[0].federatedEval!;
    expect(fe.numExamples).toBe(100);
    expect(fe.nodes).toBe(4);
    expect(fe.accuracy).toBeCloseTo((10 * 0.9 + 30 * 0.5 + 20 * 0.7 + 40 * 0.8) / 100);
    expect(fe.worstDecileAccuracy).toBe(0.5);
    expect(fe.localBetterFraction).toBeCloseTo(2 / 3);
    expect(fe.accuracySpread).toEqual({ min: 0.5, p10: 0.5, median: 0.7, p90: 0.9, max: 0.9 });
    expect(h.machine.history[0].testAccuracy).toBeNull(); // no central test set
  });

  it('federated evaluation closes at its deadline with those that answered', () => {
    const h = started(new Harness(config({ rounds: 1, evaluateFraction: 0.5, valFraction: 0.2 })), ['a', 'b', 'c', 'd']);
    for (const t of h.fitTasks()) h.answer(t, 10, 1);
    const ev = h.evaluateTasks();
    expect(ev).toHaveLength(2);
    h.evaluation(ev[0], 10, 0.8);
    h.fireNextTimer();
    expect(h.machine.history[0].federatedEval).toMatchObject({ nodes: 1, accuracy: 0.8 });
    h.evaluation(ev[1], 10, 0.8);
    expect(h.rejections()).toEqual([]); // the run is over: nothing more is looked at
  });

  it('stop closes the open stage now, finishes the round, and ends the run as stopped', () => {
    const h = started(new Harness(config({ rounds: 5 })), ['a', 'b']);
    h.answer(h.fitTasks()[0], 10, 1);
    h.feed({ type: 'stop' });
    expect(h.machine.history).toHaveLength(1);
    expect(h.finished?.outcome).toBe('stopped');
    const waiting = new Harness(config());
    waiting.feed({ type: 'start' });
    waiting.feed({ type: 'stop' });
    expect(waiting.finished?.outcome).toBe('stopped');
    expect(waiting.machine.history).toHaveLength(0);
  });

  it('republishes the models in use, the status and the unanswered tasks after a reconnect', () => {
    const h = started(new Harness(config()), ['a', 'b']);
    const [ta] = h.fitTasks();
    h.answer(ta, 10, 1);
    const out = h.feed({ type: 'reconnected' });
    expect(kinds(out)).toEqual(['coordinatorStatus', 'model', 'nodeTask']);
    expect(h.tasks(out)[0].nodeId).not.toBe(ta.nodeId);
  });

  it('knows which nodes may send update chunks: those with an open, unanswered fit task', () => {
    const h = started(new Harness(config({ strategy: fedavg(0.5) })), ['a', 'b', 'c', 'd']);
    const [t] = h.fitTasks();
    expect(h.machine.expectsUpdate(t.nodeId)).toBe(true);
    const other = ['a', 'b', 'c', 'd'].find((n) => !h.fitTasks().some((x) => x.nodeId === n))!;
    expect(h.machine.expectsUpdate(other)).toBe(false);
    h.answer(t, 10, 1);
    expect(h.machine.expectsUpdate(t.nodeId)).toBe(false);
  });

  it('tells protocol v1 nodes apart: their status is refused with FEDMQ_UNSUPPORTED_VERSION, and a v1 beacon is published for them', () => {
    const h = new Harness(config());
    h.feed({ type: 'message', topic: topics.legacyNodeStatus(JOB, 'old'), payload: encodeJson({ v: 1, job: JOB, nodeId: 'old', state: 'idle', ts: 1 }) });
    expect(h.rejections()).toEqual([ErrorCodes.UNSUPPORTED_VERSION]);
    expect(h.machine.onlineNodes()).toEqual([]);
    h.feed({ type: 'start' });
    const beacon = publishes(h.effects).find((p) => p.topic === topics.legacyCoordinatorStatus(JOB))!;
    expect(JSON.parse(beacon.payload.toString()).v).toBe(2);
    expect(beacon.retain).toBe(true);
  });

  it('a resumed run continues the same selections and the same model as an uninterrupted one', () => {
    const run = (h: Harness, from: number, to: number) => {
      for (let r = from; r <= to; r++) {
        for (const t of h.fitTasks().filter((x) => x.round === r)) h.answer(t, 10 + t.nodeId.charCodeAt(0), (t.nodeId.charCodeAt(0) % 5) / 10 - 0.2);
      }
    };
    const nodes = ['a', 'b', 'c', 'd', 'e'];
    const strategy = () => createStrategy({ strategy: 'fedavgm', fraction: 0.4, minFitNodes: 1, fitConfig: FIT });
    const whole = started(new Harness(config({ rounds: 4, strategy: strategy() })), nodes);
    run(whole, 1, 4);
    const first = started(new Harness(config({ rounds: 4, strategy: strategy() })), nodes);
    run(first, 1, 2);
    const cp = first.effects.filter((e) => e.type === 'persist').at(-1)!;
    if (cp.type !== 'persist') throw new Error('no checkpoint');
    const resumed = started(new Harness(config({ rounds: 4, strategy: strategy() }), tinyModel(), cp.checkpoint), nodes);
    run(resumed, 3, 4);
    expect(resumed.fitTasks().map((t) => [t.round, t.nodeId])).toEqual(whole.fitTasks().filter((t) => t.round > 2).map((t) => [t.round, t.nodeId]));
    expect(values(resumed.machine.global)).toEqual(values(whole.machine.global));
    expect(resumed.machine.history.map((r) => r.round)).toEqual([1, 2, 3, 4]);
  });

  it('refuses bad configurations with FEDMQ_BAD_CONFIG', () => {
    for (const bad of [{ rounds: 0 }, { minAvailableNodes: 0 }, { deadlineMs: 0 }, { evaluateFraction: 0.5, valFraction: 0 }, { valFraction: 0.95 }, { minCompletionRate: 2 }]) {
      expect(() => new Harness(config(bad))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    }
    expect(() => new Harness(config({ mode: 'async' }))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});

describe('round engine: node statuses during a stage', () => {
  const status = (h: Harness, nodeId: string, state: 'idle' | 'training' | 'uploading' | 'offline', taskId?: number) =>
    h.feed({ type: 'message', topic: topics.nodeStatus(JOB, nodeId), payload: encodeJson({ v: 2, job: JOB, nodeId, state, ts: h.time, taskId }) });

  it('a node idle after its task without an answer gave it up: the stage does not wait for it (failures.failed)', () => {
    const h = started(new Harness(config({ rounds: 1 })), ['a', 'b', 'c']);
    const [ta, tb, tc] = h.fitTasks();
    h.answer(ta, 10, 1);
    h.answer(tb, 10, 1);
    status(h, tc.nodeId, 'idle', tc.taskId - 1); // a status of its previous task: not about this one
    expect(h.machine.history).toHaveLength(0);
    status(h, tc.nodeId, 'idle', tc.taskId);
    expect(h.machine.history[0]).toMatchObject({ reported: 2, failures: { failed: 1 } });
  });

  it('a status of its task re-sent after the Last Will brings a node back, and its idle then gives the task up', () => {
    const h = started(new Harness(config({ rounds: 1 })), ['a', 'b', 'c']);
    const [ta, tb, tc] = h.fitTasks();
    h.answer(ta, 10, 1);
    status(h, tb.nodeId, 'offline');
    status(h, tb.nodeId, 'uploading', tb.taskId); // QoS 1 redelivery after the reconnect: b is back
    h.answer(tc, 10, 1);
    expect(h.machine.history).toHaveLength(0); // b is waited for again
    status(h, tb.nodeId, 'idle', tb.taskId);
    expect(h.machine.history[0]).toMatchObject({ reported: 2, failures: { failed: 1 } });
  });
});

describe('round engine: nodes whose data does not fit the model (NodeStatus dataMismatch)', () => {
  const mismatch = (model: string) => ({ code: 'FEDMQ_MODEL_MISMATCH', model, message: 'local data: 9 examples of 5 features, 3 classes (labels 0..2); model tiny takes 4 features and 2 classes' });
  const status = (h: Harness, nodeId: string, o: { taskId?: number; dataMismatch?: ReturnType<typeof mismatch> } = {}) =>
    h.feed({ type: 'message', topic: topics.nodeStatus(JOB, nodeId), payload: encodeJson({ v: 2, job: JOB, nodeId, state: 'idle', ts: h.time, ...o }) });

  it('a selected node that gives its task up with dataMismatch: the round does not wait, the node is reported once and not selected again', () => {
    const h = started(new Harness(config({ rounds: 2 })), ['a', 'b', 'c']);
    const [ta, tb, tc] = h.fitTasks();
    h.answer(ta, 10, 1);
    h.answer(tb, 10, 1);
    status(h, 'c', { taskId: tc.taskId, dataMismatch: mismatch('tiny') });
    expect(h.machine.history[0]).toMatchObject({ accepted: true, selected: 3, reported: 2, failures: { failed: 1, FEDMQ_MODEL_MISMATCH: 1 } });
    expect(h.rejections()).toEqual([ErrorCodes.MODEL_MISMATCH]);
    const notice = h.notices('rejected')[0];
    expect(notice).toMatchObject({ nodeId: 'c', error: { message: expect.stringContaining('node c excluded from selection: its data does not fit model tiny (FEDMQ_MODEL_MISMATCH: local data: 9 examples') } });
    // round 2: c is online but not selected; the same status again is not reported again
    status(h, 'c', { taskId: tc.taskId, dataMismatch: mismatch('tiny') });
    const round2 = h.fitTasks().filter((t) => t.round === 2);
    expect(round2.map((t) => t.nodeId).sort()).toEqual(['a', 'b']);
    expect(h.machine.onlineNodes()).toEqual(['a', 'b', 'c']);
    expect(h.machine.eligibleNodes()).toEqual(['a', 'b']);
    for (const t of round2) h.answer(t, 10, 1);
    expect(h.machine.history[1]).toMatchObject({ selected: 2, reported: 2, failures: {} });
    expect(h.rejections()).toEqual([ErrorCodes.MODEL_MISMATCH]);
  });

  it('waits for eligible nodes; a mismatch with another model excludes nothing; a status without it makes the node eligible again', () => {
    const h = new Harness(config({ rounds: 1, minAvailableNodes: 2 }));
    status(h, 'a');
    status(h, 'b', { dataMismatch: mismatch('tiny') });
    h.feed({ type: 'start' });
    expect(h.fitTasks()).toEqual([]); // 2 online, 1 eligible
    status(h, 'c', { dataMismatch: mismatch('mnist-2nn') }); // a retained status from a job of another model
    expect(h.fitTasks().map((t) => t.nodeId).sort()).toEqual(['a', 'c']);
    status(h, 'b'); // restarted with data that fits
    expect(h.machine.eligibleNodes()).toEqual(['a', 'b', 'c']);
    expect(h.rejections()).toEqual([ErrorCodes.MODEL_MISMATCH]);
  });

  it('async mode (FedBuff) does not send tasks to an excluded node', () => {
    const h = new Harness(config({ mode: 'async', rounds: 1, minAvailableNodes: 1, async: { bufferSize: 1, concurrency: 3, staleness: { kind: 'constant' }, maxStaleness: 5 } }));
    status(h, 'a');
    status(h, 'b', { dataMismatch: mismatch('tiny') });
    h.feed({ type: 'start' });
    expect(h.fitTasks().map((t) => t.nodeId)).toEqual(['a']);
  });
});
