import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { addCredential, loadCredentials, startBroker, type RunningBroker } from '@fedmq/broker';
import { ErrorCodes, topics, type NodeStatus, type StageStatus } from '@fedmq/protocol';
import { startMonitor, type ConnectionEvent, type RunningMonitor } from './monitor.ts';
import type { MonitorEvent } from './state.ts';

const J = 'mon';
const status = (nodeId: string, state: NodeStatus['state']): Buffer =>
  Buffer.from(JSON.stringify({ v: 2, job: J, nodeId, state, ts: Date.now(), numExamples: 10 } satisfies NodeStatus));
const stage = (round: number, name: StageStatus['stage']): Buffer =>
  Buffer.from(JSON.stringify({ v: 2, job: J, runId: 'run-1', round, stage: name, cohort: 3, online: 3, deadline: Date.now() + 60_000, ts: Date.now() } satisfies StageStatus));

/** Whether MQTT filter `filter` matches `topic` (MQTT 3.1.1 §4.7: `+` one level, `#` the rest). */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** Resolves with the first event of `monitor` that satisfies `ok`. */
function next<T extends MonitorEvent | ConnectionEvent>(m: RunningMonitor, ok: (e: MonitorEvent | ConnectionEvent) => e is T): Promise<T>;
function next(m: RunningMonitor, ok: (e: MonitorEvent | ConnectionEvent) => boolean): Promise<MonitorEvent | ConnectionEvent>;
function next(m: RunningMonitor, ok: (e: MonitorEvent | ConnectionEvent) => boolean): Promise<MonitorEvent | ConnectionEvent> {
  return new Promise((resolve) => {
    const on = (e: MonitorEvent | ConnectionEvent) => {
      if (!ok(e)) return;
      m.events.off('event', on).off('connection', on);
      resolve(e);
    };
    m.events.on('event', on).on('connection', on);
  });
}

describe('startMonitor', () => {
  const open: { brokers: RunningBroker[]; clients: MqttClient[]; monitors: RunningMonitor[] } = { brokers: [], clients: [], monitors: [] };
  afterEach(async () => {
    for (const m of open.monitors.splice(0)) await m.close();
    for (const c of open.clients.splice(0)) await c.endAsync();
    for (const b of open.brokers.splice(0)) await b.close();
  });

  it('logs in to a broker with --auth as a monitor user, with the client id the broker pins to that user (<username>-monitor-…)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedmq-monitor-auth-'));
    try {
      const file = join(dir, 'creds.json');
      const password = await addCredential(file, { username: 'ops', role: 'monitor', jobs: [J] }, { N: 1024, r: 8, p: 1, keylen: 32 });
      const broker = await startBroker({ port: 0, host: '127.0.0.1', auth: await loadCredentials(file) });
      open.brokers.push(broker);
      const ids: string[] = [];
      broker.aedes.on('client', (c) => ids.push(c.id));
      const m = startMonitor({ brokerUrl: broker.url, job: J, mqtt: { username: 'ops', password } });
      open.monitors.push(m);
      await m.ready;
      expect(ids).toHaveLength(1);
      expect(ids[0]).toMatch(/^ops-monitor-[a-z0-9]+$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('subscribes read-only to the monitor topics only, gets retained state, follows live changes and reports invalid payloads', async () => {
    const broker = await startBroker({ port: 0, host: '127.0.0.1' });
    open.brokers.push(broker);
    const subscribed: string[] = [];
    broker.aedes.on('subscribe', (subs, client) => {
      if (client?.id.startsWith('fedmq-monitor-')) subscribed.push(...subs.map((s) => s.topic));
    });
    const published: string[] = [];
    broker.aedes.on('publish', (packet, client) => {
      if (client?.id.startsWith('fedmq-monitor-')) published.push(packet.topic);
    });
    const pub = await mqtt.connectAsync(broker.url);
    open.clients.push(pub);
    await pub.publishAsync(topics.nodeStatus(J, 'pi-1'), status('pi-1', 'idle'), { qos: 1, retain: true });
    await pub.publishAsync(topics.model(J, 1), Buffer.alloc(1_000_000), { qos: 1, retain: true }); // must never reach the monitor
    await pub.publishAsync(topics.stage(J), stage(1, 'fit'), { qos: 1, retain: true });

    const m = startMonitor({ brokerUrl: broker.url, job: J });
    open.monitors.push(m);
    const first = next(m, (e) => e.type === 'node');
    const firstStage = next(m, (e) => e.type === 'stage');
    await m.ready;
    expect(m.connected).toBe(true);
    expect(subscribed.sort()).toEqual([...m.topics].sort());
    // nothing the ACL keeps from monitors: models (whole or chunked), tasks, updates, evaluation results
    for (const t of [topics.model(J, 1), topics.modelChunk(J, 1, 0), topics.nodeTask(J, 'pi-1'), topics.nodeUpdate(J, 'pi-1'), topics.nodeEvaluation(J, 'pi-1')]) {
      expect(subscribed.filter((f) => matches(f, t)), t).toEqual([]);
    }
    for (const t of [topics.stage(J), topics.nodeStatus(J, 'pi-1'), topics.roundMetrics(J, 7), topics.latestMetrics(J)]) expect(subscribed.some((f) => matches(f, t)), t).toBe(true);
    expect(await first).toMatchObject({ type: 'node', nodeId: 'pi-1', status: { state: 'idle' } });
    expect(await firstStage).toMatchObject({ stage: { round: 1, stage: 'fit', cohort: 3 } }); // retained stage, delivered on subscribe
    expect(m.state.jobs.get(J)!.stage).toMatchObject({ round: 1, stage: 'fit' });

    const evaluate = next(m, (e) => e.type === 'stage' && e.stage?.stage === 'evaluate');
    await pub.publishAsync(topics.stage(J), stage(1, 'evaluate'), { qos: 1, retain: true });
    expect(await evaluate).toMatchObject({ type: 'stage', job: J, previous: 'fit', stage: { round: 1, stage: 'evaluate' } });

    const training = next(m, (e) => e.type === 'node' && e.status.state === 'training');
    await pub.publishAsync(topics.nodeStatus(J, 'pi-1'), status('pi-1', 'training'), { qos: 1, retain: true });
    expect(await training).toMatchObject({ previous: 'idle' });
    expect(m.state.jobs.get(J)!.nodes.get('pi-1')!.status.state).toBe('training');

    const bad = next(m, (e) => e.type === 'invalid');
    await pub.publishAsync(topics.coordinatorStatus(J), Buffer.from('{"v":2,"job":"mon","state":"dancing"}'), { qos: 1 });
    expect(await bad).toMatchObject({ type: 'invalid', job: J, code: ErrorCodes.SCHEMA, topic: topics.coordinatorStatus(J) });
    expect(published).toEqual([]);
  });

  it('reconnects and resubscribes when the broker comes back', async () => {
    const broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const m = startMonitor({ brokerUrl: broker.url });
    open.monitors.push(m);
    await m.ready;

    const offline = next(m, (e) => e.type === 'offline');
    await broker.close();
    await offline;
    expect(m.connected).toBe(false);

    const again = next(m, (e) => e.type === 'connected');
    const restarted = await startBroker({ port: broker.port, host: '127.0.0.1' });
    open.brokers.push(restarted);
    await again;
    const pub = await mqtt.connectAsync(restarted.url);
    open.clients.push(pub);
    const seen = next(m, (e) => e.type === 'node');
    await pub.publishAsync(topics.nodeStatus(J, 'pi-2'), status('pi-2', 'idle'), { qos: 1, retain: true });
    expect(await seen).toMatchObject({ job: J, nodeId: 'pi-2' });
  });

  it('close() before the broker answers ends cleanly', async () => {
    const m = startMonitor({ brokerUrl: 'mqtt://127.0.0.1:1' });
    await m.close();
    await m.close();
    await expect(m.ready).rejects.toThrow('monitor closed');
  });
});
