/**
 * Brokers of one cluster (cluster.ts) on Debian's redis-server, in this process: what crosses
 * from broker A to broker B (retained messages, large binary payloads byte for byte, QoS 1 to a
 * persistent session that moves between brokers, Last Wills), what the cluster does about
 * Redis's pubsub output buffer limit (raised; a warning with the redis.conf line when CONFIG is
 * refused; and, on a Redis left at its default, the 40 MB message it drops), and that closing the
 * brokers closes every Redis connection. The whole training run over three broker processes is
 * test/cluster.e2e.test.ts.
 *
 * No redis-server is a FAILURE with the apt-get line, never a skip.
 */
import { randomBytes, createHash } from 'node:crypto';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import MQEmitterRedis from 'mqemitter-redis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isFedmqError } from '@fedmq/protocol';
import { assertClusterOptions, clusterPubsubLimit, parsePubsubLimit, pubsubLimitLine, redactRedisUrl, REDIS_DEFAULT_PUBSUB_LIMIT } from './cluster.ts';
import { startBroker, type BrokerOptions, type RunningBroker } from './index.ts';
import { freePort, startRedisServer as startRedis, type RedisServer as Redis } from './dev-redis.ts';

const MiB = 2 ** 20;

/** Resolves with the next message on `topic` (exactly). */
function next(client: MqttClient, topic: string): Promise<{ payload: Buffer; retain: boolean }> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer, packet: { retain: boolean }) => {
      if (t !== topic) return;
      client.off('message', on);
      resolve({ payload, retain: packet.retain });
    };
    client.on('message', on);
  });
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('cluster options', () => {
  it('parses and writes Redis\'s pubsub limit, sizes the one it asks for, redacts passwords', () => {
    expect(parsePubsubLimit('normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60')).toEqual(REDIS_DEFAULT_PUBSUB_LIMIT);
    expect(() => parsePubsubLimit('normal 0 0 0')).toThrow('no pubsub class');
    expect(pubsubLimitLine(REDIS_DEFAULT_PUBSUB_LIMIT)).toBe('pubsub 32mb 8mb 60');
    expect(clusterPubsubLimit(16 * MiB)).toEqual({ hardBytes: 512 * MiB, softBytes: 128 * MiB, softSeconds: 60 });
    expect(clusterPubsubLimit(256 * MiB).hardBytes).toBe(1024 * MiB);
    expect(redactRedisUrl('redis://u:secret@h:6380/1')).toBe('redis://u:***@h:6380/1');
  });
  it('refuses another persistence, or the caller\'s own mq, with FEDMQ_BAD_CONFIG', async () => {
    for (const bad of [{ persistence: 'memory' }, { persistence: 'redis://other:6379' }, { aedes: { persistence: {} as never } }]) {
      let err: unknown;
      try {
        assertClusterOptions('redis://h:6379', bad);
      } catch (e) {
        err = e;
      }
      expect(isFedmqError(err, 'FEDMQ_BAD_CONFIG')).toBe(true);
    }
    expect(() => assertClusterOptions('redis://h:6379', { persistence: 'redis://h:6379' })).not.toThrow();
    const err = await startBroker({ port: 0, host: '127.0.0.1', cluster: 'redis://127.0.0.1:1', persistence: 'memory' }).catch((e: unknown) => e);
    expect(isFedmqError(err, 'FEDMQ_BAD_CONFIG')).toBe(true);
  });
  it('fails with FEDMQ_BAD_CONFIG when Redis does not answer', async () => {
    const port = await freePort();
    const err = await startBroker({ port: 0, host: '127.0.0.1', cluster: `redis://127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(isFedmqError(err, 'FEDMQ_BAD_CONFIG')).toBe(true);
    expect((err as Error).message).toContain(`cannot reach Redis at redis://127.0.0.1:${port}`);
  });
});

type Conn = NodeJS.EventEmitter & { status: string };
const connsOf = (e: unknown) => e as { pubConn: Conn; subConn: Conn; state: NodeJS.EventEmitter };
const ready = (c: Conn) => (c.status === 'ready' ? Promise.resolve() : once(c, 'ready').then(() => undefined));
const emit = (e: ReturnType<typeof MQEmitterRedis>, topic: string, payload: Buffer) =>
  new Promise<void>((resolve, reject) => e.emit({ topic, payload }, (err?: Error) => (err ? reject(err) : resolve())));
const closeAll = (...es: ReturnType<typeof MQEmitterRedis>[]) => Promise.all(es.map((e) => new Promise<void>((resolve) => e.close(() => resolve()))));

describe('mqemitter-redis on its own, at Redis\'s default configuration', () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('Redis\'s default pubsub limit drops a 40 MB relayed message: Redis disconnects the subscriber, which gets the next message but never that one', async () => {
    const a = MQEmitterRedis({ port: redis.port, host: '127.0.0.1' });
    const b = MQEmitterRedis({ port: redis.port, host: '127.0.0.1' });
    try {
      for (const e of [a, b]) connsOf(e).state.on('error', () => undefined);
      await Promise.all([a, b].flatMap((e) => [ready(connsOf(e).pubConn), ready(connsOf(e).subConn)]));
      expect(parsePubsubLimit((await redis.cli('CONFIG', 'GET', 'client-output-buffer-limit')).split('\n')[1])).toEqual(REDIS_DEFAULT_PUBSUB_LIMIT);
      const got: number[] = [];
      let marker!: () => void;
      const gotMarker = new Promise<void>((resolve) => (marker = resolve));
      await new Promise<void>((resolve) => b.on('t', (m, done) => {
        got.push((m.payload as Buffer).length);
        if (m.payload.length === 1) marker();
        done();
      }, () => resolve()));
      const reconnected = once(connsOf(b).subConn, 'ready');
      await emit(a, 't', Buffer.alloc(40 * MiB, 7));
      expect(await redis.logged(/overcoming of output buffer limits/)).toMatch(/scheduled to be closed ASAP/);
      await reconnected; // ioredis reconnects and subscribes again: wait until Redis has the subscription back
      while ((await redis.cli('PUBSUB', 'NUMSUB', 't')).split('\n')[1] !== '1');
      await emit(a, 't', Buffer.from([1]));
      await gotMarker;
      expect(got).toEqual([1]);
    } finally {
      await closeAll(a, b);
    }
  });

});

describe('two brokers on one Redis', () => {
  let redis: Redis;
  const brokers: RunningBroker[] = [];
  const clients: MqttClient[] = [];
  const start = async (o: BrokerOptions = {}) => {
    const b = await startBroker({ port: 0, host: '127.0.0.1', cluster: redis.url, ...o });
    brokers.push(b);
    return b;
  };
  const connect = async (b: RunningBroker, o: mqtt.IClientOptions = {}) => {
    const c = await mqtt.connectAsync(b.url, { reconnectPeriod: 0, ...o });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    await redis.cli('FLUSHALL');
    await redis.cli('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 33554432 8388608 60'); // Redis's default again
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('raises Redis\'s pubsub limit; a retained message published on A reaches a later subscriber on B', async () => {
    const a = await start();
    expect(a.cluster?.pubsubLimit).toEqual({ action: 'raised', from: REDIS_DEFAULT_PUBSUB_LIMIT, to: clusterPubsubLimit(16 * MiB) });
    expect((await redis.cli('CONFIG', 'GET', 'client-output-buffer-limit')).split('\n')[1]).toContain('pubsub 536870912 134217728 60');
    const b = await start();
    expect(b.cluster?.pubsubLimit.action).toBe('kept');

    const pub = await connect(a);
    await pub.publishAsync('fedmq/v2/j/model/meta', '{"version":3}', { qos: 1, retain: true });
    const sub = await connect(b);
    const got = next(sub, 'fedmq/v2/j/model/meta');
    await sub.subscribeAsync('fedmq/v2/j/model/meta', { qos: 1 });
    expect(await got).toEqual({ payload: Buffer.from('{"version":3}'), retain: true });
  });

  it('relays binary payloads byte for byte: 12 MB, and 40 MB (over Redis\'s default limit) with a 64 MiB packet limit', async () => {
    const limits = { maxPacketBytes: 64 * MiB };
    const a = await start({ limits });
    const b = await start({ limits });
    const pub = await connect(a);
    const sub = await connect(b);
    await sub.subscribeAsync('fedmq/v2/j/models/+', { qos: 1 });
    for (const [version, bytes] of [[1, 12 * MiB], [2, 40 * MiB]]) {
      const payload = randomBytes(bytes);
      const got = next(sub, `fedmq/v2/j/models/${version}`);
      await pub.publishAsync(`fedmq/v2/j/models/${version}`, payload, { qos: 1 });
      const { payload: received } = await got;
      expect(received.length).toBe(bytes);
      expect(sha(received)).toBe(sha(payload));
    }
  });

  it('QoS 1: a burst of 500 from B reaches a subscriber on A once each, and a persistent session queued on A is delivered when it comes back on B', async () => {
    const a = await start();
    const b = await start();
    const coord = await connect(a, { clientId: 'fedmq:j:coordinator', clean: false });
    await coord.subscribeAsync('fedmq/v2/j/nodes/+/update', { qos: 1 });
    const seen = new Map<string, number>();
    let all!: () => void;
    const done = new Promise<void>((resolve) => (all = resolve));
    coord.on('message', (_t, p) => {
      seen.set(p.toString(), (seen.get(p.toString()) ?? 0) + 1);
      if (seen.size === 500) all();
    });
    const node = await connect(b);
    await Promise.all(Array.from({ length: 500 }, (_, i) => node.publishAsync(`fedmq/v2/j/nodes/n${i % 7}/update`, `u${i}`, { qos: 1 })));
    await done;
    expect([...seen.values()].every((n) => n === 1)).toBe(true);

    await coord.endAsync();
    await node.publishAsync('fedmq/v2/j/nodes/n1/update', 'while away', { qos: 1 });
    // back on the other broker: no SUBSCRIBE, the session (in Redis) brings the subscription and the queued message
    const back = mqtt.connect(b.url, { clientId: 'fedmq:j:coordinator', clean: false, reconnectPeriod: 0 });
    clients.push(back);
    // QoS 1 is at least once: burst messages whose PUBACK the broker had not processed when the
    // client left come again (fedmq counts an update once), then the one queued while it was away
    const again: string[] = [];
    await new Promise<void>((resolve) => back.on('message', (_t, p) => (p.toString() === 'while away' ? resolve() : again.push(p.toString()))));
    expect(again.every((m) => seen.has(m))).toBe(true);
  });

  it('a persistent session subscribing 4 filters in one SUBSCRIBE gets its SUBACK and hears them all from the other broker', async () => {
    const a = await start();
    const b = await start();
    const coord = await connect(a, { clientId: 'fedmq:j:coordinator', clean: false });
    const filters = ['status', 'update', 'evaluation'].map((k) => `fedmq/v2/j/nodes/+/${k}`).concat('fedmq/v1/j/nodes/+/status');
    const granted = await coord.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])));
    expect(granted.map((g) => g.qos)).toEqual([1, 1, 1, 1]);
    const got: string[] = [];
    let all!: () => void;
    const done = new Promise<void>((resolve) => (all = resolve));
    coord.on('message', (t) => got.push(t) === 4 && all());
    const node = await connect(b);
    for (const f of filters) await node.publishAsync(f.replace('+', 'n1'), 'x', { qos: 1 });
    await done;
    expect(got.sort()).toEqual(filters.map((f) => f.replace('+', 'n1')).sort());
  });

  it('a Last Will of a client on B reaches a subscriber on A; a stale will of a client that moved to a live broker is not published', async () => {
    const heartbeat = { aedes: { heartbeatInterval: 200 } };
    const a = await start(heartbeat);
    const b = await start(heartbeat);
    const watcher = await connect(a);
    await watcher.subscribeAsync('fedmq/v2/j/nodes/+/status', { qos: 1 });
    const will = (id: string) => ({ clientId: `fedmq:j:node:${id}`, clean: false, will: { topic: `fedmq/v2/j/nodes/${id}/status`, payload: Buffer.from(`${id} offline`), qos: 1 as const, retain: true } });

    // the network of a node on B fails: B publishes its will, the watcher on A gets it
    const n0 = await connect(b, will('n0'));
    const dropped = next(watcher, 'fedmq/v2/j/nodes/n0/status');
    n0.stream.destroy();
    expect((await dropped).payload.toString()).toBe('n0 offline');

    // broker C shuts down (its clients' wills stay in Redis); n1 reconnects to B, n2 never comes back
    const c = await start(heartbeat);
    const n1 = await connect(c, will('n1'));
    await connect(c, will('n2'));
    expect((await redis.cli('LRANGE', 'will', '0', '-1')).split('\n').filter(Boolean).sort()).toEqual([`will:${c.aedes.id}:fedmq%3Aj%3Anode%3An1`, `will:${c.aedes.id}:fedmq%3Aj%3Anode%3An2`]);
    await c.close();
    n1.end(true);
    await connect(b, will('n1'));
    const statuses: string[] = [];
    watcher.on('message', (_t, p) => statuses.push(p.toString()));
    // 3 heartbeats after C's last one, A or B publishes the wills it left: n2's only (n1 has a will on B, a live broker)
    const n2Will = next(watcher, 'fedmq/v2/j/nodes/n2/status');
    expect((await n2Will).payload.toString()).toBe('n2 offline');
    // each live broker may publish it (Aedes does not coordinate): once or twice, and never n1's,
    // which each broker would have published before n2's (the will list's order, one Redis connection)
    expect(new Set(statuses)).toEqual(new Set(['n2 offline']));
    expect(await redis.cli('EXISTS', `will:${c.aedes.id}:fedmq%3Aj%3Anode%3An1`)).toBe('0\n');
  });

  it('a broker whose relay connection Redis closes subscribes again and hears the cluster', async () => {
    const a = await start();
    const b = await start();
    const sub = await connect(b);
    await sub.subscribeAsync('fedmq/v2/j/metrics', { qos: 1 });
    const patterns = (await redis.cli('PUBSUB', 'NUMPAT')).trim();
    const channels = (await redis.cli('PUBSUB', 'CHANNELS')).trim().split('\n').sort();
    const back = [a, b].map((x) => once(connsOf((x.aedes as unknown as { mq: unknown }).mq).subConn, 'ready'));
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await Promise.all(back);
    while ((await redis.cli('PUBSUB', 'NUMPAT')).trim() !== patterns || (await redis.cli('PUBSUB', 'CHANNELS')).trim().split('\n').sort().join() !== channels.join());
    const got = next(sub, 'fedmq/v2/j/metrics');
    const pub = await connect(a);
    await pub.publishAsync('fedmq/v2/j/metrics', '{"round":1}', { qos: 1 });
    expect((await got).payload.toString()).toBe('{"round":1}');
  });

  it('raises the pubsub limit again when its connection comes back (CONFIG SET does not outlive a Redis restart)', async () => {
    const a = await start();
    await redis.cli('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 33554432 8388608 60'); // as after a restart
    const back = once(connsOf((a.aedes as unknown as { mq: unknown }).mq).pubConn, 'ready');
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'); // the publishing and persistence connections
    await back;
    while (!(await redis.cli('CONFIG', 'GET', 'client-output-buffer-limit')).includes('pubsub 536870912 134217728 60'));
  });

  it('closing the brokers closes every Redis connection (3 per broker)', async () => {
    const before = (await redis.cli('CLIENT', 'LIST')).trim().split('\n').length;
    await start();
    await start();
    expect((await redis.cli('CLIENT', 'LIST')).trim().split('\n').length).toBe(before + 6);
    await Promise.all(brokers.splice(0).map((b) => b.close()));
    // the store disconnects without QUIT: Redis lists its connection until it has read the close
    while ((await redis.cli('CLIENT', 'LIST')).trim().split('\n').length > before);
    expect((await redis.cli('CLIENT', 'LIST')).trim().split('\n').length).toBe(before);
  });
});

describe('a Redis that refuses CONFIG', () => {
  it('the broker starts and logs a warning with the redis.conf line to add', async () => {
    const redis = await startRedis(['--rename-command', 'CONFIG', '']);
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (chunk, _enc, cb) => (lines.push(...chunk.toString().split('\n').filter(Boolean)), cb()) }));
    const broker = await startBroker({ port: 0, host: '127.0.0.1', cluster: redis.url, logger });
    try {
      expect(broker.cluster?.pubsubLimit).toMatchObject({ action: 'refused', redisConf: 'client-output-buffer-limit pubsub 512mb 128mb 60' });
      const warning = lines.map((l) => JSON.parse(l) as { level: number; msg: string; redisConf?: string }).find((l) => l.level === 40 && l.redisConf);
      expect(warning?.msg).toContain('Add to redis.conf: client-output-buffer-limit pubsub 512mb 128mb 60');
    } finally {
      await broker.close();
      await redis.stop();
    }
  });
});
