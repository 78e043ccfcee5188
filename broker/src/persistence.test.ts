import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFedmqError, topicFilter, topics } from '@fedmq/protocol';
import { parseRedisUrl, startBroker } from './index.ts';

describe('parseRedisUrl', () => {
  it('reads host, port, db, credentials, TLS and unix sockets', () => {
    expect(parseRedisUrl('redis://10.0.0.5:6380/2')).toEqual({ host: '10.0.0.5', port: 6380, db: 2 });
    expect(parseRedisUrl('rediss://u:p%40ss@r.example')).toEqual({ host: 'r.example', port: 6379, db: 0, username: 'u', password: 'p@ss', tls: {} });
    expect(parseRedisUrl('unix:/run/redis/redis.sock')).toEqual({ path: '/run/redis/redis.sock' });
  });
  it('refuses other schemes and garbage with FEDMQ_BAD_CONFIG', () => {
    for (const bad of ['mysql://x', 'not a url', 'redis://h/x']) {
      let err: unknown;
      try {
        parseRedisUrl(bad);
      } catch (e) {
        err = e;
      }
      expect(isFedmqError(err, 'FEDMQ_BAD_CONFIG')).toBe(true);
    }
  });
});

// Debian's redis-server on a private unix socket (no TCP port): `npm test` installs it (scripts/preflight.mjs) or says to
const REDIS = '/usr/bin/redis-server';
describe('redis persistence', () => {
  let dir: string;
  let redis: ChildProcess | undefined;
  let url: string;
  beforeAll(async () => {
    if (!existsSync(REDIS)) throw new Error(`${REDIS} not found: this test needs Debian's redis-server (apt-get install redis-server; npm test installs it when run as root)`);
    dir = mkdtempSync(join(tmpdir(), 'fedmq-redis-'));
    const socket = join(dir, 'redis.sock');
    url = `unix:${socket}`;
    redis = spawn(REDIS, ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    // redis-server prints this line once it accepts connections
    await new Promise<void>((resolve, reject) => {
      let out = '';
      redis!.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        if (/ready to accept connections/i.test(out)) resolve();
      });
      redis!.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
    });
  });
  afterAll(async () => {
    const r = redis;
    if (r && r.exitCode === null) await new Promise<void>((resolve) => { r.once('exit', () => resolve()); r.kill(); });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps retained messages and a persistent session\'s queued QoS 1 message across a broker restart', async () => {
    let broker = await startBroker({ port: 0, host: '127.0.0.1', persistence: url });
    const { port } = broker;
    try {
      const coord = await mqtt.connectAsync(broker.url, { clientId: 'fedmq:j:coordinator', clean: false, reconnectPeriod: 0 });
      await coord.subscribeAsync(topicFilter('nodeUpdate', 'j'), { qos: 1 });
      await coord.publishAsync(topics.model('j', 1), 'global-v1', { qos: 1, retain: true });
      await coord.endAsync();
      await broker.close(); // a new broker process would start the same way: nothing is kept in memory

      broker = await startBroker({ port, host: '127.0.0.1', persistence: url });
      // a node publishes its update while the coordinator is offline: the session queues it
      const node = await mqtt.connectAsync(broker.url, { clientId: 'fedmq:j:node:n1', clean: false, reconnectPeriod: 0 });
      const retained = new Promise<string>((resolve) => node.on('message', (_t, p) => resolve(p.toString())));
      await node.subscribeAsync(topics.model('j', 1), { qos: 1 });
      expect(await retained).toBe('global-v1');
      await node.publishAsync(topics.nodeUpdate('j', 'n1'), 'update-1', { qos: 1 });
      await node.endAsync();

      const back = mqtt.connect(broker.url, { clientId: 'fedmq:j:coordinator', clean: false, reconnectPeriod: 0 });
      // no SUBSCRIBE: the subscription and the queued message come from the stored session
      const got = await new Promise<string>((resolve) => back.on('message', (t, p) => resolve(`${t} ${p.toString()}`)));
      expect(got).toBe(`${topics.nodeUpdate('j', 'n1')} update-1`);
      await back.endAsync();
    } finally {
      await broker.close();
    }
  });
});
