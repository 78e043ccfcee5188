/**
 * Fleet scale on this machine: MNIST (Dirichlet 0.5, seed 42), the 2NN, FedAvg, 3 rounds per row.
 * Each row runs in a process of its own (peak RSS is per row):
 * - nodes ∈ {10, 100, 1,000, 3,000} with 20 selected per round (all of them at 10), then 1,000 with
 *   every node selected: `fedmq simulate`'s embedded form (broker thread, coordinator, 2 worker threads);
 * - 3,000 nodes as 3 shards (`fedmq simulate --broker URL --shard I/3`, one process each) against a
 *   cluster of 3 brokers (`fedmq broker --cluster redis://…`, one process each) on Debian's
 *   redis-server, the coordinator on broker 1;
 * - the edge node: `fedmq node` training the 2NN on a 30,000-example MNIST folder (bench/edge-footprint.ts).
 *
 * Columns (bench/results/scale.json): connectSeconds from starting the nodes until every node
 * connected and announced itself; connackTimeouts counted by the nodes' MQTT clients; roundSeconds
 * the median round wall time (select → metrics); overheadSeconds the median of (round wall time −
 * the slowest selected node's training time); bytesDown/UpPerRound the median bytes the broker(s)
 * wrote to / read from node connections during a round (socket counters); peakRssMb the peak RSS
 * of every process of the row, summed; rssPerIdleNodeKb the RSS growth per connected idle node
 * against the 10-node row (same process layout), before round 1.
 *
 *   npm run bench:scale [-- --rows 10,100,1000,3000,all1000,cluster3000,edge --rounds 3]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startBrokerThread, startRedisServer, type RedisServer, type Traffic } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend } from '@fedmq/ml';
import type { RoundRecord } from '@fedmq/protocol';
import { DEFAULT_JOB, loadSimDataset, startSimulation } from '@fedmq/simulator';
import { arg } from './lib.ts';
import { procStatusBytes } from './proc.ts';

/** One row of bench/results/scale.json. */
export interface ScaleRow {
  nodes: number; selected: number; shards: number; brokers: number;
  connectSeconds: number; connackTimeouts: number; roundSeconds: number; overheadSeconds: number;
  bytesDownPerRound: number; bytesUpPerRound: number; peakRssMb: number; rssPerIdleNodeKb: number | null;
  /** Not in the list, measured beside: model payload bytes, every update of every round accepted exactly once, final test accuracy. */
  modelBytes: number; updatesExact: boolean; testAccuracy: number | null; idleRssMb: number;
}

const ROUNDS = Number(arg('rounds', '3'));
const SEED = DEFAULT_JOB.seed;
const DEADLINE_MS = 900_000; // generous: a row measures speed, it must not lose updates to a deadline
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? NaN;
const rssMb = () => process.memoryUsage.rss() / 2 ** 20;

/** Samples this process's RSS every 100 ms; `peak()` in MB. */
function rssSampler(): { peak(): number; stop(): void } {
  let peak = rssMb();
  const t = setInterval(() => (peak = Math.max(peak, rssMb())), 100);
  return { peak: () => Math.max(peak, rssMb()), stop: () => clearInterval(t) };
}

/** Per-round accounting shared by both row kinds: round wall times, the slowest training, accepted updates. */
function roundBook() {
  const slowest = new Map<number, number>();
  const accepted = new Map<number, Set<string>>();
  let duplicates = 0;
  return {
    accepted(round: number, nodeId: string, trainMs: number) {
      slowest.set(round, Math.max(slowest.get(round) ?? 0, trainMs));
      const s = accepted.get(round) ?? new Set<string>();
      if (s.has(nodeId)) duplicates++;
      s.add(nodeId);
      accepted.set(round, s);
    },
    summary(history: RoundRecord[]) {
      const exact = duplicates === 0 && history.every((r) => r.accepted && r.reported === r.selected && accepted.get(r.round)?.size === r.selected);
      return {
        roundSeconds: median(history.map((r) => r.durationMs / 1000)),
        overheadSeconds: median(history.map((r) => (r.durationMs - (slowest.get(r.round) ?? 0)) / 1000)),
        modelBytes: Math.round(median(history.map((r) => r.bytesDown / Math.max(1, r.reported)))),
        updatesExact: exact,
        testAccuracy: history.at(-1)?.testAccuracy ?? null,
      };
    },
  };
}

/** Broker socket bytes of node connections, per round: from the round's first stage to its metrics. */
function byteWindows(read: () => Promise<{ down: number; up: number }>) {
  const windows = new Map<number, { start: Promise<{ down: number; up: number }>; end?: Promise<{ down: number; up: number }> }>();
  return {
    stage(round: number) {
      if (!windows.has(round)) windows.set(round, { start: read() });
    },
    round(round: number) {
      const w = windows.get(round);
      if (w) w.end = read();
    },
    async perRound(): Promise<{ down: number; up: number }> {
      const rows = await Promise.all([...windows.values()].filter((w) => w.end).map(async (w) => {
        const [a, b] = await Promise.all([w.start, w.end!]);
        return { down: b.down - a.down, up: b.up - a.up };
      }));
      return { down: median(rows.map((r) => r.down)), up: median(rows.map((r) => r.up)) };
    },
  };
}

/** One embedded row: broker thread, coordinator, 2 worker threads, in this process. */
async function embeddedRow(nodes: number, selected: number): Promise<ScaleRow> {
  const rss = rssSampler();
  await initBackend();
  const data = loadSimDataset('mnist');
  const job = `scale-${nodes}`;
  const broker = await startBrokerThread({ port: 0, host: '127.0.0.1' });
  const t0 = performance.now();
  const sim = await startSimulation({ brokerUrl: broker.url, job, nodes, train: data.train, partition: { kind: 'dirichlet', alpha: 0.5 }, seed: SEED, workers: 2 });
  const connectSeconds = (performance.now() - t0) / 1000;
  const idleRssMb = rssMb(); // every node connected and announced, none trained yet
  const book = roundBook();
  const coordinator = new Coordinator({
    brokerUrl: broker.url, job, model: data.model, rounds: ROUNDS, minAvailableNodes: nodes, deadlineMs: DEADLINE_MS, seed: SEED, testData: data.test,
    strategy: createStrategy({ strategy: 'fedavg', fraction: selected / nodes, minFitNodes: selected, fitConfig: DEFAULT_JOB.fit }),
  });
  const nodeBytes = async () => {
    const t: Traffic = await broker.traffic();
    return { down: t.node.written, up: t.node.read };
  };
  const bytes = byteWindows(nodeBytes);
  coordinator.on('stage', (s) => bytes.stage(s.round));
  coordinator.on('round', (r) => bytes.round(r.round));
  coordinator.on('accepted', (a) => book.accepted(a.round, a.nodeId, a.trainMs));
  const history = await coordinator.run();
  const perRound = await bytes.perRound();
  await sim.stop();
  await coordinator.close();
  await broker.close();
  rss.stop();
  return {
    nodes, selected, shards: 1, brokers: 1, connectSeconds, connackTimeouts: sim.connectionErrors.get('connack timeout') ?? 0,
    ...book.summary(history), bytesDownPerRound: perRound.down, bytesUpPerRound: perRound.up,
    peakRssMb: rss.peak(), rssPerIdleNodeKb: null, idleRssMb,
  };
}

const CLI = join(import.meta.dirname, '..', 'cli', 'bin', 'fedmq.js');

/** Starts a child and resolves with its first stdout line matching `ready` (rejects if it exits first). */
function startChild(cmd: string, args: string[], ready: RegExp, onStderr?: (line: string) => void): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  let partial = '';
  child.stderr!.on('data', (d: string) => {
    err = (err + d).slice(-4000);
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const l of lines) onStderr?.(l);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      const m = ready.exec(out);
      if (m) resolve({ child, match: m });
    });
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited (${code}) before it was ready:\n${out}\n${err}`)));
  });
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGINT');
  const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

/** Sum over brokers of `fedmq_broker_bytes_{sent,received}_total{role="node"}` from their /metrics. */
async function clusterNodeBytes(metricsUrls: string[]): Promise<{ down: number; up: number }> {
  let down = 0;
  let up = 0;
  for (const url of metricsUrls) {
    const text = await (await fetch(url)).text();
    for (const line of text.split('\n')) {
      const m = /^fedmq_broker_bytes_(sent|received)_total\{[^}]*role="node"[^}]*\} (\d+(?:\.\d+)?(?:e\+\d+)?)/.exec(line);
      if (m) {
        if (m[1] === 'sent') down += Number(m[2]);
        else up += Number(m[2]);
      }
    }
  }
  return { down, up };
}

/** 3,000 nodes as `shards` simulate processes against `brokers` broker processes on one redis-server. */
async function clusterRow(nodes: number, selected: number, shards: number, brokers: number): Promise<ScaleRow> {
  const rss = rssSampler();
  const children: ChildProcess[] = [];
  let redis: RedisServer | undefined;
  try {
    const say = (m: string) => process.stderr.write(`cluster row: ${m}\n`);
    redis = await startRedisServer();
    const cluster = redis.url;
    say(`redis-server on ${cluster}`);
    const brokerProcs: { child: ChildProcess; url: string; metrics: string }[] = [];
    for (let i = 0; i < brokers; i++) {
      const b = await startChild(process.execPath, [CLI, '--log-level', 'warn', 'broker', '--host', '127.0.0.1', '--port', '0', '--http-port', '0', '--cluster', cluster],
        /listening on (mqtt:\/\/\S+)[\s\S]*dashboard: (http:\/\/\S+)/);
      children.push(b.child);
      brokerProcs.push({ child: b.child, url: b.match[1], metrics: `${b.match[2]}metrics` });
      say(`broker ${i + 1} on ${b.match[1]}`);
    }
    await initBackend();
    const data = loadSimDataset('mnist');
    const job = `scale-${nodes}`; // the same job id as the unsharded row: same selection for the same seed
    const book = roundBook();
    const coordinator = new Coordinator({
      brokerUrl: brokerProcs[0].url, job, model: data.model, rounds: ROUNDS, minAvailableNodes: nodes, deadlineMs: DEADLINE_MS, seed: SEED, testData: data.test,
      strategy: createStrategy({ strategy: 'fedavg', fraction: selected / nodes, minFitNodes: selected, fitConfig: DEFAULT_JOB.fit }),
    });
    const bytes = byteWindows(() => clusterNodeBytes(brokerProcs.map((b) => b.metrics)));
    coordinator.on('stage', (s) => bytes.stage(s.round));
    coordinator.on('round', (r) => bytes.round(r.round));
    coordinator.on('accepted', (a) => book.accepted(a.round, a.nodeId, a.trainMs));
    const done = coordinator.run();
    done.catch(() => undefined);
    let connackTimeouts = 0;
    const t0 = performance.now();
    const shardProcs = await Promise.all(Array.from({ length: shards }, async (_, i) => {
      const s = await startChild(process.execPath, [
        CLI, '--log-level', 'warn', 'simulate', '--broker', brokerProcs[i % brokers].url, '--job', job, '--nodes', String(nodes), '--shard', `${i + 1}/${shards}`,
        '--seed', String(SEED), '--workers', '1', '--no-progress',
      ], /nodes \(shard/, (line) => {
        if (line.includes('connack timeout')) connackTimeouts++;
      });
      children.push(s.child);
      say(`shard ${i + 1}/${shards} up`);
      return s.child;
    }));
    const connectSeconds = (performance.now() - t0) / 1000;
    const idleRssMb = rssMb() + [...brokerProcs.map((b) => b.child), ...shardProcs].reduce((a, c) => a + procStatusBytes(c.pid!, 'VmRSS') / 2 ** 20, 0);
    const history = await done;
    const perRound = await bytes.perRound();
    const peaks = [...brokerProcs.map((b) => b.child), ...shardProcs].reduce((a, c) => a + procStatusBytes(c.pid!, 'VmHWM') / 2 ** 20, 0);
    await coordinator.close();
    rss.stop();
    return {
      nodes, selected, shards, brokers, connectSeconds, connackTimeouts, ...book.summary(history),
      bytesDownPerRound: perRound.down, bytesUpPerRound: perRound.up, peakRssMb: rss.peak() + peaks, rssPerIdleNodeKb: null, idleRssMb,
    };
  } finally {
    for (const c of children.reverse()) await stopChild(c);
    await redis?.stop(); // last: a cluster broker stopping without its Redis waits for it
  }
}

// ---- driver: one child process per row ----------------------------------------------------------
type RowSpec = { kind: 'embedded'; nodes: number; selected: number } | { kind: 'cluster'; nodes: number; selected: number; shards: number; brokers: number };

const rowArg = arg('row', '');
if (rowArg) {
  const spec = JSON.parse(rowArg) as RowSpec;
  const row = spec.kind === 'embedded' ? await embeddedRow(spec.nodes, spec.selected) : await clusterRow(spec.nodes, spec.selected, spec.shards, spec.brokers);
  // a pipe's write is asynchronous: exit once the row is out
  process.stdout.write(`ROW ${JSON.stringify(row)}\n`, () => process.exit(0));
  await new Promise(() => undefined);
}

const wanted = arg('rows', '10,100,1000,3000,all1000,cluster3000').split(',');
const specs: RowSpec[] = [];
for (const w of wanted) {
  if (/^\d+$/.test(w)) specs.push({ kind: 'embedded', nodes: Number(w), selected: Math.min(20, Number(w)) });
  else if (/^all\d+$/.test(w)) specs.push({ kind: 'embedded', nodes: Number(w.slice(3)), selected: Number(w.slice(3)) });
  else if (/^cluster\d+$/.test(w)) specs.push({ kind: 'cluster', nodes: Number(w.slice(7)), selected: 20, shards: 3, brokers: 3 });
  else if (w !== 'edge') throw new Error(`unknown row ${w}`);
}
const rows: (ScaleRow | Record<string, unknown>)[] = [];
for (const spec of specs) {
  const { child, match } = await startChild(process.execPath, ['--import', 'tsx', import.meta.filename, '--rounds', String(ROUNDS), '--row', JSON.stringify(spec)], /^ROW (.*)$/m,
    (line) => process.stderr.write(`${line}\n`));
  await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  const row = JSON.parse(match[1]) as ScaleRow;
  rows.push(row);
  process.stderr.write(`row done: ${JSON.stringify(row)}\n`);
}
// idle cost per node: RSS growth against the 10-node row of the same layout (data, runtimes, broker are in both)
const base = rows.find((r): r is ScaleRow => (r as ScaleRow).nodes === 10 && (r as ScaleRow).shards === 1);
for (const r of rows as ScaleRow[]) {
  if (base && r.shards === 1 && r.nodes > base.nodes) r.rssPerIdleNodeKb = ((r.idleRssMb - base.idleRssMb) * 1024) / (r.nodes - base.nodes);
}
if (wanted.includes('edge')) {
  // bench/edge-footprint.ts (npm run bench:edge) measures a real `fedmq node` process
  const edge = (await import(`./${'edge-footprint.ts'}`)) as { measureEdgeFootprint(): Promise<Record<string, unknown>> };
  rows.push(await edge.measureEdgeFootprint());
}

const f = (x: number | null | undefined, d = 1) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(d));
const mb = (x: number) => f(x / 1e6, 1);
console.log(`fleet scale, MNIST 2NN, FedAvg, ${ROUNDS} rounds per row, seed ${SEED}, node ${process.version}, ${(await import('node:os')).cpus().length} cores`);
console.log('| nodes | selected | shards | brokers | connect s | connack timeouts | round s | overhead s | MB down/round | MB up/round | peak RSS MB | KB per idle node | updates exact | test acc |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|');
for (const r of rows) {
  if (!('nodes' in r)) continue;
  const s = r as ScaleRow;
  console.log(`| ${s.nodes} | ${s.selected} | ${s.shards} | ${s.brokers} | ${f(s.connectSeconds)} | ${s.connackTimeouts} | ${f(s.roundSeconds, 2)} | ${f(s.overheadSeconds, 2)} | ${mb(s.bytesDownPerRound)} | ${mb(s.bytesUpPerRound)} | ${f(s.peakRssMb, 0)} | ${f(s.rssPerIdleNodeKb, 0)} | ${s.updatesExact ? 'yes' : 'NO'} | ${f(s.testAccuracy, 4)} |`);
}
for (const r of rows) if ((r as { role?: string }).role === 'edge-node') console.log(`edge node: ${JSON.stringify(r)}`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/scale.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/scale.json');
