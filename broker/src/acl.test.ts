import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOPIC_KINDS, TOPIC_ROOT, TOPIC_TABLE, topicFilter, topics, type TopicKind } from '@fedmq/protocol';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES, aclTable, canPublish, canSubscribe, clientIdOwner, filterWithin, publishFlagsProblem, readableFilters, scopeToClientId, writableFilters, type Principal } from './acl.ts';
import { addCredential, loadCredentials, type ScryptParams } from './auth.ts';
import { startBroker, type RunningBroker } from './index.ts';

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
const J = 'fedmq/v2/j';
const V1 = 'fedmq/v1/j';

/** A concrete topic of `kind` (version 3, chunk 0, round 2). */
const concrete = (kind: TopicKind, job: string, nodeId: string): string => topicFilter(kind, job, { version: 3, index: 0, round: 2, nodeId });
/** The filter of `kind` with `{nodeId}` set (the rest `+`). */
const filterFor = (kind: TopicKind, job: string, nodeId: string): string => topicFilter(kind, job, { nodeId });
const hasNodeId = (kind: TopicKind) => TOPIC_TABLE[kind].pattern.includes('{nodeId}');

// ------------------------------------------------- the matrix, derived from the topic table

/** The rules of acl.ts, restated from the brief directly over TOPIC_TABLE (not via readableFilters). */
function expectedPublish(p: Principal | null, kind: TopicKind, job: string, nodeId: string): boolean {
  if (!p) return false;
  const s = TOPIC_TABLE[kind];
  if (s.publisher !== p.role) return false;
  if (p.jobs !== '*' && !p.jobs.includes(job)) return false;
  return !(s.publisher === 'node' && hasNodeId(kind)) || nodeId === p.username;
}
function expectedSubscribe(p: Principal | null, kind: TopicKind, job: string, nodeId: string | '+'): boolean {
  if (!p) return false;
  if (p.jobs !== '*' && !p.jobs.includes(job)) return false;
  const readers: readonly string[] = TOPIC_TABLE[kind].readers;
  if (p.role === 'coordinator') return true; // fedmq/v2/{job}/# and the legacy rows: every kind
  if (readers.includes(p.role)) return true;
  return p.role === 'node' && readers.includes('self') && hasNodeId(kind) && nodeId === p.username;
}

describe('ACL matrix derived from TOPIC_TABLE: principal × kind × publish/subscribe', () => {
  const cells = COLUMNS.flatMap((name) => TOPIC_KINDS.map((kind) => ({ name, kind })));
  it.each(cells)('$name × $kind', ({ name, kind }) => {
    const p = who[name];
    const answers = (f: (job: string, nodeId: string) => boolean) => Object.fromEntries(['j', 'k'].flatMap((job) => ['A', 'B', '+'].map((n) => [`${job}:${n}`, f(job, n)])));
    const pub = (job: string, n: string) => (n === '+' ? false : canPublish(p, concrete(kind, job, n)));
    const sub = (job: string, n: string) => canSubscribe(p, n === '+' ? topicFilter(kind, job) : filterFor(kind, job, n));
    expect({ publish: answers(pub), subscribe: answers(sub) }).toEqual({
      publish: answers((job, n) => n !== '+' && expectedPublish(p, kind, job, n)),
      subscribe: answers((job, n) => expectedSubscribe(p, kind, job, n)),
    });
    // a topic with wildcards is never publishable
    expect(canPublish(p, topicFilter(kind, 'j'))).toBe(TOPIC_TABLE[kind].pattern.includes('{') ? false : expectedPublish(p, kind, 'j', 'A'));
  });

  it('canPublish is exactly "a valid fedmq topic inside writableFilters"', () => {
    for (const name of COLUMNS) {
      const p = who[name];
      for (const kind of TOPIC_KINDS) {
        for (const job of ['j', 'k']) {
          for (const n of ['A', 'B', 'C']) {
            const topic = concrete(kind, job, n);
            expect([name, topic, canPublish(p, topic)]).toEqual([name, topic, writableFilters(p).some((f) => filterWithin(topic, f))]);
          }
        }
      }
    }
  });

  it('every filter a role is given comes from the table (a row of its role, or the coordinator\'s job root)', () => {
    const fromTable = (p: Principal, f: string) => TOPIC_KINDS.some((kind) => ['j', 'k', '+'].some((job) => f === topicFilter(kind, job) || (hasNodeId(kind) && f === filterFor(kind, job, p.username))));
    for (const p of [...Object.values(who), { username: 'x', role: 'coordinator', jobs: '*' } as Principal]) {
      if (!p) continue;
      for (const f of readableFilters(p)) expect([p.username, f, fromTable(p, f) || (p.role === 'coordinator' && f.startsWith(`${TOPIC_ROOT}/`) && f.endsWith('/#'))]).toEqual([p.username, f, true]);
      for (const f of writableFilters(p)) expect([p.username, f, fromTable(p, f)]).toEqual([p.username, f, true]);
    }
  });

  it('the module TSDoc shows the generated matrix (aclTable)', async () => {
    const source = await readFile(new URL('./acl.ts', import.meta.url), 'utf8');
    const doc = source.split('\n').filter((l) => l.startsWith(' * |')).map((l) => l.slice(3)).join('\n');
    expect(doc).toBe(aclTable());
  });
});

// ------------------------------------------------- hand-written expectations (security-relevant)

/**
 * Expected answers, one character per principal in the order of COLUMNS
 * (nodeA nodeB nodeOtherJob coordinator coordinatorOtherJob monitor anonymous): 1 = allowed, . = denied.
 * Every topic is asked as a PUBLISH topic and as a SUBSCRIBE filter. Written by hand, not from the
 * table: a change of TOPIC_TABLE that opens one of these cells fails here.
 */
const MATRIX: [topic: string, publish: string, subscribe: string][] = [
  //                                        pub        sub
  [`${J}/coordinator/status`,              '...1...', '11.1.1.'],
  [`${J}/coordinator/stage`,               '...1...', '...1.1.'],
  [`${J}/coordinator/+`,                   '.......', '...1...'],
  [`${J}/coordinator/#`,                   '.......', '...1...'],
  [`${J}/models/3`,                        '...1...', '11.1...'],
  [`${J}/models/+`,                        '.......', '11.1...'],
  [`${J}/models/0`,                        '.......', '11.1...'], // versions count from 1: nobody can publish there
  [`${J}/models/3/chunks/0`,               '...1...', '11.1...'],
  [`${J}/models/+/chunks/+`,               '.......', '11.1...'],
  [`${J}/models/#`,                        '.......', '...1...'], // also matches fedmq/v2/j/models itself
  [`${J}/model/meta`,                      '...1...', '11.1.1.'],
  [`${J}/nodes/A/task`,                    '...1...', '1..1...'],
  [`${J}/nodes/B/task`,                    '...1...', '.1.1...'],
  [`${J}/nodes/+/task`,                    '.......', '...1...'],
  [`${J}/nodes/A/status`,                  '1......', '1..1.1.'],
  [`${J}/nodes/B/status`,                  '.1.....', '.1.1.1.'],
  [`${J}/nodes/+/status`,                  '.......', '...1.1.'],
  [`${J}/nodes/A/update`,                  '1......', '1..1...'],
  [`${J}/nodes/B/update`,                  '.1.....', '.1.1...'],
  [`${J}/nodes/+/update`,                  '.......', '...1...'],
  [`${J}/nodes/A/evaluation`,              '1......', '1..1...'],
  [`${J}/nodes/B/evaluation`,              '.1.....', '.1.1...'],
  [`${J}/nodes/+/evaluation`,              '.......', '...1...'],
  [`${J}/nodes/A/+`,                       '.......', '...1...'], // A's own topics, but inside no single allowed filter: denied
  [`${J}/nodes/A/#`,                       '.......', '...1...'],
  [`${J}/nodes/#`,                         '.......', '...1...'],
  [`${J}/nodes/+/#`,                       '.......', '...1...'],
  [`${J}/rounds/1/metrics`,                '...1...', '11.1.1.'],
  [`${J}/rounds/+/metrics`,                '.......', '11.1.1.'],
  [`${J}/rounds/0/metrics`,                '.......', '11.1.1.'], // rounds count from 1
  [`${J}/metrics`,                         '...1...', '11.1.1.'],
  [`${J}/other/topic`,                     '.......', '...1...'], // not in the table: only the coordinator's job root covers it
  [`${J}/#`,                               '.......', '...1...'],
  [`${J}/+`,                               '.......', '...1...'],
  [`${J}/+/status`,                        '.......', '...1...'],
  [`${J}`,                                 '.......', '...1...'], // the parent level of fedmq/v2/j/#
  [`${V1}/coordinator/status`,             '...1...', '11.1...'], // version detection
  [`${V1}/nodes/A/status`,                 '1......', '...1...'],
  [`${V1}/nodes/B/status`,                 '.1.....', '...1...'],
  [`${V1}/nodes/+/status`,                 '.......', '...1...'],
  [`${V1}/nodes/A/update`,                 '.......', '.......'], // nothing else of v1 is open
  [`${V1}/model`,                          '.......', '.......'],
  [`${V1}/task`,                           '.......', '.......'],
  [`${V1}/metrics`,                        '.......', '.......'],
  [`${V1}/#`,                              '.......', '.......'],
  [`${V1}/nodes/#`,                        '.......', '.......'],
  ['fedmq/v2/k/models/1',                  '....1..', '..1.1..'],
  ['fedmq/v2/k/nodes/C/update',            '..1....', '..1.1..'],
  ['fedmq/v2/k/nodes/C/task',              '....1..', '..1.1..'],
  ['fedmq/v2/k/nodes/A/update',            '.......', '....1..'],
  ['fedmq/v2/k/#',                         '.......', '....1..'],
  ['fedmq/v2/+/models/1',                  '.......', '.......'],
  ['fedmq/v2/+/nodes/+/update',            '.......', '.......'],
  ['fedmq/v2/+/#',                         '.......', '.......'],
  ['fedmq/v2/#',                           '.......', '.......'],
  ['fedmq/v3/j/metrics',                   '.......', '.......'],
  ['fedmq/#',                              '.......', '.......'],
  ['#',                                    '.......', '.......'],
  ['+',                                    '.......', '.......'],
  ['+/v2/j/models/1',                      '.......', '.......'],
  ['+/+/+/metrics',                        '.......', '.......'],
  ['$SYS/#',                               '.......', '.......'],
  ['$SYS/broker/clients/connected',        '.......', '.......'],
  ['$SYS/+/heartbeat',                     '.......', '.......'],
  ['other/topic',                          '.......', '.......'],
  ['',                                     '.......', '.......'],
];

describe('ACL matrix by hand: principal × topic × publish/subscribe', () => {
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

describe('ACL: the cells that matter for security', () => {
  const anyNode: Principal = { username: 'A', role: 'node', jobs: '*' };
  const anyCoordinator: Principal = { username: 'c', role: 'coordinator', jobs: '*' };
  const anyMonitor: Principal = { username: 'm', role: 'monitor', jobs: '*' };
  const nodes = [who.nodeA!, anyNode];

  it('a node cannot read another node\'s task, update, evaluation or status, nor nodes/+/…', () => {
    for (const p of nodes) {
      for (const job of ['j', '+']) {
        for (const f of [`nodes/B/task`, `nodes/+/task`, `nodes/B/update`, `nodes/+/update`, `nodes/B/evaluation`, `nodes/+/evaluation`, `nodes/B/status`, `nodes/+/status`, `nodes/#`, `nodes/+/#`, `nodes/A/#`]) {
          expect([p.jobs, f, canSubscribe(p, `fedmq/v2/${job}/${f}`)]).toEqual([p.jobs, f, false]);
        }
      }
    }
    // its own, yes
    for (const f of ['task', 'update', 'evaluation', 'status']) expect(canSubscribe(who.nodeA, `${J}/nodes/A/${f}`)).toBe(true);
  });

  it('a node cannot publish a model, a chunk, a task, metrics, or another node\'s status, update or evaluation', () => {
    for (const p of nodes) {
      for (const t of [`${J}/models/1`, `${J}/models/1/chunks/0`, `${J}/model/meta`, `${J}/nodes/A/task`, `${J}/nodes/B/task`, `${J}/coordinator/status`, `${J}/coordinator/stage`,
        `${J}/rounds/1/metrics`, `${J}/metrics`, `${J}/nodes/B/status`, `${J}/nodes/B/update`, `${J}/nodes/B/evaluation`, `${V1}/nodes/B/status`, `${V1}/coordinator/status`]) {
        expect([p.jobs, t, canPublish(p, t)]).toEqual([p.jobs, t, false]);
      }
    }
  });

  it('a monitor never reads models, chunks, tasks, updates or evaluation results, and publishes nothing', () => {
    for (const p of [who.monitor!, anyMonitor]) {
      for (const job of ['j', '+']) {
        for (const f of ['models/1', 'models/+', 'models/#', 'models/1/chunks/0', 'models/+/chunks/+', 'nodes/A/task', 'nodes/+/task', 'nodes/A/update', 'nodes/+/update',
          'nodes/A/evaluation', 'nodes/+/evaluation', 'nodes/#', 'nodes/+/+', '#', '+']) {
          expect([p.jobs, f, canSubscribe(p, `fedmq/v2/${job}/${f}`)]).toEqual([p.jobs, f, false]);
        }
      }
      expect(writableFilters(p)).toEqual([]);
    }
    for (const f of ['fedmq/v2/+/nodes/+/status', 'fedmq/v2/+/coordinator/status', 'fedmq/v2/+/coordinator/stage', 'fedmq/v2/+/rounds/+/metrics', 'fedmq/v2/+/model/meta', 'fedmq/v2/x/metrics']) {
      expect([f, canSubscribe(anyMonitor, f)]).toEqual([f, true]);
    }
  });

  it('fedmq/v2/j/# is granted to no node; # to nobody', () => {
    const everyone = [...Object.values(who), anyNode, anyCoordinator, anyMonitor];
    for (const p of [...nodes, who.nodeB, { username: 'j', role: 'node', jobs: ['j'] } as Principal]) {
      for (const f of [`${J}/#`, 'fedmq/v2/+/#', 'fedmq/v2/#', `${J}/+/#`]) expect([p?.username, f, canSubscribe(p, f)]).toEqual([p?.username, f, false]);
    }
    for (const p of everyone) {
      for (const f of ['#', '+/#', 'fedmq/#', '$SYS/#']) expect([p?.username, f, canSubscribe(p, f)]).toEqual([p?.username, f, false]);
    }
  });

  it('a coordinator reads everything of its jobs under fedmq/v2 and only the two legacy status kinds under fedmq/v1', () => {
    expect(readableFilters(who.coordinator)).toEqual([`${J}/#`, `${V1}/coordinator/status`, `${V1}/nodes/+/status`]);
    expect(readableFilters(anyCoordinator)).toEqual(['fedmq/v2/+/#', 'fedmq/v1/+/coordinator/status', 'fedmq/v1/+/nodes/+/status']);
    expect(canSubscribe(anyCoordinator, 'fedmq/v2/+/nodes/+/update')).toBe(true);
    expect(canSubscribe(anyCoordinator, 'fedmq/v2/#')).toBe(false); // also matches fedmq/v2 itself
    expect(canSubscribe(anyCoordinator, 'fedmq/v1/+/#')).toBe(false);
    expect(canPublish(anyCoordinator, 'fedmq/v2/x/nodes/A/task')).toBe(true);
    expect(canPublish(anyCoordinator, 'fedmq/v2/x/nodes/A/update')).toBe(false);
  });

  it('a node of every job still touches only its own node topics', () => {
    expect(canPublish(anyNode, 'fedmq/v2/x/nodes/A/update')).toBe(true);
    expect(canPublish(anyNode, 'fedmq/v2/y/nodes/A/evaluation')).toBe(true);
    expect(canPublish(anyNode, 'fedmq/v2/x/nodes/B/update')).toBe(false);
    expect(canSubscribe(anyNode, 'fedmq/v2/+/models/+')).toBe(true);
    expect(canSubscribe(anyNode, 'fedmq/v2/+/nodes/A/task')).toBe(true);
    expect(canSubscribe(anyNode, 'fedmq/v2/+/nodes/+/task')).toBe(false);
  });

  it('the filters themselves', () => {
    expect(readableFilters(who.monitor)).toEqual([
      `${J}/coordinator/status`, `${J}/coordinator/stage`, `${J}/model/meta`, `${J}/nodes/+/status`, `${J}/rounds/+/metrics`, `${J}/metrics`,
    ]);
    expect(readableFilters(who.nodeA)).toEqual([
      `${J}/coordinator/status`, `${J}/models/+`, `${J}/models/+/chunks/+`, `${J}/model/meta`, `${J}/nodes/A/task`, `${J}/nodes/A/status`, `${J}/nodes/A/update`,
      `${J}/nodes/A/secagg`, `${J}/nodes/A/evaluation`, `${J}/rounds/+/metrics`, `${J}/metrics`, `${V1}/coordinator/status`,
    ]);
    expect(writableFilters(who.nodeA)).toEqual([`${J}/nodes/A/status`, `${J}/nodes/A/update`, `${J}/nodes/A/secagg`, `${J}/nodes/A/evaluation`, `${V1}/nodes/A/status`]);
    // secure aggregation: a node answers its stage tasks on its own topic and reads no other node's
    expect(canPublish(who.nodeA, `${J}/nodes/B/secagg`)).toBe(false);
    expect(canSubscribe(who.nodeA, `${J}/nodes/B/secagg`)).toBe(false);
    expect(canSubscribe(who.nodeA, `${J}/nodes/+/secagg`)).toBe(false);
    expect(canSubscribe(who.coordinator, `${J}/nodes/+/secagg`)).toBe(true);
    expect(canSubscribe(who.monitor, `${J}/nodes/+/secagg`)).toBe(false);
    expect(writableFilters(who.coordinator)).toEqual([
      `${J}/coordinator/status`, `${J}/coordinator/stage`, `${J}/models/+`, `${J}/models/+/chunks/+`, `${J}/model/meta`, `${J}/nodes/+/task`, `${J}/rounds/+/metrics`, `${J}/metrics`, `${V1}/coordinator/status`,
    ]);
    expect(readableFilters(null)).toEqual([]);
    expect(writableFilters(null)).toEqual([]);
    // a node whose username is not a node id gets nothing (it could not be a topic level)
    expect(writableFilters({ username: 'a/b', role: 'node', jobs: ['j'] })).toEqual([]);
    expect(readableFilters({ username: '+', role: 'node', jobs: ['j'] })).toEqual([]);
    expect(canSubscribe({ username: '+', role: 'node', jobs: ['j'] }, `${J}/models/+`)).toBe(false);
    expect(ROLES).toEqual(['node', 'coordinator', 'monitor']);
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
    ['monitor with its username as id', who.monitor, who.monitor!.username, who.monitor],
    ['monitor with its username and a suffix', who.monitor, `${who.monitor!.username}-dash-1234`, who.monitor],
    ['monitor with a free-form id', who.monitor, 'fedmq-monitor-1234', null],
    ['monitor with another user\'s id', who.monitor, `other-${who.monitor!.username}`, null],
    ['monitor with its username as a prefix without the dash', who.monitor, `${who.monitor!.username}x`, null],
    ['monitor taking over a node session', who.monitor, 'fedmq:j:node:A', null],
    ['monitor taking over the coordinator session', who.monitor, 'fedmq:j:coordinator', null],
    ['anonymous', null, 'fedmq:j:node:A', null],
  ] as [string, Principal | null, string, Principal | null][])('%s', (_name, p, clientId, expected) => {
    expect(scopeToClientId(p, clientId)).toEqual(expected);
  });
});

describe('clientIdOwner: the longest username an id starts with (then "-")', () => {
  const users = new Set(['ops', 'ops-2', 'a.b']);
  it.each([
    ['ops', 'ops'], ['ops-dash-1', 'ops'], ['ops-2', 'ops-2'], ['ops-2-monitor-x', 'ops-2'], ['ops-3', 'ops'], ['opsx', undefined], ['a.b-1', 'a.b'], ['x-ops', undefined],
  ])('%s → %s', (id, owner) => {
    expect(clientIdOwner(id, (u) => users.has(u))).toBe(owner);
  });
  it('scopeToClientId with the users: ops may not take ops-2\'s ids', () => {
    const ops: Principal = { username: 'ops', role: 'monitor', jobs: '*' };
    expect(scopeToClientId(ops, 'ops-2', (u) => users.has(u))).toBeNull();
    expect(scopeToClientId(ops, 'ops-2-dash-1', (u) => users.has(u))).toBeNull();
    expect(scopeToClientId(ops, 'ops-3', (u) => users.has(u))).toEqual(ops);
  });
});

describe('publishFlagsProblem: retain and Last Will only where the topic table has them', () => {
  it('follows the retain and will columns of every row', () => {
    for (const kind of TOPIC_KINDS) {
      const row = TOPIC_TABLE[kind];
      const topic = topicFilter(kind, 'j', { nodeId: 'n1', version: 1, index: 0, round: 1 });
      expect([kind, publishFlagsProblem(topic, { retain: true, payloadBytes: 3 }) === undefined]).toEqual([kind, row.retain]);
      expect([kind, publishFlagsProblem(topic, { retain: false, will: true }) === undefined]).toEqual([kind, row.will]);
      expect([kind, publishFlagsProblem(topic, { retain: false, payloadBytes: 3 })]).toEqual([kind, undefined]);
    }
  });
  it('refuses a retained update, task or evaluation result and a will on them; allows an empty retained payload (it deletes)', () => {
    expect(publishFlagsProblem(topics.nodeUpdate('j', 'n1'), { retain: true, payloadBytes: 1 })).toMatch(/retained message on nodeUpdate/);
    expect(publishFlagsProblem(topics.nodeTask('j', 'n1'), { retain: true, payloadBytes: 1 })).toMatch(/nodeTask/);
    expect(publishFlagsProblem(topics.nodeUpdate('j', 'n1'), { retain: false, will: true })).toMatch(/Last Will on nodeUpdate/);
    expect(publishFlagsProblem(topics.nodeUpdate('j', 'n1'), { retain: true, payloadBytes: 0 })).toBeUndefined();
    expect(publishFlagsProblem(topics.nodeStatus('j', 'n1'), { retain: true, will: true })).toBeUndefined();
    expect(publishFlagsProblem('not/a/fedmq/topic', { retain: true, will: true })).toBeUndefined();
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
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: topics.nodeStatus('j', 'B'), payload: Buffer.from('x'), qos: 1, retain: true } })).toBe(5);
    const r = await rejections();
    expect([r.get('anonymous'), r.get('bad_credentials'), r.get('client_id_not_allowed'), r.get('will_denied')]).toEqual([1, 2, 3, 1]);
  });

  it('node A cannot read node B\'s task or update; the coordinator receives the update; a node cannot publish a model', async () => {
    const coord = await connect({ clientId: 'fedmq:j:coordinator', username: 'coord', password: pw.coord });
    const a = await connect({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: topics.nodeStatus('j', 'A'), payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true } });
    const b = await connect({ clientId: 'fedmq:j:node:B', username: 'B', password: pw.B });
    const mon = await connect({ clientId: 'mon-monitor-test', username: 'mon', password: pw.mon });

    const seenByA: string[] = [];
    a.on('message', (t) => seenByA.push(t));
    // mqtt.js fails a whole SUBSCRIBE when one filter gets 0x80, so ask one filter at a time
    const grant = (c: MqttClient, filter: string) => c.subscribeAsync(filter, { qos: 1 }).then((g) => g[0].qos, (err: { packet?: { granted?: number[] } }) => err.packet?.granted?.[0]);
    const deniedToA = [topics.nodeTask('j', 'B'), topicFilter('nodeTask', 'j'), topics.nodeUpdate('j', 'B'), topicFilter('nodeUpdate', 'j'), topics.nodeStatus('j', 'B'), topicFilter('all', 'j'), '#', '$SYS/#'];
    for (const f of deniedToA) expect([f, await grant(a, f)]).toEqual([f, 128]);
    expect(await grant(a, topics.nodeTask('j', 'A'))).toBe(1);
    expect(await grant(a, topicFilter('model', 'j'))).toBe(1);
    expect(await grant(mon, topicFilter('nodeStatus', 'j'))).toBe(1);
    const deniedToMonitor = [topicFilter('nodeUpdate', 'j'), topicFilter('model', 'j'), topicFilter('nodeTask', 'j'), topicFilter('nodeEvaluation', 'j')];
    for (const f of deniedToMonitor) expect([f, await grant(mon, f)]).toEqual([f, 128]);
    await coord.subscribeAsync({ [topicFilter('nodeUpdate', 'j')]: { qos: 1 }, [topicFilter('model', 'j')]: { qos: 1 } });

    const atCoordinator = new Promise<[string, string]>((resolve) => coord.on('message', (t, p) => t.endsWith('/update') && resolve([t, p.toString()])));
    await b.publishAsync(topics.nodeUpdate('j', 'B'), 'delta of B', { qos: 1 });
    expect(await atCoordinator).toEqual([topics.nodeUpdate('j', 'B'), 'delta of B']);
    // the broker has routed B's update and B's task before A's task; anything for A would be queued before A's
    const taskAtA = new Promise<void>((resolve) => a.on('message', (t) => t === topics.nodeTask('j', 'A') && resolve()));
    await coord.publishAsync(topics.nodeTask('j', 'B'), '{"stage":"fit","taskId":1}', { qos: 1 });
    await coord.publishAsync(topics.nodeTask('j', 'A'), '{"stage":"fit","taskId":2}', { qos: 1 });
    await taskAtA;
    expect(seenByA).toEqual([topics.nodeTask('j', 'A')]);

    // a node publishing a global model is disconnected, and the model never reaches the coordinator;
    // its Last Will (on its own status topic, so allowed) goes out
    const modelsAtCoordinator: string[] = [];
    coord.on('message', (t, p) => t === topics.model('j', 1) && modelsAtCoordinator.push(p.toString()));
    await mon.subscribeAsync(topicFilter('nodeStatus', 'j'), { qos: 1 });
    const willAtMonitor = new Promise<string>((resolve) => mon.on('message', (t, p) => t === topics.nodeStatus('j', 'A') && resolve(p.toString())));
    const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
    a.publish(topics.model('j', 1), 'poisoned model', { qos: 1 });
    await closed;
    expect(await willAtMonitor).toBe('{"state":"offline"}');
    const realModel = new Promise<string>((resolve) => coord.on('message', (t, p) => t === topics.model('j', 1) && resolve(p.toString())));
    await coord.publishAsync(topics.model('j', 1), 'real model', { qos: 1 });
    expect(await realModel).toBe('real model');
    expect(modelsAtCoordinator).toEqual(['real model']);
    const r = await rejections();
    expect(r.get('publish_denied')).toBe(1);
    expect(r.get('subscribe_denied')).toBe(deniedToA.length + deniedToMonitor.length);
  });
});

describe('monitor client ids and retained junk on a real broker', () => {
  let dir: string;
  let broker: RunningBroker;
  const pw: Record<string, string> = {};
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedmq-acl2-'));
    const file = join(dir, 'creds.json');
    pw.A = await addCredential(file, { username: 'A', role: 'node', jobs: ['j'] }, FAST);
    pw.coord = await addCredential(file, { username: 'coord', role: 'coordinator', jobs: ['j'] }, FAST);
    pw.ops = await addCredential(file, { username: 'ops', role: 'monitor', jobs: ['j'] }, FAST);
    pw.ops2 = await addCredential(file, { username: 'ops-2', role: 'monitor', jobs: ['j'] }, FAST);
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

  it('monitor ops cannot connect with ops-2\'s ids (CONNACK 2), so it cannot kick ops-2 off; ops connects twice with two suffixes', async () => {
    const b = await connect({ clientId: 'ops-2-dash-abc', username: 'ops-2', password: pw.ops2 });
    expect(await refusal({ clientId: 'ops-2-dash-abc', username: 'ops', password: pw.ops })).toBe(2);
    expect(await refusal({ clientId: 'ops-2', username: 'ops', password: pw.ops })).toBe(2);
    expect(await refusal({ clientId: 'fedmq-monitor-1', username: 'ops', password: pw.ops })).toBe(2);
    expect(b.connected).toBe(true);
    const one = await connect({ clientId: 'ops-monitor-1', username: 'ops', password: pw.ops });
    const two = await connect({ clientId: 'ops-dash-2', username: 'ops', password: pw.ops });
    expect([one.connected, two.connected, b.connected]).toEqual([true, true, true]);
    expect((await rejections()).get('client_id_not_allowed')).toBe(3);
  });

  it('a node cannot leave a retained update (disconnected, publish_denied) nor a Last Will on its update topic (CONNACK 5); the coordinator finds no junk', async () => {
    const before = await rejections();
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: topics.nodeUpdate('j', 'A'), payload: Buffer.from('junk will'), qos: 1, retain: false } })).toBe(5);
    const a = await connect({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A });
    const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
    a.publish(topics.nodeUpdate('j', 'A'), 'retained junk', { qos: 1, retain: true });
    await closed;
    const after = await rejections();
    expect([after.get('will_denied')! - before.get('will_denied')!, after.get('publish_denied')! - before.get('publish_denied')!]).toEqual([1, 1]);
    // the coordinator subscribes after the attempt: nothing retained comes; a fresh update does, not retained
    const coord = await connect({ clientId: 'fedmq:j:coordinator', username: 'coord', password: pw.coord });
    const got: [string, boolean][] = [];
    coord.on('message', (_t, p, packet) => got.push([p.toString(), packet.retain]));
    await coord.subscribeAsync(topicFilter('nodeUpdate', 'j'), { qos: 1 });
    const a2 = await connect({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A });
    const arrived = new Promise<void>((resolve) => coord.on('message', () => resolve()));
    await a2.publishAsync(topics.nodeUpdate('j', 'A'), 'real update', { qos: 1 });
    await arrived;
    expect(got).toEqual([['real update', false]]);
    // a node's will on its own status, retained, is still allowed
    expect(await refusal({ clientId: 'fedmq:j:node:A', username: 'A', password: pw.A, will: { topic: topics.nodeStatus('j', 'A'), payload: Buffer.from('{}'), qos: 1, retain: true } })).toBe('connected');
  });
});

describe('the byte rate by role on a real broker with auth', () => {
  it('limits a node, not an authenticated coordinator (loopback exemption off)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedmq-acl3-'));
    const file = join(dir, 'creds.json');
    const pwA = await addCredential(file, { username: 'A', role: 'node', jobs: ['j'] }, FAST);
    const pwC = await addCredential(file, { username: 'coord', role: 'coordinator', jobs: ['j'] }, FAST);
    const broker = await startBroker({
      port: 0, host: '127.0.0.1', auth: await loadCredentials(file), limits: { byteRate: { bytesPerSecond: 256 * 1024, burstBytes: 32 * 1024 }, exemptLoopback: false },
    });
    const byteRate = async () => (await broker.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values.find((v) => v.labels.reason === 'byte_rate')!.value;
    const coord = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, clientId: 'fedmq:j:coordinator', username: 'coord', password: pwC });
    const node = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, clientId: 'fedmq:j:node:A', username: 'A', password: pwA });
    await node.subscribeAsync(topicFilter('model', 'j'), { qos: 1 });
    const model = new Promise<number>((resolve) => node.on('message', (_t, p) => resolve(p.length)));
    await coord.publishAsync(topics.model('j', 1), Buffer.alloc(128 * 1024), { qos: 1, retain: true }); // 4 × the burst
    expect(await model).toBe(128 * 1024);
    expect(await byteRate()).toBe(0);
    await coord.subscribeAsync(topicFilter('nodeUpdate', 'j'), { qos: 1 });
    const update = new Promise<number>((resolve) => coord.on('message', (t, p) => t.endsWith('/update') && resolve(p.length)));
    await node.publishAsync(topics.nodeUpdate('j', 'A'), Buffer.alloc(128 * 1024), { qos: 1 });
    expect(await update).toBe(128 * 1024); // delayed, not lost
    expect(await byteRate()).toBeGreaterThanOrEqual(1);
    await Promise.all([coord.endAsync(), node.endAsync()]);
    await broker.close();
    await rm(dir, { recursive: true, force: true });
  });
});
