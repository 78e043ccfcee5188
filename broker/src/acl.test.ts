import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canPublish, canSubscribe, filterWithin, readableFilters, scopeToClientId, writableFilters, type Principal } from './acl.ts';
import { addCredential, loadCredentials, type ScryptParams } from './auth.ts';
import { startBroker, type RunningBroker } from './index.ts';

// ----------------------------------------------------------------- the matrix

const who: Record<string, Principal | null> = {
  nodeA: { username: 'A', role: 'node', jobs: ['j'] },
  nodeB: { username: 'B', role: 'node', jobs: ['j'] },
  nodeOtherJob: { username: 'C', role: 'node', jobs: ['k'] },
  coordinator: { username: 'coord', role: 'coordinator', jobs: ['j'] },
  coordinatorOtherJob: { username: 'coordK', role: 'coordinator', jobs: ['k'] },
  monitor: { username: 'mon', role: 'monitor', jobs: ['j'] },
  anonymous: null,
};
const COLUMNS = Object.keys(who);
const J = 'fedmq/v1/j';

/**
 * Expected answers, one character per principal in the order of COLUMNS
 * (nodeA nodeB nodeOtherJob coordinator coordinatorOtherJob monitor anonymous): 1 = allowed, . = denied.
 * Every topic is asked as a PUBLISH topic and as a SUBSCRIBE filter.
 */
const MATRIX: [topic: string, publish: string, subscribe: string][] = [
  //                                        pub        sub
  [`${J}/model`,                           '...1...', '11.1...'],
  [`${J}/model/meta`,                      '...1...', '11.1.1.'],
  [`${J}/model/chunks/0`,                  '...1...', '11.1...'],
  [`${J}/model/chunks/17`,                 '...1...', '11.1...'],
  [`${J}/model/chunks/+`,                  '.......', '11.1...'],
  [`${J}/model/chunks/x`,                  '.......', '11.1...'], // not a fedmq topic: nobody can publish there
  [`${J}/model/#`,                         '.......', '...1...'],
  [`${J}/task`,                            '...1...', '11.1.1.'],
  [`${J}/coordinator/status`,              '...1...', '11.1.1.'],
  [`${J}/nodes/A/status`,                  '1......', '1..1.1.'],
  [`${J}/nodes/A/update`,                  '1......', '1..1...'],
  [`${J}/nodes/B/status`,                  '.1.....', '.1.1.1.'],
  [`${J}/nodes/B/update`,                  '.1.....', '.1.1...'],
  [`${J}/nodes/+/status`,                  '.......', '...1.1.'],
  [`${J}/nodes/+/update`,                  '.......', '...1...'],
  [`${J}/nodes/A/+`,                       '.......', '...1...'], // A's two topics, but inside no single allowed filter: denied
  [`${J}/nodes/#`,                         '.......', '...1...'],
  [`${J}/nodes/+/#`,                       '.......', '...1...'],
  [`${J}/rounds/1/metrics`,                '...1...', '11.1.1.'],
  [`${J}/rounds/+/metrics`,                '.......', '11.1.1.'],
  [`${J}/rounds/0/metrics`,                '.......', '11.1.1.'], // round 0 is not a fedmq topic (rounds count from 1)
  [`${J}/metrics`,                         '...1...', '11.1.1.'],
  [`${J}/#`,                               '.......', '...1...'],
  [`${J}/+`,                               '.......', '...1...'],
  [`${J}/+/status`,                        '.......', '...1...'],
  [`${J}/coordinator/#`,                   '.......', '...1...'],
  [`${J}`,                                 '.......', '...1...'], // the parent level of fedmq/v1/j/#
  ['fedmq/v1/k/model',                     '....1..', '..1.1..'],
  ['fedmq/v1/k/nodes/C/update',            '..1....', '..1.1..'],
  ['fedmq/v1/k/nodes/A/update',            '.......', '....1..'],
  ['fedmq/v1/k/#',                         '.......', '....1..'],
  ['fedmq/v1/+/model',                     '.......', '.......'],
  ['fedmq/v1/+/nodes/+/update',            '.......', '.......'],
  ['fedmq/v1/#',                           '.......', '.......'],
  ['fedmq/#',                              '.......', '.......'],
  ['#',                                    '.......', '.......'],
  ['+',                                    '.......', '.......'],
  ['+/v1/j/model',                         '.......', '.......'],
  ['+/+/+/model',                          '.......', '.......'],
  ['$SYS/#',                               '.......', '.......'],
  ['$SYS/broker/clients/connected',        '.......', '.......'],
  ['$SYS/+/heartbeat',                     '.......', '.......'],
  ['other/topic',                          '.......', '.......'],
  ['',                                     '.......', '.......'],
];

describe('ACL matrix: role × topic × publish/subscribe', () => {
  const cells = MATRIX.flatMap(([topic, pub, sub]) =>
    COLUMNS.flatMap((name, i) => [
      { action: 'publish' as const, topic, name, allowed: pub[i] === '1' },
      { action: 'subscribe' as const, topic, name, allowed: sub[i] === '1' },
    ]),
  );

  it('has one expectation per principal in every row', () => {
    for (const [topic, pub, sub] of MATRIX) expect([topic, pub.length, sub.length]).toEqual([topic, COLUMNS.length, COLUMNS.length]);
    expect(cells.length).toBe(MATRIX.length * COLUMNS.length * 2);
  });

  it.each(cells)('$name $action $topic → $allowed', ({ action, topic, name, allowed }) => {
    const p = who[name];
    expect(action === 'publish' ? canPublish(p, topic) : canSubscribe(p, topic)).toBe(allowed);
  });
});

describe('ACL for principals of every job (jobs: "*")', () => {
  const anyNode: Principal = { username: 'A', role: 'node', jobs: '*' };
  const anyCoordinator: Principal = { username: 'c', role: 'coordinator', jobs: '*' };
  const anyMonitor: Principal = { username: 'm', role: 'monitor', jobs: '*' };

  it('a node of every job still touches only its own node topics', () => {
    expect(canPublish(anyNode, 'fedmq/v1/x/nodes/A/update')).toBe(true);
    expect(canPublish(anyNode, 'fedmq/v1/y/nodes/A/status')).toBe(true);
    expect(canPublish(anyNode, 'fedmq/v1/x/nodes/B/update')).toBe(false);
    expect(canPublish(anyNode, 'fedmq/v1/x/model')).toBe(false);
    expect(canSubscribe(anyNode, 'fedmq/v1/+/model')).toBe(true);
    expect(canSubscribe(anyNode, 'fedmq/v1/+/nodes/+/update')).toBe(false);
    expect(canSubscribe(anyNode, 'fedmq/v1/#')).toBe(false);
  });

  it('a monitor of every job reads statuses and metrics of every job, never updates or models', () => {
    for (const f of ['fedmq/v1/+/nodes/+/status', 'fedmq/v1/+/coordinator/status', 'fedmq/v1/+/rounds/+/metrics', 'fedmq/v1/+/model/meta', 'fedmq/v1/+/task', 'fedmq/v1/x/metrics']) {
      expect(canSubscribe(anyMonitor, f), f).toBe(true);
    }
    for (const f of ['fedmq/v1/+/nodes/+/update', 'fedmq/v1/+/model', 'fedmq/v1/+/#', 'fedmq/v1/#', '#', '$SYS/#']) expect(canSubscribe(anyMonitor, f), f).toBe(false);
    expect(writableFilters(anyMonitor)).toEqual([]);
  });

  it('a coordinator of every job reads everything under fedmq/v1/+/ but not the root or $SYS', () => {
    expect(canSubscribe(anyCoordinator, 'fedmq/v1/+/nodes/+/update')).toBe(true);
    expect(canSubscribe(anyCoordinator, 'fedmq/v1/+/#')).toBe(true);
    expect(canSubscribe(anyCoordinator, 'fedmq/v1/#')).toBe(false); // also matches fedmq/v1 itself
    expect(canSubscribe(anyCoordinator, '#')).toBe(false);
    expect(canPublish(anyCoordinator, 'fedmq/v1/x/task')).toBe(true);
    expect(canPublish(anyCoordinator, 'fedmq/v1/x/nodes/A/update')).toBe(false);
  });

  it('the filters themselves', () => {
    expect(readableFilters(who.monitor)).toEqual([
      `${J}/coordinator/status`, `${J}/nodes/+/status`, `${J}/rounds/+/metrics`, `${J}/metrics`, `${J}/model/meta`, `${J}/task`,
    ]);
    expect(writableFilters(who.nodeA)).toEqual([`${J}/nodes/A/status`, `${J}/nodes/A/update`]);
    expect(readableFilters(null)).toEqual([]);
    // a node whose username is not a node id gets nothing (it could not be a topic level)
    expect(writableFilters({ username: 'a/b', role: 'node', jobs: ['j'] })).toEqual([]);
    expect(readableFilters({ username: '+', role: 'node', jobs: ['j'] })).toEqual([]);
  });
});

describe('filterWithin (MQTT 3.1.1 §4.7.1 filter containment)', () => {
  it.each([
    ['a/b', 'a/b', true], ['a/b', 'a/+', true], ['a/+', 'a/+', true], ['a/+', 'a/b', false], ['a/#', 'a/+', false],
    ['a', 'a/#', true], ['a/b/c', 'a/#', true], ['a/#', 'a/#', true], ['a/+/c', 'a/#', true], ['#', 'a/#', false],
    ['a/b', 'a/b/c', false], ['a/b/c', 'a/b', false], ['a/b/#', 'a/b/+', false], ['a//b', 'a/+/b', true], ['+/b', 'a/b', false],
  ])('%s within %s → %s', (filter, pattern, expected) => {
    expect(filterWithin(filter, pattern)).toBe(expected);
  });
});

describe('scopeToClientId: the client id a user may connect with', () => {
  const multi: Principal = { username: 'A', role: 'node', jobs: ['j', 'k'] };
  it.each([
    ['node with its own id in its job', multi, 'fedmq:j:node:A', { username: 'A', role: 'node', jobs: ['j'] }],
    ['node in its second job', multi, 'fedmq:k:node:A', { username: 'A', role: 'node', jobs: ['k'] }],
    ['node with another node\'s id', multi, 'fedmq:j:node:B', null],
    ['node in a job it is not in', multi, 'fedmq:x:node:A', null],
    ['node as the coordinator', multi, 'fedmq:j:coordinator', null],
    ['node with a free-form id', multi, 'A', null],
    ['node with trailing parts', multi, 'fedmq:j:node:A:x', null],
    ['coordinator of its job', who.coordinator, 'fedmq:j:coordinator', { username: 'coord', role: 'coordinator', jobs: ['j'] }],
    ['coordinator of another job', who.coordinator, 'fedmq:k:coordinator', null],
    ['coordinator as a node', who.coordinator, 'fedmq:j:node:coord', null],
    ['coordinator of every job', { username: 'c', role: 'coordinator', jobs: '*' }, 'fedmq:z:coordinator', { username: 'c', role: 'coordinator', jobs: ['z'] }],
    ['monitor with a free-form id', who.monitor, 'fedmq-monitor-1234', who.monitor],
    ['monitor taking over a node session', who.monitor, 'fedmq:j:node:A', null],
    ['monitor taking over the coordinator session', who.monitor, 'fedmq:j:coordinator', null],
    ['anonymous', null, 'fedmq:j:node:A', null],
  ] as [string, Principal | null, string, Principal | null][])('%s', (_name, p, clientId, expected) => {
    expect(scopeToClientId(p, clientId)).toEqual(expected);
  });
});

// ----------------------------------------------------------------- end to end

/** Cheap scrypt for tests (the default costs ~50 ms per CONNECT). */
const FAST: ScryptParams = { N: 1024, r: 8, p: 1, keylen: 32 };

describe('auth + ACL on a real broker', () => {
  let dir: string;
  let broker: RunningBroker;
  const pw: Record<string, string> = {};
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedmq-acl-'));
    const file = join(dir, 'creds.json');
    pw.A = await addCredential(file, { username: 'A', role: 'node', jobs: ['j'] }, FAST);
    pw.B = await addCredential(file, { username: 'B', role: 'node', jobs: ['j'] }, FAST);
    pw.coord = await addCredential(file, { username: 'coord', role: 'coordinator', jobs: ['j'] }, FAST);
    pw.mon = await addCredential(file, { username: 'mon', role: 'monitor', jobs: ['j'] }, FAST);
    broker = await startBroker({ port: 0, host: '127.0.0.1', auth: await loadCredentials(file) });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const connect = async (opts: IClientOptions): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, ...opts });
    clients.push(c);
    return c;
  };
  const refusal = (opts: IClientOptions) => mqtt.connectAsync(broker.url, { reconnectPeriod: 0, ...opts }).then(
    (c) => { clients.push(c); return 'connected'; },
    (err: { code?: number }) => err.code,
  );
  const rejections = async () => {
    const m = new Map<string, number>();
    for (const v of (await broker.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values) m.set(String(v.labels.reason), v.value);
    return m;
  };

  it('refuses anonymous clients (5), wrong passwords and unknown users (4), and borrowed client ids (2)', async () => {
    expect(await refusal({ clientId: 'fedmq:j:node:A' })).toBe(5);
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'A', password: 'wrong password' })).toBe(4);
    expect(await refusal({ clientId: 'fedmq:j:node:Z', username: 'Z', password: pw.A })).toBe(4);
    expect(await refusal({ clientId: 'fedmq:j:node:B', username: 'A', password: pw.A })).toBe(2);
    expect(await refusal({ clientId: 'fedmq:j:coordinator', username: 'A', password: pw.A })).toBe(2);
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'mon', password: pw.mon })).toBe(2);
    // a Last Will on a topic the node may not publish to
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: 'fedmq/v1/j/nodes/B/status', payload: Buffer.from('x'), qos: 1, retain: true } })).toBe(5);
    const r = await rejections();
    expect([r.get('anonymous'), r.get('bad_credentials'), r.get('client_id_not_allowed'), r.get('will_denied')]).toEqual([1, 2, 3, 1]);
  });

  it('node A cannot read node B\'s update; the coordinator receives it; a node cannot publish the model', async () => {
    const coord = await connect({ clientId: 'fedmq:j:coordinator', username: 'coord', password: pw.coord });
    const a = await connect({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: `${J}/nodes/A/status`, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true } });
    const b = await connect({ clientId: 'fedmq:j:node:B', username: 'B', password: pw.B });
    const mon = await connect({ clientId: 'fedmq-monitor-test', username: 'mon', password: pw.mon });

    const seenByA: string[] = [];
    a.on('message', (t) => seenByA.push(t));
    // mqtt.js fails a whole SUBSCRIBE when one filter gets 0x80, so ask one filter at a time
    const grant = (c: MqttClient, filter: string) => c.subscribeAsync(filter, { qos: 1 }).then((g) => g[0].qos, (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0]);
    for (const f of [`${J}/nodes/B/update`, `${J}/nodes/+/update`, `${J}/nodes/B/status`, `${J}/#`, '#', '$SYS/#']) expect([f, await grant(a, f)]).toEqual([f, 128]);
    expect(await grant(a, `${J}/task`)).toBe(1);
    expect(await grant(mon, `${J}/nodes/+/status`)).toBe(1);
    expect(await grant(mon, `${J}/nodes/+/update`)).toBe(128);
    expect(await grant(mon, `${J}/model`)).toBe(128);
    await coord.subscribeAsync({ [`${J}/nodes/+/update`]: { qos: 1 }, [`${J}/model`]: { qos: 1 } });

    const atCoordinator = new Promise<[string, string]>((resolve) => coord.on('message', (t, p) => t.endsWith('/update') && resolve([t, p.toString()])));
    await b.publishAsync(`${J}/nodes/B/update`, 'delta of B', { qos: 1 });
    expect(await atCoordinator).toEqual([`${J}/nodes/B/update`, 'delta of B']);
    // the broker has routed B's update; anything for A would be queued before this task
    const taskAtA = new Promise<void>((resolve) => a.on('message', (t) => t === `${J}/task` && resolve()));
    await coord.publishAsync(`${J}/task`, '{"round":1}', { qos: 1 });
    await taskAtA;
    expect(seenByA).toEqual([`${J}/task`]);

    // a node publishing the global model is disconnected, and the model never reaches the coordinator;
    // its Last Will (on its own status topic, so allowed) goes out
    const modelsAtCoordinator: string[] = [];
    coord.on('message', (t, p) => t === `${J}/model` && modelsAtCoordinator.push(p.toString()));
    const willAtMonitor = new Promise<string>((resolve) => mon.on('message', (t, p) => t === `${J}/nodes/A/status` && resolve(p.toString())));
    const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
    a.publish(`${J}/model`, 'poisoned model', { qos: 1 });
    await closed;
    expect(await willAtMonitor).toBe('{"state":"offline"}');
    const realModel = new Promise<string>((resolve) => coord.on('message', (t, p) => t === `${J}/model` && resolve(p.toString())));
    await coord.publishAsync(`${J}/model`, 'real model', { qos: 1 });
    expect(await realModel).toBe('real model');
    expect(modelsAtCoordinator).toEqual(['real model']);
    const r = await rejections();
    expect(r.get('publish_denied')).toBe(1);
    expect(r.get('subscribe_denied')).toBe(8);
  });
});
