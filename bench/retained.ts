/**
 * Connect cost with N retained node statuses (docs/scale.md, "Retained messages and connect
 * cost"). For each N and each memory store:
 *
 * 1. start fedmq's broker (`startBroker`, port 0, connection rate limit off) with aedes-persistence
 *    11's stock memory store, or with fedmq's indexed one (`startBroker`'s default);
 * 2. publish N retained NodeStatus messages on `fedmq/v2/{job}/nodes/{nodeId}/status` (QoS 1, one
 *    publisher client), plus the coordinator's retained status, as a fleet of N nodes leaves them;
 * 3. measure, at the broker's persistence, the retained lookup of one node's SUBSCRIBE (the three
 *    filters an EdgeNode subscribes to at connect: its task, `coordinator/status` and v1's
 *    `coordinator/status`; `createRetainedStreamCombi`, drained): process CPU µs per call, mean of
 *    up to 200 calls (fewer when they take over 2 s);
 * 4. connect new nodes and announce them as EdgeNode does (client id `fedmq:{job}:node:{id}`,
 *    clean: false, retained Last Will, connectTimeout 10 s; SUBSCRIBE to those three filters at
 *    QoS 1; the retained coordinator status received; own status published, QoS 1, retained):
 *    first `--seq` nodes one at a time (median CONNECT → PUBACK of the status), then `--m` nodes
 *    all at once (wall time until the last PUBACK, connack timeouts and other failures, and the
 *    process's CPU time for it: broker and clients share the process). The retained lookup runs
 *    after the SUBACK, so a CONNECT → SUBACK time would not include it;
 * 5. separately, `--scratch` nodes announce all at once into an empty broker (a fleet starting,
 *    or coming back after a broker restart): wall time, CPU time, failures.
 *
 * With each burst, the kernel's TcpExt ListenOverflows delta (/proc/net/netstat; system-wide, so
 * other processes' connects count too): connections dropped because the broker's accept queue
 * was full, which the client retries after 1 s, 3 s, 7 s and may then hit its connack timeout.
 *
 *   npm run bench:retained [-- --n 1000,3000,10000 --m 200 --seq 20 --scratch 1000,3000 --stores stock,indexed]
 *
 * Prints two tables and writes bench/results/retained.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import type { Readable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type BrokerPersistence, type RunningBroker } from '@fedmq/broker';
import { PROTOCOL_VERSION, encodeJson, topics, type NodeStatus } from '@fedmq/protocol';
import { arg } from './lib.ts';

const require = createRequire(import.meta.url);
const stockMemory = require('aedes-persistence') as () => BrokerPersistence;

const Ns = arg('n', '1000,3000,10000').split(',').filter(Boolean).map(Number);
const M = Number(arg('m', '200'));
const SEQ = Number(arg('seq', '20'));
const SCRATCH = arg('scratch', '1000,3000').split(',').filter(Boolean).map(Number);
const STORES = arg('stores', 'stock,indexed').split(',') as ('stock' | 'indexed')[];
const MAX_LOOKUPS = 200;
const JOB = 'bench-retained';
const CONNECT_TIMEOUT_MS = 10_000; // EdgeNode's

const status = (nodeId: string, state: NodeStatus['state']): Buffer => encodeJson({
  v: PROTOCOL_VERSION, job: JOB, nodeId, state, ts: Date.now(), numExamples: 6000, model: 'mnist-2nn',
  device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3906, backend: 'wasm' },
} satisfies NodeStatus);
/** The filters an EdgeNode subscribes to on every (re)connect (edge-node/src/node.ts, announce). */
const nodeFilters = (nodeId: string) => [topics.nodeTask(JOB, nodeId), topics.coordinatorStatus(JOB), topics.legacyCoordinatorStatus(JOB)];

async function startWith(store: 'stock' | 'indexed'): Promise<RunningBroker> {
  const common = { port: 0, host: '127.0.0.1', limits: { connectionRate: false as const } };
  return store === 'stock' ? startBroker({ ...common, aedes: { persistence: stockMemory() } }) : startBroker(common);
}

/** N retained node statuses and the coordinator's status, through one client. */
async function fill(broker: RunningBroker, n: number): Promise<void> {
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'bench-publisher', reconnectPeriod: 0 });
  await pub.publishAsync(topics.coordinatorStatus(JOB), encodeJson({ v: PROTOCOL_VERSION, job: JOB, runId: 'r1', state: 'running', round: 0 }), { qos: 1, retain: true });
  for (let i = 0; i < n; i += 500) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(n, i + 500); j++) batch.push(pub.publishAsync(topics.nodeStatus(JOB, `n${j}`), status(`n${j}`, 'idle'), { qos: 1, retain: true }));
    await Promise.all(batch);
  }
  await pub.endAsync();
}

/** Mean CPU µs of one node's retained lookup at the broker's persistence: up to 200 calls, at most ~2 s. */
async function lookupMicros(broker: RunningBroker): Promise<number> {
  const persistence = (broker.aedes as unknown as { persistence: { createRetainedStreamCombi(f: string[]): Readable } }).persistence;
  const w0 = performance.now(); // JIT warm-up: up to 100 calls or 1 s
  for (let i = 0; i < 100 && performance.now() - w0 < 1000; i++) await persistence.createRetainedStreamCombi(nodeFilters(`warm${i}`)).toArray();
  let calls = 0;
  let found = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (calls < MAX_LOOKUPS && (calls < 5 || performance.now() - t0 < 2000)) found += (await persistence.createRetainedStreamCombi(nodeFilters(`new${calls++}`)).toArray()).length;
  const cpu = process.cpuUsage(cpu0);
  if (found !== calls) throw new Error(`expected 1 retained message per lookup (coordinator/status), got ${found / calls}`);
  return (cpu.user + cpu.system) / calls;
}

/**
 * A node's announce as EdgeNode does it on connect: CONNECT (persistent session, retained Last
 * Will, 10 s connectTimeout), SUBSCRIBE to its three filters at QoS 1, the retained coordinator
 * status received, its own status published (QoS 1, retained) and acknowledged. Resolves with the
 * ms from CONNECT to that PUBACK; rejects on a connack timeout or a closed connection.
 */
async function announceNode(broker: RunningBroker, nodeId: string, clients: MqttClient[]): Promise<number> {
  const t0 = performance.now();
  const c = mqtt.connect(broker.url, {
    clientId: `fedmq:${JOB}:node:${nodeId}`, clean: false, connectTimeout: CONNECT_TIMEOUT_MS, reconnectPeriod: 0,
    will: { topic: topics.nodeStatus(JOB, nodeId), payload: status(nodeId, 'offline'), qos: 1, retain: true },
  });
  clients.push(c);
  const coordinator = topics.coordinatorStatus(JOB);
  const gotCoordinator = new Promise<void>((resolve) => c.on('message', (topic) => topic === coordinator && resolve()));
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
  await c.subscribeAsync(Object.fromEntries(nodeFilters(nodeId).map((f) => [f, { qos: 1 as const }])));
  await gotCoordinator;
  await c.publishAsync(topics.nodeStatus(JOB, nodeId), status(nodeId, 'idle'), { qos: 1, retain: true });
  return performance.now() - t0;
}

interface Burst {
  nodes: number; wallS: number; cpuS: number; failed: number; errors: Record<string, number>;
  /** TcpExt ListenOverflows during the burst (kernel, system-wide; null where /proc/net/netstat is missing). */
  listenOverflows: number | null;
}

/** The kernel's count of connections dropped because a listen queue was full (Linux /proc/net/netstat, TcpExt ListenOverflows). */
function listenOverflows(): number | null {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    const i = names.indexOf('ListenOverflows');
    return i > 0 ? Number(values[i]) : null;
  } catch {
    return null;
  }
}
const countBy = (xs: string[]) => xs.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x]: (acc[x] ?? 0) + 1 }), {});

/** `count` nodes announcing at once: wall time until the last one settled, the process's CPU time, failures by message. */
async function burst(broker: RunningBroker, prefix: string, count: number, clients: MqttClient[]): Promise<Burst> {
  const overflows0 = listenOverflows();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => announceNode(broker, `${prefix}${i}`, clients)));
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const overflows1 = listenOverflows();
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  return {
    nodes: count, wallS, cpuS: (cpu.user + cpu.system) / 1e6, failed: failures.length, errors: countBy(failures.map((f) => (f.reason as Error).message)),
    listenOverflows: overflows0 === null || overflows1 === null ? null : overflows1 - overflows0,
  };
}

/** Starts a broker with `store`, runs `body`, closes every client and the broker. */
async function withBroker<T>(store: 'stock' | 'indexed', body: (broker: RunningBroker, clients: MqttClient[]) => Promise<T>): Promise<T> {
  const broker = await startWith(store);
  const clients: MqttClient[] = [];
  try {
    return await body(broker, clients);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.close();
  }
}

interface Row { store: string; retained: number; lookupUs: number; seqMedianMs: number; burst: Burst }
const rows: Row[] = [];
for (const n of Ns) {
  for (const store of STORES) {
    const row = await withBroker(store, async (broker, clients) => {
      await fill(broker, n);
      const lookupUs = await lookupMicros(broker);
      const seq: number[] = [];
      for (let i = 0; i < SEQ; i++) seq.push(await announceNode(broker, `seq${i}`, clients));
      seq.sort((a, b) => a - b);
      return { store, retained: n, lookupUs, seqMedianMs: seq[Math.floor(seq.length / 2)], burst: await burst(broker, 'm', M, clients) };
    });
    rows.push(row);
    console.error(`N=${n} ${store}: lookup ${row.lookupUs.toFixed(1)} µs, one node ${row.seqMedianMs.toFixed(1)} ms, ${M} at once ${row.burst.wallS.toFixed(2)} s, failed ${JSON.stringify(row.burst.errors)}`);
  }
}
const scratch: (Burst & { store: string })[] = [];
for (const n of SCRATCH) {
  for (const store of STORES) {
    const b = await withBroker(store, async (broker, clients) => {
      await fill(broker, 0);
      return burst(broker, 'n', n, clients);
    });
    scratch.push({ store, ...b });
    console.error(`${n} nodes into an empty broker, ${store}: ${b.wallS.toFixed(2)} s, failed ${JSON.stringify(b.errors)}`);
  }
}

const loadavg = os.loadavg().map((l) => l.toFixed(1)).join(' ');
console.log(`\nN retained node statuses, then new nodes announce (node ${process.version}, ${os.cpus().length} cores, load average at the end ${loadavg})`);
console.log(`| retained N | store | one node's retained lookup (CPU µs, at the persistence) | one node's announce, one at a time (median ms) | ${M} nodes at once: wall (s) | CPU (s) | failed | listen queue overflows |`);
console.log('|---:|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.retained} | ${r.store} | ${r.lookupUs.toFixed(1)} | ${r.seqMedianMs.toFixed(1)} | ${r.burst.wallS.toFixed(2)} | ${r.burst.cpuS.toFixed(2)} | ${fmtFailed(r.burst)} | ${r.burst.listenOverflows ?? 'n/a'} |`);
}
if (scratch.length) {
  console.log('\nN nodes announce at once into an empty broker (a fleet starting, or coming back after a broker restart)');
  console.log('| nodes | store | wall until the last announce (s) | CPU (s) | failed | listen queue overflows |');
  console.log('|---:|---|---:|---:|---:|---:|');
  for (const b of scratch) console.log(`| ${b.nodes} | ${b.store} | ${b.wallS.toFixed(2)} | ${b.cpuS.toFixed(2)} | ${fmtFailed(b)} | ${b.listenOverflows ?? 'n/a'} |`);
}
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/retained.json', `${JSON.stringify({ node: process.version, date: new Date().toISOString(), loadavg: os.loadavg(), m: M, seq: SEQ, rows, scratch }, null, 2)}\n`);
console.log('wrote bench/results/retained.json');

function fmtFailed(b: Burst): string {
  return b.failed === 0 ? '0' : `${b.failed} (${Object.entries(b.errors).map(([k, v]) => `${v} ${k}`).join(', ')})`;
}
