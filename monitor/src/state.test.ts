import { describe, expect, it } from 'vitest';
import {
  ErrorCodes, topicFilter, topics, type CoordinatorStatus, type FederatedEval, type ModelMeta, type NodeStatus, type RoundMetrics, type StageStatus,
} from '@fedmq/protocol';
import { FleetState, acceptedRounds, monitorTopics, nodeCounts, type MonitorEvent } from './state.ts';

const J = 'job-a';
const json = (x: unknown) => Buffer.from(JSON.stringify(x));
const node = (nodeId: string, state: NodeStatus['state'], ts: number, extra: Partial<NodeStatus> = {}): NodeStatus => ({
  v: 2, job: J, nodeId, state, ts, numExamples: 600, device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3793, backend: 'wasm' }, ...extra,
});
const coord = (runId: string, state: CoordinatorStatus['state'], round: number, ts: number, extra: Partial<CoordinatorStatus> = {}): CoordinatorStatus => ({
  v: 2, job: J, runId, state, mode: 'sync', round, rounds: 3, ts, ...extra,
});
const stage = (runId: string, round: number, name: StageStatus['stage'], ts: number, extra: Partial<StageStatus> = {}): StageStatus => ({
  v: 2, job: J, runId, round, stage: name, cohort: name === 'waiting' ? 0 : 2, online: 3, ...(name === 'fit' || name === 'evaluate' ? { deadline: ts + 60_000 } : {}), ts, ...extra,
});
const fedEval = (accuracy: number): FederatedEval => ({
  loss: 0.3, accuracy, numExamples: 120, nodes: 3, worstDecileAccuracy: accuracy - 0.1, localBetterFraction: 1 / 3,
  accuracySpread: { min: accuracy - 0.1, p10: accuracy - 0.06, median: accuracy, p90: accuracy + 0.04, max: accuracy + 0.05 },
});
const metrics = (runId: string, round: number, ts: number, testAccuracy: number | null = 0.5 + round / 10, extra: Partial<RoundMetrics> = {}): RoundMetrics => ({
  v: 2, job: J, runId, round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 2, reported: 2, failures: {}, trainLoss: 1 / round,
  testLoss: testAccuracy === null ? null : 0.9 / round, testAccuracy, federatedEval: null, bytesDown: 1_600_000, bytesUp: 1_594_594, durationMs: 4332.25,
  phases: { trainMs: 3720.1, aggregateMs: 12.4, evalMs: 599.7 }, ts, ...extra,
});
const meta = (runId: string, version: number, ts: number): ModelMeta => ({
  v: 2, job: J, runId, version, round: version - 1, model: 'mnist-2nn', bytes: 797_394, params: 199_210, sha256: 'a'.repeat(64), ts,
});
const types = (es: MonitorEvent[]) => es.map((e) => e.type);

describe('FleetState', () => {
  it('subscribes only to the topics a monitor may read (never models, tasks, updates or evaluation results), for one job or every job', () => {
    expect(monitorTopics(J)).toEqual([
      topics.coordinatorStatus(J), topics.stage(J), topics.modelMeta(J), topicFilter('nodeStatus', J), topicFilter('roundMetrics', J), topics.latestMetrics(J),
    ]);
    expect(monitorTopics(J)).toEqual([
      `fedmq/v2/${J}/coordinator/status`, `fedmq/v2/${J}/coordinator/stage`, `fedmq/v2/${J}/model/meta`, `fedmq/v2/${J}/nodes/+/status`,
      `fedmq/v2/${J}/rounds/+/metrics`, `fedmq/v2/${J}/metrics`,
    ]);
    expect(monitorTopics()).toContain('fedmq/v2/+/nodes/+/status');
    for (const t of [...monitorTopics(J), ...monitorTopics()]) expect(t).not.toMatch(/\/models\b|\/task$|\/update$|\/evaluation$|#|fedmq\/v1/);
    expect(() => monitorTopics('bad/job')).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it('emits a node event for the first status and once per state change (evaluating included), and keeps the latest status', () => {
    const s = new FleetState();
    const t = topics.nodeStatus(J, 'pi-1');
    const seq: NodeStatus['state'][] = ['idle', 'idle', 'training', 'training', 'uploading', 'idle', 'evaluating', 'evaluating', 'idle', 'offline', 'offline'];
    const events = seq.flatMap((state, i) => s.apply(t, json(node('pi-1', state, 1000 + i)), { now: 5000 + i }));
    expect(events.map((e) => (e.type === 'node' ? [e.previous ?? null, e.status.state] : e.type))).toEqual([
      [null, 'idle'], ['idle', 'training'], ['training', 'uploading'], ['uploading', 'idle'], ['idle', 'evaluating'], ['evaluating', 'idle'], ['idle', 'offline'],
    ]);
    const n = s.jobs.get(J)!.nodes.get('pi-1')!;
    expect(n.status.ts).toBe(1010);
    expect(n.lastSeen).toBe(5010); // live message: the monitor's clock
    s.apply(t, json(node('pi-1', 'offline', 1011)), { now: 9999, retained: true });
    expect(s.jobs.get(J)!.nodes.get('pi-1')!.lastSeen).toBe(1011); // retained: the node's own ts
  });

  it('counts nodes by state, evaluating included', () => {
    const s = new FleetState();
    for (const [id, st] of [['a', 'idle'], ['b', 'evaluating'], ['c', 'evaluating'], ['d', 'offline']] as const) s.apply(topics.nodeStatus(J, id), json(node(id, st, 1)));
    expect(nodeCounts(s.job(J))).toEqual({ online: 3, byState: { idle: 1, training: 0, evaluating: 2, uploading: 0, offline: 1 } });
  });

  it('turns invalid payloads into invalid events with their FEDMQ code and never throws', () => {
    const s = new FleetState();
    const cases: [string, Uint8Array, string][] = [
      [topics.nodeStatus(J, 'pi-1'), Buffer.from('{not json'), ErrorCodes.BAD_PAYLOAD],
      [topics.nodeStatus(J, 'pi-1'), json({ ...node('pi-1', 'idle', 1), state: 'sleeping' }), ErrorCodes.SCHEMA],
      [topics.nodeStatus(J, 'pi-1'), json({ ...node('pi-1', 'idle', 1), v: 1 }), ErrorCodes.UNSUPPORTED_VERSION],
      [topics.nodeStatus(J, 'pi-1'), json(node('pi-2', 'idle', 1)), ErrorCodes.SCHEMA], // nodeId ≠ topic
      [topics.nodeStatus('job-b', 'pi-1'), json(node('pi-1', 'idle', 1)), ErrorCodes.WRONG_JOB],
      [topics.roundMetrics(J, 2), json(metrics('r1', 1, 1)), ErrorCodes.SCHEMA], // round ≠ topic
      [topics.roundMetrics(J, 1), json({ ...metrics('r1', 1, 1), accepted: undefined }), ErrorCodes.SCHEMA], // v2 requires accepted
      [topics.roundMetrics(J, 1), json({ ...metrics('r1', 1, 1), federatedEval: { accuracy: 0.9 } }), ErrorCodes.SCHEMA],
      [topics.coordinatorStatus(J), json({ v: 2, job: J }), ErrorCodes.SCHEMA],
      [topics.coordinatorStatus(J), json(coord('r1', 'training' as CoordinatorStatus['state'], 1, 1)), ErrorCodes.SCHEMA], // a v1 phase is no v2 state
      [topics.stage(J), Buffer.from('[]'), ErrorCodes.SCHEMA],
      [topics.stage(J), json({ ...stage('r1', 1, 'fit', 1), stage: 'shuffle' }), ErrorCodes.SCHEMA],
      [topics.stage(J), json({ ...stage('r1', 1, 'fit', 1), job: 'job-b' }), ErrorCodes.WRONG_JOB],
      ['fedmq/v2/job-a/nodes/pi-1/whatever', json({}), ErrorCodes.BAD_TOPIC],
      ['fedmq/v1/job-a/task', json({}), ErrorCodes.BAD_TOPIC],
      ['other/topic', json({}), ErrorCodes.BAD_TOPIC],
    ];
    for (const [topic, payload, code] of cases) {
      const events = s.apply(topic, payload);
      expect(events, topic).toHaveLength(1);
      expect(events[0]).toMatchObject({ type: 'invalid', code });
    }
    expect(s.jobs.get(J)?.nodes.size ?? 0).toBe(0);
    expect(s.jobs.get(J)?.coordinator).toBeUndefined();
    expect(s.jobs.get(J)?.stage).toBeUndefined();
    expect(s.jobs.get(J)?.rounds ?? []).toEqual([]);
  });

  it('ignores topics a monitor does not read (models, tasks, updates, evaluation results, v1 status) and empty payloads', () => {
    const s = new FleetState();
    expect(s.apply(topics.model(J, 1), Buffer.from([0x89, 0xa1]))).toEqual([]);
    expect(s.apply(topics.modelChunk(J, 1, 0), Buffer.from([0x89]))).toEqual([]);
    expect(s.apply(topics.nodeTask(J, 'pi-1'), json({ v: 2 }))).toEqual([]);
    expect(s.apply(topics.nodeUpdate(J, 'pi-1'), Buffer.from([0x8c]))).toEqual([]);
    expect(s.apply(topics.nodeEvaluation(J, 'pi-1'), json({ v: 2 }))).toEqual([]);
    expect(s.apply(topics.legacyCoordinatorStatus(J), json({ v: 1 }))).toEqual([]);
    expect(s.apply(topics.legacyNodeStatus(J, 'pi-1'), json({ v: 1 }))).toEqual([]);
    expect(s.apply(topics.coordinatorStatus(J), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.stage(J), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.nodeStatus(J, 'pi-9'), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.roundMetrics(J, 1), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.modelMeta(J), Buffer.alloc(0))).toEqual([]);
  });

  it('keeps round metrics sorted, once per round (retained redelivery and the latest-metrics twin are not repeated)', () => {
    const s = new FleetState();
    const m2 = metrics('r1', 2, 2000);
    expect(types(s.apply(topics.roundMetrics(J, 2), json(m2)))).toEqual(['run', 'round']);
    expect(types(s.apply(topics.roundMetrics(J, 1), json(metrics('r1', 1, 1000))))).toEqual(['round']);
    expect(s.apply(topics.roundMetrics(J, 2), json(m2), { retained: true })).toEqual([]);
    expect(s.apply(topics.latestMetrics(J), json(m2))).toEqual([]);
    const e = s.apply(topics.roundMetrics(J, 3), json(metrics('r1', 3, 3000, 0.91)));
    expect(e).toEqual([{ type: 'round', job: J, metrics: expect.objectContaining({ round: 3, testAccuracy: 0.91 }) }]);
    // the latest-metrics topic alone (a monitor that missed the per-round one) adds the round too
    expect(types(s.apply(topics.latestMetrics(J), json(metrics('r1', 4, 4000))))).toEqual(['round']);
    expect(s.jobs.get(J)!.rounds.map((r) => r.round)).toEqual([1, 2, 3, 4]);
  });

  it('keeps the v2 round fields: federated evaluation, a job without a test set, failed rounds and async staleness', () => {
    const s = new FleetState();
    s.apply(topics.roundMetrics(J, 1), json(metrics('r1', 1, 1000, null, { federatedEval: fedEval(0.81) })));
    s.apply(topics.roundMetrics(J, 2), json(metrics('r1', 2, 2000, null, { accepted: false, reported: 0, trainLoss: null, failures: { timeout: 2 }, federatedEval: null })));
    s.apply(topics.roundMetrics(J, 3), json(metrics('r1', 3, 3000, null, { federatedEval: fedEval(0.9), mode: 'async', staleness: { mean: 1.5, max: 3 } })));
    const job = s.jobs.get(J)!;
    expect(job.rounds.map((r) => [r.round, r.accepted, r.testAccuracy, r.federatedEval?.accuracy ?? null])).toEqual([
      [1, true, null, 0.81], [2, false, null, null], [3, true, null, 0.9],
    ]);
    expect(job.rounds[0].federatedEval).toEqual(fedEval(0.81)); // every field, spread included
    expect(job.rounds[2].staleness).toEqual({ mean: 1.5, max: 3 });
    expect(acceptedRounds(job)).toBe(2); // the failed round does not count
  });

  it('emits coordinator events on changes of run, state, mode, round or rounds only', () => {
    const s = new FleetState();
    const t = topics.coordinatorStatus(J);
    const seq = [
      coord('r1', 'running', 0, 100), coord('r1', 'running', 0, 100), coord('r1', 'running', 0, 150), coord('r1', 'done', 3, 900), coord('r1', 'done', 3, 900),
      coord('r1', 'offline', 3, 950),
    ];
    const events = seq.flatMap((c) => s.apply(t, json(c))).filter((e) => e.type === 'coordinator');
    expect(events.map((e) => (e.type === 'coordinator' ? `${e.previous ?? '-'}>${e.status.state}@${e.status.round}` : ''))).toEqual([
      '->running@0', 'running>done@3', 'done>offline@3',
    ]);
    expect(s.jobs.get(J)!.coordinator).toMatchObject({ state: 'offline', mode: 'sync', rounds: 3 });
  });

  it('follows the engine through its stages: one stage event per change, redeliveries and older stages ignored, an empty payload clears it', () => {
    const s = new FleetState();
    const t = topics.stage(J);
    expect(s.apply(t, json(stage('r1', 1, 'waiting', 100, { online: 1 })))).toEqual([
      { type: 'run', job: J, runId: 'r1', previousRunId: undefined },
      { type: 'stage', job: J, stage: expect.objectContaining({ round: 1, stage: 'waiting', online: 1 }), previous: undefined },
    ]);
    expect(types(s.apply(t, json(stage('r1', 1, 'waiting', 110, { online: 3 }))))).toEqual(['stage']); // more nodes online
    expect(s.apply(t, json(stage('r1', 1, 'waiting', 110, { online: 3 })), { retained: true })).toEqual([]); // redelivered
    const seq = [stage('r1', 1, 'select', 200), stage('r1', 1, 'fit', 210), stage('r1', 1, 'aggregate', 400), stage('r1', 1, 'evaluate', 410), stage('r1', 2, 'select', 600), stage('r1', 2, 'fit', 610)];
    const events = seq.flatMap((x) => s.apply(t, json(x)));
    expect(events.map((e) => (e.type === 'stage' ? `${e.previous ?? '-'}>${e.stage?.stage}@${e.stage?.round}` : e.type))).toEqual([
      'waiting>select@1', 'select>fit@1', 'fit>aggregate@1', 'aggregate>evaluate@1', 'evaluate>select@2', 'select>fit@2',
    ]);
    expect(s.jobs.get(J)!.stage).toMatchObject({ round: 2, stage: 'fit', cohort: 2, online: 3, deadline: 60_610 });
    expect(s.apply(t, json(stage('r1', 1, 'evaluate', 410)))).toEqual([]); // an older stage of the run, out of order
    expect(s.jobs.get(J)!.stage).toMatchObject({ round: 2, stage: 'fit' });
    expect(s.apply(t, Buffer.alloc(0))).toEqual([{ type: 'stage', job: J, stage: null, previous: 'fit' }]);
    expect(s.jobs.get(J)!.stage).toBeUndefined();
  });

  it('a new run (newer runId) resets the rounds, stage and model; a stale retained message of an old run is ignored', () => {
    const s = new FleetState();
    s.apply(topics.coordinatorStatus(J), json(coord('r1', 'running', 0, 1000)));
    s.apply(topics.stage(J), json(stage('r1', 2, 'fit', 2650)));
    s.apply(topics.modelMeta(J), json(meta('r1', 2, 1500)));
    s.apply(topics.roundMetrics(J, 1), json(metrics('r1', 1, 1600)));
    s.apply(topics.roundMetrics(J, 2), json(metrics('r1', 2, 2600)));
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'idle', 2700)));
    const job = s.jobs.get(J)!;
    expect(job.rounds).toHaveLength(2);
    expect(job.stage).toBeDefined();

    const e = s.apply(topics.coordinatorStatus(J), json(coord('r2', 'running', 0, 5000)));
    expect(e).toEqual([
      { type: 'run', job: J, runId: 'r2', previousRunId: 'r1' },
      { type: 'coordinator', job: J, status: expect.objectContaining({ runId: 'r2', state: 'running' }), previous: 'running' },
    ]);
    expect(job.runId).toBe('r2');
    expect(job.rounds).toEqual([]);
    expect(job.model).toBeUndefined();
    expect(job.stage).toBeUndefined();
    expect(job.nodes.size).toBe(1); // nodes outlive runs

    // an old run's retained metrics and stage (e.g. delivered on a resubscribe) do not come back
    expect(s.apply(topics.roundMetrics(J, 2), json(metrics('r1', 2, 2600)), { retained: true })).toEqual([]);
    expect(s.apply(topics.stage(J), json(stage('r1', 2, 'fit', 2650)), { retained: true })).toEqual([]);
    expect(job.stage).toBeUndefined();
    expect(types(s.apply(topics.roundMetrics(J, 1), json(metrics('r2', 1, 6000))))).toEqual(['round']);
    expect(types(s.apply(topics.stage(J), json(stage('r2', 2, 'select', 6100))))).toEqual(['stage']);
    expect(job.rounds.map((r) => [r.runId, r.round])).toEqual([['r2', 1]]);
    expect(acceptedRounds(job)).toBe(1);
  });

  it('a stage of a newer run starts the run before its coordinator status arrives', () => {
    const s = new FleetState();
    s.apply(topics.coordinatorStatus(J), json(coord('r1', 'done', 3, 1000)));
    expect(types(s.apply(topics.stage(J), json(stage('r2', 1, 'waiting', 2000))))).toEqual(['run', 'stage']);
    const job = s.jobs.get(J)!;
    expect(job.runId).toBe('r2');
    expect(job.coordinator).toBeUndefined(); // r1's status no longer describes the run
  });

  it('keeps jobs apart', () => {
    const s = new FleetState();
    s.apply(topics.nodeStatus('job-a', 'pi-1'), json(node('pi-1', 'idle', 1)));
    s.apply(topics.nodeStatus('job-b', 'pi-1'), json({ ...node('pi-1', 'training', 1), job: 'job-b' }));
    expect([...s.jobs.keys()].sort()).toEqual(['job-a', 'job-b']);
    expect(s.jobs.get('job-b')!.nodes.get('pi-1')!.status.state).toBe('training');
    expect(s.apply(topics.nodeStatus('job-b', 'pi-1'), Buffer.alloc(0))).toEqual([{ type: 'nodeRemoved', job: 'job-b', nodeId: 'pi-1' }]);
    expect(s.jobs.get('job-b')!.nodes.size).toBe(0);
    expect(s.jobs.get('job-a')!.nodes.size).toBe(1);
  });
});
