import { describe, expect, it } from 'vitest';
import { ErrorCodes, topics, type CoordinatorStatus, type ModelMeta, type NodeStatus, type RoundMetrics, type RoundTask } from '@fedmq/protocol';
import { FleetState, monitorTopics, type MonitorEvent } from './state.ts';

const J = 'job-a';
const json = (x: unknown) => Buffer.from(JSON.stringify(x));
const node = (nodeId: string, state: NodeStatus['state'], ts: number, extra: Partial<NodeStatus> = {}): NodeStatus => ({
  v: 1, job: J, nodeId, state, ts, numExamples: 600, device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3793, backend: 'wasm' }, ...extra,
});
const coord = (runId: string, state: CoordinatorStatus['state'], round: number, ts: number, deadline?: number): CoordinatorStatus => ({
  v: 1, job: J, runId, state, round, rounds: 3, ts, ...(deadline ? { deadline } : {}),
});
const metrics = (runId: string, round: number, ts: number, testAccuracy = 0.5 + round / 10): RoundMetrics => ({
  v: 1, job: J, runId, round, modelVersion: round + 1, selected: 2, reported: 2, failures: {}, trainLoss: 1 / round, testLoss: 0.9 / round,
  testAccuracy, bytesDown: 1_600_000, bytesUp: 1_594_594, durationMs: 4332.25, phases: { trainMs: 3720.1, aggregateMs: 12.4, evalMs: 599.7 }, ts,
});
const task = (runId: string, round: number, ts: number, selected = ['pi-1', 'pi-2']): RoundTask => ({
  v: 1, job: J, runId, round, modelVersion: round, selected, deadline: ts + 60_000, timeoutMs: 60_000,
  config: { epochs: 1, batchSize: 32, learningRate: 0.1 }, codec: 'float32', updateKind: 'delta', ts,
});
const meta = (runId: string, version: number, ts: number): ModelMeta => ({
  v: 1, job: J, runId, version, round: version - 1, model: 'mnist-2nn', bytes: 797_394, params: 199_210, sha256: 'a'.repeat(64), ts,
});
const types = (es: MonitorEvent[]) => es.map((e) => e.type);

describe('FleetState', () => {
  it('subscribes to the JSON topics only, for one job or every job', () => {
    expect(monitorTopics(J)).toEqual([
      topics.coordinatorStatus(J), topics.allNodeStatus(J), `fedmq/v1/${J}/rounds/+/metrics`, topics.modelMeta(J), topics.task(J),
    ]);
    expect(monitorTopics()).toContain('fedmq/v1/+/nodes/+/status');
    for (const t of [...monitorTopics(J), ...monitorTopics()]) expect(t).not.toMatch(/\/model$|\/update$|#/);
    expect(() => monitorTopics('bad/job')).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it('emits a node event for the first status and once per state change, and keeps the latest status', () => {
    const s = new FleetState();
    const t = topics.nodeStatus(J, 'pi-1');
    const seq: NodeStatus['state'][] = ['idle', 'idle', 'training', 'training', 'uploading', 'idle', 'idle', 'offline', 'offline'];
    const events = seq.flatMap((state, i) => s.apply(t, json(node('pi-1', state, 1000 + i)), { now: 5000 + i }));
    expect(events.map((e) => (e.type === 'node' ? [e.previous ?? null, e.status.state] : e.type))).toEqual([
      [null, 'idle'], ['idle', 'training'], ['training', 'uploading'], ['uploading', 'idle'], ['idle', 'offline'],
    ]);
    const n = s.jobs.get(J)!.nodes.get('pi-1')!;
    expect(n.status.ts).toBe(1008);
    expect(n.lastSeen).toBe(5008); // live message: the monitor's clock
    s.apply(t, json(node('pi-1', 'offline', 1009)), { now: 9999, retained: true });
    expect(s.jobs.get(J)!.nodes.get('pi-1')!.lastSeen).toBe(1009); // retained: the node's own ts
  });

  it('turns invalid payloads into invalid events with their FEDMQ code and never throws', () => {
    const s = new FleetState();
    const cases: [string, Uint8Array, string][] = [
      [topics.nodeStatus(J, 'pi-1'), Buffer.from('{not json'), ErrorCodes.BAD_PAYLOAD],
      [topics.nodeStatus(J, 'pi-1'), json({ ...node('pi-1', 'idle', 1), state: 'sleeping' }), ErrorCodes.SCHEMA],
      [topics.nodeStatus(J, 'pi-1'), json({ ...node('pi-1', 'idle', 1), v: 2 }), ErrorCodes.UNSUPPORTED_VERSION],
      [topics.nodeStatus(J, 'pi-1'), json(node('pi-2', 'idle', 1)), ErrorCodes.SCHEMA], // nodeId ≠ topic
      [topics.nodeStatus('job-b', 'pi-1'), json(node('pi-1', 'idle', 1)), ErrorCodes.WRONG_JOB],
      [topics.roundMetrics(J, 2), json(metrics('r1', 1, 1)), ErrorCodes.SCHEMA], // round ≠ topic
      [topics.coordinatorStatus(J), json({ v: 1, job: J }), ErrorCodes.SCHEMA],
      [topics.task(J), Buffer.from('[]'), ErrorCodes.SCHEMA],
      ['fedmq/v1/job-a/nodes/pi-1/whatever', json({}), ErrorCodes.BAD_TOPIC],
      ['other/topic', json({}), ErrorCodes.BAD_TOPIC],
    ];
    for (const [topic, payload, code] of cases) {
      const events = s.apply(topic, payload);
      expect(events, topic).toHaveLength(1);
      expect(events[0]).toMatchObject({ type: 'invalid', code });
    }
    expect(s.jobs.get(J)?.nodes.size ?? 0).toBe(0);
    expect(s.jobs.get(J)?.coordinator).toBeUndefined();
  });

  it('ignores the binary topics and empty payloads on model, task-less and coordinator topics', () => {
    const s = new FleetState();
    expect(s.apply(topics.model(J), Buffer.from([0x89, 0xa1]))).toEqual([]);
    expect(s.apply(topics.nodeUpdate(J, 'pi-1'), Buffer.from([0x8c]))).toEqual([]);
    expect(s.apply(topics.coordinatorStatus(J), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.task(J), Buffer.alloc(0))).toEqual([]);
    expect(s.apply(topics.nodeStatus(J, 'pi-9'), Buffer.alloc(0))).toEqual([]);
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
    expect(s.jobs.get(J)!.rounds.map((r) => r.round)).toEqual([1, 2, 3]);
  });

  it('emits coordinator events on changes of state, round or deadline only', () => {
    const s = new FleetState();
    const t = topics.coordinatorStatus(J);
    const seq = [
      coord('r1', 'waiting', 1, 100), coord('r1', 'waiting', 1, 100), coord('r1', 'training', 1, 200, 60_200), coord('r1', 'aggregating', 1, 300),
      coord('r1', 'evaluating', 1, 400), coord('r1', 'training', 2, 500, 60_500), coord('r1', 'training', 2, 500, 60_500), coord('r1', 'done', 2, 900),
    ];
    const events = seq.flatMap((c) => s.apply(t, json(c))).filter((e) => e.type === 'coordinator');
    expect(events.map((e) => (e.type === 'coordinator' ? `${e.previous ?? '-'}>${e.status.state}@${e.status.round}` : ''))).toEqual([
      '->waiting@1', 'waiting>training@1', 'training>aggregating@1', 'aggregating>evaluating@1', 'evaluating>training@2', 'training>done@2',
    ]);
  });

  it('tracks the open task and which selected nodes reported it; an empty task clears it', () => {
    const s = new FleetState();
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'idle', 50)));
    expect(types(s.apply(topics.task(J), json(task('r1', 1, 100))))).toEqual(['run', 'task']);
    const open = () => s.jobs.get(J)!.task!;
    expect(open().reported.size).toBe(0);
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'training', 110)));
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'uploading', 120)));
    expect(open().reported.size).toBe(0);
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'idle', 130, { lastRound: { round: 1, loss: 0.4, trainMs: 2900 } })));
    expect([...open().reported]).toEqual(['pi-1']);
    expect(s.apply(topics.task(J), json(task('r1', 1, 100)), { retained: true })).toEqual([]); // redelivered
    expect(s.apply(topics.task(J), json(task('r1', 2, 200)))).toEqual([{ type: 'task', job: J, task: expect.objectContaining({ round: 2 }) }]);
    expect(open().reported.size).toBe(0);
    expect(s.apply(topics.task(J), Buffer.alloc(0))).toEqual([{ type: 'task', job: J, task: null }]);
    expect(s.jobs.get(J)!.task).toBeUndefined();
  });

  it('a new run (newer runId) resets the rounds, task and model; a stale retained message of an old run is ignored', () => {
    const s = new FleetState();
    s.apply(topics.coordinatorStatus(J), json(coord('r1', 'training', 1, 1000, 61_000)));
    s.apply(topics.modelMeta(J), json(meta('r1', 2, 1500)));
    s.apply(topics.roundMetrics(J, 1), json(metrics('r1', 1, 1600)));
    s.apply(topics.roundMetrics(J, 2), json(metrics('r1', 2, 2600)));
    s.apply(topics.nodeStatus(J, 'pi-1'), json(node('pi-1', 'idle', 2700)));
    const job = s.jobs.get(J)!;
    expect(job.rounds).toHaveLength(2);

    const e = s.apply(topics.coordinatorStatus(J), json(coord('r2', 'waiting', 1, 5000)));
    expect(e).toEqual([
      { type: 'run', job: J, runId: 'r2', previousRunId: 'r1' },
      { type: 'coordinator', job: J, status: expect.objectContaining({ runId: 'r2', state: 'waiting' }), previous: 'training' },
    ]);
    expect(job.runId).toBe('r2');
    expect(job.rounds).toEqual([]);
    expect(job.model).toBeUndefined();
    expect(job.nodes.size).toBe(1); // nodes outlive runs

    // an old run's retained metrics (e.g. delivered on a resubscribe) do not come back
    expect(s.apply(topics.roundMetrics(J, 2), json(metrics('r1', 2, 2600)), { retained: true })).toEqual([]);
    expect(types(s.apply(topics.roundMetrics(J, 1), json(metrics('r2', 1, 6000))))).toEqual(['round']);
    expect(job.rounds.map((r) => [r.runId, r.round])).toEqual([['r2', 1]]);
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
