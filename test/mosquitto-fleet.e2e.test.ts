/**
 * docs/mosquitto-fleet.conf and docs/mosquitto-fleet.acl, run by Debian's mosquitto 2.0.11
 * (/usr/sbin/mosquitto) as the docs give them — only the listener's port and the paths of the
 * password file, the ACL file and the persistence folder are replaced (to a free port and a temp
 * folder); the test fails if any of those lines is missing, so the file and the test stay one.
 *
 * - The ACL file is exactly fedmq's ACL (writableFilters/readableFilters of each role, every job).
 * - A burst of 2,000 QoS 1 updates queued for a coordinator that is away: all 2,000 arrive with
 *   the fleet configuration; with mosquitto's default configuration (max_queued_messages 1000)
 *   fewer do, silently (the count is printed).
 * - A real round: a Coordinator (user coordinator@fedmq) and 4 simulated nodes (username = node
 *   id) train 2 FedAvg rounds on a slice of MNIST, every update accepted; a monitor user reads
 *   the round metrics. Anonymous clients are refused, and a node does not get another node's task.
 *
 * No mosquitto is a FAILURE with the apt-get line, never a skip.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, readableFilters, writableFilters, type Role } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import type { FedmqError, RoundRecord } from '@fedmq/protocol';
import { startSimulation, type Simulation } from '@fedmq/simulator';

const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';
const CONF = new URL('../docs/mosquitto-fleet.conf', import.meta.url);
const ACL = new URL('../docs/mosquitto-fleet.acl', import.meta.url);
const run = promisify(execFile);
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

const COORDINATOR = 'coordinator@fedmq';
const MONITOR = 'monitor@fedmq';
const PASSWORD = 'fleet-test-password';

/** A running mosquitto: its URL, its log, and `stop()`. */
interface Mosquitto {
  url: string;
  log: () => string;
  stop(): Promise<void>;
}

/** Starts mosquitto with `args`, `port` chosen by `withPort`; retries on another port if it was taken meanwhile. */
async function startMosquitto(withPort: (port: number) => Promise<string[]>): Promise<Mosquitto> {
  if (!existsSync(MOSQUITTO) || !existsSync(MOSQUITTO_PASSWD)) throw new Error(`${MOSQUITTO} not found: this test needs Debian's mosquitto (apt-get install mosquitto; npm test installs it when run as root)`);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const proc: ChildProcess = spawn(MOSQUITTO, await withPort(port), { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const collect = (b: Buffer) => (log += b.toString());
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    const exited = once(proc, 'exit');
    const up = await new Promise<boolean>((resolve) => {
      // not /running/: the default config's "clients running on this machine" comes before the listeners
      const check = () => /mosquitto version \S+ running/.test(log) && resolve(true);
      proc.stdout!.on('data', check);
      proc.stderr!.on('data', check);
      void exited.then(() => resolve(false));
    });
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    };
    if (up) return { url: `mqtt://127.0.0.1:${port}`, log: () => log, stop };
    if (attempt >= 5 || !/address already in use/i.test(log)) throw new Error(`mosquitto exited: ${log}`);
  }
}

/** docs/mosquitto-fleet.conf with its port and paths replaced; throws if one of those lines is not there exactly once. */
function testConfig(conf: string, port: number, dir: string): string {
  const replace: Record<string, string> = {
    listener: `listener ${port} 127.0.0.1`,
    password_file: `password_file ${join(dir, 'fedmq.passwd')}`,
    acl_file: `acl_file ${join(dir, 'fedmq.acl')}`,
    persistence_location: `persistence_location ${dir}/`,
  };
  const lines = conf.split('\n');
  for (const [key, line] of Object.entries(replace)) {
    const at = lines.flatMap((l, i) => (l.split(/\s+/)[0] === key ? [i] : []));
    if (at.length !== 1) throw new Error(`docs/mosquitto-fleet.conf: expected one ${key} line, found ${at.length}`);
    lines[at[0]] = line;
  }
  return lines.join('\n');
}

/** The ACL file's rules as `{role} {read|write} {filter}` (node patterns with %u → NODEID). */
function aclRules(acl: string): string[] {
  const out: string[] = [];
  let user: string | undefined;
  for (const raw of acl.split('\n')) {
    const l = raw.trim();
    if (l === '' || l.startsWith('#')) continue;
    const [kw, a, b] = l.split(/\s+/);
    if (kw === 'user') {
      user = a;
      continue;
    }
    const [access, filter] = b === undefined ? ['readwrite', a] : [a, b];
    const who = kw === 'pattern' ? 'node' : user === COORDINATOR ? 'coordinator' : user === MONITOR ? 'monitor' : `?${user}`;
    for (const x of access === 'readwrite' ? ['read', 'write'] : [access]) out.push(`${who} ${x} ${filter.replace('%u', 'NODEID')}`);
  }
  return out.sort();
}

/**
 * 2,000 QoS 1 updates (from node n-000) queued for a persistent coordinator session while it is
 * away; the number of them that arrive once it is back. mosquitto queues in order and drops what
 * comes when the queue is full, so what is kept is u0 … uK, K ≥ 999 at the default limit of 1,000:
 * once 1,000 arrived, a marker published then is queued behind the rest and ends the count.
 */
async function burstWhileAway(url: string, auth: (user: string) => mqtt.IClientOptions): Promise<number> {
  const job = 'burst';
  const opts = { clientId: `fedmq:${job}:coordinator`, clean: false, reconnectPeriod: 0, ...auth(COORDINATOR) };
  const coord = await mqtt.connectAsync(url, opts);
  await coord.subscribeAsync(`fedmq/v2/${job}/nodes/+/update`, { qos: 1 });
  await coord.endAsync();
  const node = await mqtt.connectAsync(url, { clientId: `fedmq:${job}:node:n-000`, reconnectPeriod: 0, ...auth('n-000') });
  const topic = `fedmq/v2/${job}/nodes/n-000/update`;
  await Promise.all(range(0, 2000).map((i) => node.publishAsync(topic, `u${i}`, { qos: 1 })));
  const back = mqtt.connect(url, opts);
  try {
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      back.on('message', (_t, p) => {
        const m = p.toString();
        if (m === 'marker') return resolve();
        got.push(m);
        if (got.length === 1000) node.publishAsync(topic, 'marker', { qos: 1 }).catch(reject);
      });
    });
    expect(got).toEqual(range(0, got.length).map((i) => `u${i}`)); // in order, a prefix
    return got.length;
  } finally {
    await back.endAsync(true);
    await node.endAsync(true);
  }
}

describe('docs/mosquitto-fleet.conf on mosquitto 2.0.11', () => {
  let dir: string;
  let broker: Mosquitto | undefined;
  const users = [COORDINATOR, MONITOR, 'n-000', ...range(0, 4).map((i) => `node-00${i}`)];
  const auth = (username: string) => ({ username, password: PASSWORD });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fedmq-mosquitto-'));
    const passwd = join(dir, 'fedmq.passwd');
    for (const [i, u] of users.entries()) await run(MOSQUITTO_PASSWD, [...(i === 0 ? ['-c'] : []), '-b', passwd, u, PASSWORD]);
    await writeFile(join(dir, 'fedmq.acl'), await readFile(ACL, 'utf8'));
    const conf = await readFile(CONF, 'utf8');
    broker = await startMosquitto(async (port) => {
      await writeFile(join(dir, 'fedmq.conf'), testConfig(conf, port, dir));
      // started as root, mosquitto runs as its own user (Debian's `mosquitto`): the folder must be theirs
      if (process.getuid?.() === 0) await run('chown', ['-R', 'mosquitto:', dir]);
      return ['-c', join(dir, 'fedmq.conf')];
    });
  });
  afterAll(async () => {
    await broker?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the ACL file is fedmq\'s ACL: the filters of writableFilters/readableFilters for each role', async () => {
    const expected = (['node', 'coordinator', 'monitor'] as Role[]).flatMap((role) => {
      const p = { username: 'NODEID', role, jobs: '*' as const };
      return [...writableFilters(p).map((f) => `${role} write ${f}`), ...readableFilters(p).map((f) => `${role} read ${f}`)];
    });
    expect(aclRules(await readFile(ACL, 'utf8'))).toEqual(expected.sort());
  });

  it('refuses anonymous clients; a node may not read another node\'s task', async () => {
    const anon = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0 }).then(async (c) => (await c.endAsync(true), 'connected'), (err: Error) => err.message);
    expect(anon).toMatch(/not authorized/i);
    const node = await mqtt.connectAsync(broker!.url, { clientId: 'fedmq:j:node:node-000', reconnectPeriod: 0, ...auth('node-000') });
    const coord = await mqtt.connectAsync(broker!.url, { clientId: 'fedmq:j:coordinator', reconnectPeriod: 0, ...auth(COORDINATOR) });
    try {
      // mosquitto 2.0.11 grants the SUBSCRIBE and checks each message instead
      await node.subscribeAsync({ 'fedmq/v2/j/nodes/node-000/task': { qos: 1 }, 'fedmq/v2/j/nodes/node-001/task': { qos: 1 } });
      const first = new Promise<string>((resolve) => node.once('message', (topic) => resolve(topic)));
      // in this order, on one connection: node-001's task would reach node-000 first if the ACL let it through
      await coord.publishAsync('fedmq/v2/j/nodes/node-001/task', 'not yours', { qos: 1 });
      await coord.publishAsync('fedmq/v2/j/nodes/node-000/task', 'yours', { qos: 1 });
      expect(await first).toBe('fedmq/v2/j/nodes/node-000/task');
    } finally {
      await node.endAsync(true);
      await coord.endAsync(true);
    }
  });

  it('a burst of 2,000 QoS 1 updates queued for an absent coordinator all arrive (mosquitto\'s default config drops some)', { timeout: 120_000 }, async () => {
    expect(await burstWhileAway(broker!.url, auth)).toBe(2000);
    const stock = await startMosquitto(async (port) => ['-p', String(port)]);
    try {
      const kept = await burstWhileAway(stock.url, () => ({}));
      process.stderr.write(`mosquitto's default configuration: ${kept} of 2000 queued QoS 1 updates arrived\n`);
      expect(kept).toBeLessThan(2000);
    } finally {
      await stock.stop();
    }
  });

  it('a coordinator and 4 nodes train 2 FedAvg rounds: every update accepted; a monitor reads the metrics', { timeout: 240_000 }, async () => {
    await initBackend('wasm');
    const job = 'mq-fleet';
    const monitor = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, ...auth(MONITOR) });
    const metrics: number[] = [];
    monitor.on('message', (topic) => metrics.push(Number(topic.split('/')[4])));
    expect((await monitor.subscribeAsync(`fedmq/v2/${job}/rounds/+/metrics`, { qos: 1 })).map((g) => g.qos)).toEqual([1]);
    const coordinator = new Coordinator({
      brokerUrl: broker!.url, job, model: 'mnist-2nn', rounds: 2, minAvailableNodes: 4, deadlineMs: 120_000, seed: 42, mqtt: auth(COORDINATOR),
      testData: subset(loadMnist('test'), range(0, 500)),
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 4, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
    });
    const accepted: string[] = [];
    const rejected: string[] = [];
    coordinator.on('accepted', (a) => accepted.push(`${a.round}/${a.nodeId}`));
    coordinator.on('rejected', (r: { error: FedmqError; nodeId?: string; round: number }) => rejected.push(`${r.round}/${r.nodeId}: ${r.error.code}`));
    let sim: Simulation | undefined;
    try {
      const history = coordinator.run();
      sim = await startSimulation({
        brokerUrl: broker!.url, job, nodes: 4, train: subset(loadMnist('train'), range(0, 1200)), partition: { kind: 'iid' }, seed: 1, workers: 1,
        mqtt: (nodeId) => auth(nodeId),
      });
      const records: RoundRecord[] = await history;
      expect(rejected).toEqual([]);
      expect(records.map((r) => [r.round, r.selected, r.reported])).toEqual([[1, 4, 4], [2, 4, 4]]);
      expect(accepted.sort()).toEqual([1, 2].flatMap((round) => range(0, 4).map((i) => `${round}/node-00${i}`)).sort());
      expect(records[1].testAccuracy!).toBeGreaterThan(0.5);
      expect(metrics).toEqual([1, 2]);
    } finally {
      await sim?.stop();
      await coordinator.close();
      await monitor.endAsync(true);
    }
    expect(broker!.log()).not.toMatch(/denied|dropp/i);
  });
});
