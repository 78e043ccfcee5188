import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { topicFilter, topics } from '@fedmq/protocol';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { addCredential, loadCredentials, type ScryptParams } from './auth.ts';
import { startBroker, type RunningBroker } from './index.ts';
import { TRAFFIC_ROLES, instrumentBroker, trafficRoleOf, type Traffic, type TrafficRole } from './metrics.ts';

describe('trafficRoleOf', () => {
  it.each([
    ['fedmq:mnist:node:pi-1', undefined, 'node'],
    ['fedmq:mnist:coordinator', undefined, 'coordinator'],
    ['fedmq:mnist:node:pi-1', { role: 'node' as const }, 'node'],
    ['fedmq:mnist:coordinator', { role: 'coordinator' as const }, 'coordinator'],
    ['fedmq-monitor-1', { role: 'monitor' as const }, 'monitor'],
    ['dashboard', { role: 'monitor' as const }, 'monitor'],
    ['dashboard', undefined, 'other'],
    ['dashboard', null, 'other'],
    ['fedmq:mnist:node', undefined, 'other'],
    ['fedmq:mnist:node:pi-1:x', undefined, 'other'],
    ['fedmq:mnist:node:a/b', undefined, 'other'],
    ['fedmq::coordinator', undefined, 'other'],
    ['fedmq:mnist:coordinator:x', undefined, 'other'],
    ['', undefined, 'other'],
  ] as [string, { role: 'node' | 'coordinator' | 'monitor' } | null | undefined, TrafficRole][])('%s (%j) → %s', (clientId, principal, role) => {
    expect(trafficRoleOf(clientId, principal)).toBe(role);
  });
});

/** A stand-in for a net.Socket: byte counts set by the test, `close` emitted by it. */
class FakeSocket extends EventEmitter {
  bytesRead = 0;
  bytesWritten = 0;
}

describe('instrumentBroker byte counters by role', () => {
  it('counts bytes under `other` until the role is set, then under the role; keeps them after close', async () => {
    const aedes = await Aedes.createBroker();
    try {
      const m = instrumentBroker(aedes);
      const zero = Object.fromEntries(TRAFFIC_ROLES.map((r) => [r, { read: 0, written: 0 }]));
      expect(m.traffic()).toEqual(zero);
      const s = new FakeSocket();
      const tracked = m.trackSocket(s as unknown as Socket, 'ws', { read: 10, written: 5 }); // the HTTP upgrade is not counted
      s.bytesRead = 40; // CONNECT
      tracked.setRole('node');
      s.bytesWritten = 1005; // CONNACK and a model
      s.bytesRead = 44;
      expect(m.traffic()).toEqual({ ...zero, other: { read: 30, written: 0 }, node: { read: 4, written: 1000 } });
      s.bytesWritten = 2005;
      s.emit('close');
      s.bytesWritten = 9999; // a closed socket no longer counts
      const after = m.traffic();
      expect(after.node).toEqual({ read: 4, written: 2000 });
      expect(after.other).toEqual({ read: 30, written: 0 });
      tracked.setRole('coordinator'); // after close: nothing moves
      expect(m.traffic()).toEqual(after);
      // the snapshot is a copy
      after.node.written = 0;
      expect(m.traffic().node.written).toBe(2000);

      const series = async (name: string) =>
        Object.fromEntries((await m.registry.getSingleMetric(name)!.get()).values.filter((v) => v.value > 0).map((v) => [`${v.labels.transport}/${v.labels.role}`, v.value]));
      expect(await series('fedmq_broker_bytes_sent_total')).toEqual({ 'ws/node': 2000 });
      expect(await series('fedmq_broker_bytes_received_total')).toEqual({ 'ws/other': 30, 'ws/node': 4 });
      // every transport × role series exists from the start
      expect((await m.registry.getSingleMetric('fedmq_broker_bytes_sent_total')!.get()).values).toHaveLength(4 * TRAFFIC_ROLES.length);
    } finally {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    }
  });
});

describe('RunningBroker.traffic() on a real broker', () => {
  let broker: RunningBroker | undefined;
  let dir: string | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await broker?.close();
    broker = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });
  const connect = async (opts: IClientOptions): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, ...opts });
    clients.push(c);
    return c;
  };
  const delta = (a: Traffic, b: Traffic, role: TrafficRole) => ({ read: b[role].read - a[role].read, written: b[role].written - a[role].written });

  it('bytes written to a node grow by at least the payload it was sent; the coordinator\'s do not', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const node = await connect({ clientId: 'fedmq:j:node:n1' });
    const coord = await connect({ clientId: 'fedmq:j:coordinator' });
    const other = await connect({ clientId: 'someone-else' });
    await node.subscribeAsync(topics.nodeTask('j', 'n1'), { qos: 1 });
    await other.subscribeAsync(topicFilter('coordinatorStatus', 'j'), { qos: 1 });

    const payload = Buffer.alloc(100_000, 7);
    const before = broker.traffic();
    const atNode = new Promise<number>((resolve) => node.on('message', (_t, p) => resolve(p.length)));
    await coord.publishAsync(topics.nodeTask('j', 'n1'), payload, { qos: 1 });
    expect(await atNode).toBe(payload.length);
    const after = broker.traffic();

    const toNode = delta(before, after, 'node');
    const fromCoordinator = delta(before, after, 'coordinator');
    expect(toNode.written).toBeGreaterThanOrEqual(payload.length);
    expect(toNode.written).toBeLessThan(payload.length + 1_000); // the PUBLISH headers, nothing else
    expect(fromCoordinator.read).toBeGreaterThanOrEqual(payload.length);
    expect(fromCoordinator.written).toBeLessThan(1_000); // a PUBACK
    expect(toNode.read).toBeLessThan(1_000); // a PUBACK
    expect(delta(before, after, 'other')).toEqual({ read: 0, written: 0 });
    expect(after.monitor).toEqual({ read: 0, written: 0 }); // no monitor without auth

    // cumulative: a client that leaves keeps its bytes in the totals
    const gone = new Promise<void>((resolve) => broker!.aedes.once('clientDisconnect', () => resolve()));
    await node.endAsync();
    clients.splice(clients.indexOf(node), 1);
    await gone;
    expect(broker.traffic().node.written).toBeGreaterThanOrEqual(after.node.written);

    // and the Prometheus counters carry the same role label
    const sent = (await broker.metrics.getSingleMetric('fedmq_broker_bytes_sent_total')!.get()).values;
    const nodeTcp = sent.find((v) => v.labels.transport === 'tcp' && v.labels.role === 'node')!.value;
    expect(nodeTcp).toBeGreaterThanOrEqual(payload.length);
  });

  it('counts a node over WebSocket as a node too (transport ws)', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0, httpAssets: new Map() });
    const node = await mqtt.connectAsync(broker.wsUrl!, { reconnectPeriod: 0, clientId: 'fedmq:j:node:w1' });
    clients.push(node);
    const coord = await connect({ clientId: 'fedmq:j:coordinator' });
    await node.subscribeAsync(topics.nodeTask('j', 'w1'), { qos: 1 });
    const payload = Buffer.alloc(50_000, 1);
    const before = broker.traffic();
    const atNode = new Promise<void>((resolve) => node.on('message', () => resolve()));
    await coord.publishAsync(topics.nodeTask('j', 'w1'), payload, { qos: 1 });
    await atNode;
    expect(delta(before, broker.traffic(), 'node').written).toBeGreaterThanOrEqual(payload.length);
    const sent = (await broker.metrics.getSingleMetric('fedmq_broker_bytes_sent_total')!.get()).values;
    expect(sent.find((v) => v.labels.transport === 'ws' && v.labels.role === 'node')!.value).toBeGreaterThanOrEqual(payload.length);
  });

  it('a client authenticated as a monitor counts as monitor; bytes of a refused CONNECT as other', async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedmq-traffic-'));
    const FAST: ScryptParams = { N: 1024, r: 8, p: 1, keylen: 32 };
    const file = join(dir, 'creds.json');
    const pwMon = await addCredential(file, { username: 'mon', role: 'monitor', jobs: ['j'] }, FAST);
    const pwCoord = await addCredential(file, { username: 'coord', role: 'coordinator', jobs: ['j'] }, FAST);
    broker = await startBroker({ port: 0, host: '127.0.0.1', auth: await loadCredentials(file) });

    const refused = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, clientId: 'fedmq:j:node:x', username: 'nobody', password: 'wrong' }).then(
      (c) => { clients.push(c); return 'connected'; },
      (err: { code?: number }) => err.code,
    );
    expect(refused).toBe(4);
    const afterRefusal = broker.traffic();
    expect(afterRefusal.other.read).toBeGreaterThan(0); // its CONNECT
    expect(afterRefusal.node).toEqual({ read: 0, written: 0 });

    const coord = await connect({ clientId: 'fedmq:j:coordinator', username: 'coord', password: pwCoord });
    await coord.publishAsync(topics.coordinatorStatus('j'), JSON.stringify({ state: 'running', pad: 'x'.repeat(5_000) }), { qos: 1, retain: true });
    const mon = await connect({ clientId: 'mon-dash-1', username: 'mon', password: pwMon });
    const before = broker.traffic();
    const retained = new Promise<void>((resolve) => mon.on('message', () => resolve()));
    await mon.subscribeAsync(topics.coordinatorStatus('j'), { qos: 1 });
    await retained;
    const after = broker.traffic();
    expect(delta(before, after, 'monitor').written).toBeGreaterThan(5_000);
    expect(delta(before, after, 'other')).toEqual({ read: 0, written: 0 });
  });
});
