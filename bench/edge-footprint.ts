/**
 * Edge footprint: the memory of a real `fedmq node` training the 2NN (mnist-2nn) on a
 * 30,000-example MNIST folder, as on a 512 MB device (docs/scale.md, "Edge footprint").
 *
 * End to end (`measureEdgeFootprint`, also a row of bench/scale.ts): a temp folder with the first
 * N MNIST training examples written as `fedmq data split` writes them (IDX, or CSV with
 * `--format csv`), a real broker on port 0 and a real coordinator in this process, and one
 * `fedmq node` child process (cli/bin/fedmq.js, as a user starts it) for R rounds of FedAvg
 * (E=1, B=32, lr=0.2). Its peak RSS is the kernel's VmHWM of the child (/proc/PID/status, read
 * every 100 ms and once more after the last round), cross-checked with the peak RSS the node
 * prints each round (getrusage). dataMb = examples × 784 × 4 + examples × 4 bytes: the data as
 * float32 features and int32 labels; dataHeldMb is what the node holds (IDX pixels stay bytes).
 *
 * Breakdown (`--breakdown`, on by default from the command line): a probe child launched like
 * bin/fedmq.js (tsx registered, `--expose-gc`) goes through what the node does, stage by stage
 * (command modules, tfjs and the node runtime, wasm backend, data, global model decoded, a round
 * trained, the update encoded), and reports its memory after a full GC at each stage. Then the
 * probe runs again with one of the edge settings undone at a time, and with all of them undone
 * (the node before them); the peak RSS of each run shows what each setting saves. Undoing "one
 * tensor of the dataset" puts the whole dataset into the backend during training, as the dense
 * training loop did before it gathered its batches itself.
 *
 * MB = 10⁶ bytes throughout.
 *
 *   npm run bench:edge [-- --examples 30000 --rounds 10 --format idx|csv|both --probe-rounds 5 --no-breakdown]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { procStatusBytes } from './proc.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'cli/bin/fedmq.js');
const MB = 1e6;

/** The row `measureEdgeFootprint` returns (and bench/scale.ts adds to bench/results/scale.json). */
export interface EdgeFootprintRow {
  role: 'edge-node';
  /** Examples in the node's folder. */
  examples: number;
  format: 'idx' | 'csv';
  rounds: number;
  /** examples × 784 × 4 + examples × 4 bytes (float32 features, int32 labels), MB. */
  dataMb: number;
  /** What the node holds of it: IDX pixels as bytes (examples × 784 + labels), CSV as float32, MB. */
  dataHeldMb: number;
  /** Peak RSS (VmHWM) of the `fedmq node` process, MB. */
  peakRssMb: number;
  /** The same in MiB (bench/scale.ts's unit). */
  peakRssMiB: number;
  /** peakRssMb − dataMb. */
  overDataMb: number;
  /** Peak RSS the node printed after each round (getrusage), MB. */
  peakRssByRoundMb: number[];
  /** Median local training time per round, s. */
  trainSeconds: number;
  /** Test accuracy of the last global model. */
  testAccuracy: number | null;
  node: string;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const vmHwmMb = (pid: number): number => procStatusBytes(pid, 'VmHWM') / MB;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Writes the first `examples` MNIST training examples into `dir` (train-images/labels IDX, or data.csv). */
async function writeFolder(dir: string, examples: number, format: 'idx' | 'csv'): Promise<void> {
  const { loadMnist, subset, writeCsv, writeIdx } = await import('@fedmq/ml');
  const part = subset(loadMnist('train'), Array.from({ length: examples }, (_, i) => i));
  if (format === 'idx') writeIdx(dir, part);
  else writeCsv(join(dir, 'data.csv'), part);
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Runs the end-to-end measurement: broker (port 0) and coordinator here, one `fedmq node` child on
 * a temp folder of `examples` MNIST examples, `rounds` rounds. Linux only (reads /proc).
 * @throws Error when the node exits early or the run fails.
 */
export async function measureEdgeFootprint(opts: { examples?: number; rounds?: number; format?: 'idx' | 'csv' } = {}): Promise<EdgeFootprintRow> {
  const examples = opts.examples ?? 30_000;
  const rounds = opts.rounds ?? 3;
  const format = opts.format ?? 'idx';
  const [{ startBroker }, { Coordinator, createStrategy }, { initBackend, loadMnist }] = await Promise.all([
    import('@fedmq/broker'), import('@fedmq/coordinator'), import('@fedmq/ml'),
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'fedmq-edge-'));
  await writeFolder(join(dir, 'node-000'), examples, format);
  await initBackend();
  const broker = await startBroker({ port: 0, host: '127.0.0.1' });
  const job = `edge-${format}`;
  const coordinator = new Coordinator({
    brokerUrl: broker.url, job, model: 'mnist-2nn', rounds, minAvailableNodes: 1, deadlineMs: 300_000, seed: 42, testData: loadMnist('test'),
    strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.2 } }),
  });
  const node = spawn(process.execPath, [BIN, '--log-level', 'warn', 'node', '--broker', broker.url, '--job', job, '--id', 'pi-1', '--data', join(dir, 'node-000')], {
    stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT,
  });
  let peak = 0;
  const sample = () => {
    const v = vmHwmMb(node.pid!);
    if (v > peak) peak = v;
  };
  const timer = setInterval(sample, 100);
  const printed: number[] = [];
  const trainSeconds: number[] = [];
  let out = '';
  let err = '';
  node.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const m of d.matchAll(/^round \d+: trained on \d+ examples, loss [\d.]+, ([\d.]+) s, sent \d+ bytes, peak RSS (\d+) MB$/gm)) {
      trainSeconds.push(Number(m[1]));
      printed.push(Number(m[2]));
    }
  });
  node.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
  const early = new Promise<never>((_, reject) => node.once('exit', (code) => reject(new Error(`fedmq node exited (${code}):\n${out}\n${err}`))));
  try {
    const history = await Promise.race([coordinator.run(), early]);
    // the last update is published after the node printed its line; read the high-water mark once more
    sample();
    return {
      role: 'edge-node', examples, format, rounds,
      dataMb: (examples * 784 * 4 + examples * 4) / MB,
      dataHeldMb: (format === 'idx' ? examples * 784 + examples * 4 : examples * 784 * 4 + examples * 4) / MB,
      peakRssMb: peak, peakRssMiB: (peak * MB) / 2 ** 20, overDataMb: peak - (examples * 784 * 4 + examples * 4) / MB,
      peakRssByRoundMb: printed, trainSeconds: median(trainSeconds), testAccuracy: history.at(-1)?.testAccuracy ?? null, node: process.version,
    };
  } finally {
    clearInterval(timer);
    early.catch(() => undefined);
    await stopChild(node);
    await coordinator.close();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- breakdown probe ------------------------------------------------------------------------

/** Edge settings the probe can undo, one at a time. */
const LEVERS = {
  'node entry': 'the node command alone (not main.ts: broker, coordinator, simulator, monitor)',
  'source maps off': "Node's source-map cache off",
  'young generation capped': "V8's young generation kept at its initial size",
  'pixel bytes': 'IDX pixels kept as bytes instead of float32',
  'batches gathered': 'mini-batches gathered in JS instead of the whole dataset as one tensor in the backend',
} as const;
type Lever = keyof typeof LEVERS;

interface Stage { stage: string; rssMb: number; heapUsedMb: number; heapTotalMb: number; externalMb: number; arrayBuffersMb: number }
interface ProbeResult { undone: Lever[]; stages: Stage[]; peakRssMb: number; trainSeconds: number }

/** The probe child: does what `fedmq node` does, without MQTT, and prints its stages as JSON. */
async function probe(dir: string, rounds: number, undone: Set<Lever>): Promise<ProbeResult> {
  const { tuneForEdge } = await import('../cli/src/edge-runtime.ts');
  tuneForEdge([...(undone.has('source maps off') ? ['--enable-source-maps'] : []), ...(undone.has('young generation capped') ? ['--max-semi-space-size'] : [])], '');
  const stages: Stage[] = [];
  const at = (stage: string) => {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    stages.push({ stage, rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB, heapTotalMb: m.heapTotal / MB, externalMb: m.external / MB, arrayBuffersMb: m.arrayBuffers / MB });
  };
  at('node + tsx');
  await import('../cli/src/node-command.ts');
  if (undone.has('node entry')) {
    // what main.ts loads besides the node's modules
    await Promise.all([import('@fedmq/broker'), import('@fedmq/coordinator'), import('@fedmq/simulator'), import('@fedmq/monitor'), import('../cli/src/security.ts')]);
  }
  at('command modules');
  const ml = await import('@fedmq/ml');
  const { createTrainer } = await import('@fedmq/edge-node');
  const { PROTOCOL_VERSION, decodeGlobalModel, encodePacked, getCodec, globalToWire, seededRng, weightsSha256 } = await import('@fedmq/protocol');
  at('tfjs + node runtime');
  await ml.initBackend('wasm');
  at('wasm backend');
  const data = ml.loadDataset(dir, { keepBytes: !undone.has('pixel bytes') });
  at('data loaded');
  const trainer = createTrainer();
  const trainMs: number[] = [];
  let global = (() => {
    const m = ml.createModel('mnist-2nn', 42);
    const w = m.getWeights();
    m.dispose();
    return w;
  })();
  for (let round = 1; round <= rounds; round++) {
    const tensors = globalToWire(global, 'float32');
    const payload = encodePacked({ v: PROTOCOL_VERSION, job: 'probe', runId: 'r', version: round, round, model: 'mnist-2nn', sha256: weightsSha256(tensors), tensors, ts: Date.now() });
    const msg = decodeGlobalModel(payload);
    const weights = trainer.globalWeights(msg);
    trainer.check('mnist-2nn', weights, data, msg.sha256);
    if (round === 1) at('global model decoded');
    // the dense loop before: the dataset as one float32 tensor and its one-hot labels in the backend
    // while training (the memory of them, filled with zeros here: training reads its batches as now)
    const tf = undone.has('batches gathered') ? await import('@tensorflow/tfjs-core') : undefined;
    const whole = tf ? [tf.zeros([data.numExamples, 784]), tf.zeros([data.numExamples, 10])] : [];
    const r = await trainer.train({ modelName: 'mnist-2nn', global: weights, data, config: { epochs: 1, batchSize: 32, learningRate: 0.2 }, seed: round });
    trainMs.push(r.trainMs);
    for (const t of whole) t.dispose();
    if (round === 1) at('round 1 trained');
    const codecState = {};
    const update = encodePacked({
      v: PROTOCOL_VERSION, job: 'probe', runId: 'r', nodeId: 'pi-1', taskId: round, round, modelVersion: round, numExamples: r.numExamples, codec: 'float32', kind: 'delta',
      metrics: { loss: r.loss, trainMs: r.trainMs, bytesDown: payload.length }, tensors: getCodec('float32').encode(r.delta, {}, codecState, seededRng(round)), ts: Date.now(),
    });
    if (round === 1) at(`update encoded (${(update.length / MB).toFixed(1)} MB)`);
    global = weights.map((w, i) => ({ ...w, data: w.data.map((v, j) => v + r.delta[i].data[j]) }));
  }
  at(`after ${rounds} rounds`);
  trainer.dispose();
  return { undone: [...undone], stages, peakRssMb: vmHwmMb(process.pid), trainSeconds: median(trainMs) / 1000 };
}

/** Runs the probe in a child launched like bin/fedmq.js (tsx's ESM loader registered), with `--expose-gc`. */
async function runProbe(dir: string, rounds: number, undone: Lever[]): Promise<ProbeResult> {
  const tsx = import.meta.resolve('tsx/esm/api');
  const launcher = `data:text/javascript,${encodeURIComponent(`import { register } from ${JSON.stringify(tsx)}; register();`)}`;
  const child = spawn(process.execPath, ['--expose-gc', '--import', launcher, fileURLToPath(import.meta.url), '--probe', dir, '--rounds', String(rounds), '--undo', JSON.stringify(undone)], {
    stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT,
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const m = /^PROBE (.*)$/m.exec(out);
  if (code !== 0 || !m) throw new Error(`probe ${JSON.stringify(undone)} exited (${code}):\n${out}`);
  return JSON.parse(m[1]) as ProbeResult;
}

// --- command line ---------------------------------------------------------------------------

const f1 = (x: number | null | undefined) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(1));

async function main(): Promise<void> {
  const examples = Number(arg('examples', '30000'));
  const rounds = Number(arg('rounds', '10'));
  const probeRounds = Number(arg('probe-rounds', '5'));
  const formatArg = arg('format', 'both');
  const formats: ('idx' | 'csv')[] = formatArg === 'both' ? ['idx', 'csv'] : [formatArg as 'idx' | 'csv'];
  const rows: EdgeFootprintRow[] = [];
  for (const format of formats) {
    const row = await measureEdgeFootprint({ examples, rounds, format });
    process.stderr.write(`${JSON.stringify(row)}\n`);
    rows.push(row);
  }
  console.log(`edge footprint: fedmq node, mnist-2nn, ${examples} examples, ${rounds} rounds (E=1, B=32), node ${process.version}, MB = 10^6 bytes`);
  console.log('| data folder | data MB (float32) | data held MB | peak RSS MB | peak − data MB | peak RSS after each round MB | train s/round | test acc |');
  console.log('|---|---:|---:|---:|---:|---|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.format} | ${f1(r.dataMb)} | ${f1(r.dataHeldMb)} | ${f1(r.peakRssMb)} | ${f1(r.overDataMb)} | ${r.peakRssByRoundMb.join(', ')} | ${f1(r.trainSeconds)} | ${r.testAccuracy?.toFixed(4) ?? '-'} |`);
  }
  let probes: ProbeResult[] = [];
  if (!process.argv.includes('--no-breakdown')) {
    const dir = mkdtempSync(join(tmpdir(), 'fedmq-edge-probe-'));
    try {
      await writeFolder(dir, examples, 'idx');
      const all = Object.keys(LEVERS) as Lever[];
      probes = [await runProbe(dir, probeRounds, [])];
      for (const l of all) probes.push(await runProbe(dir, probeRounds, [l]));
      probes.push(await runProbe(dir, probeRounds, all));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const now = probes[0];
    console.log(`\nwhere the memory goes: probe (what fedmq node does, without MQTT), IDX folder, ${probeRounds} rounds, after a full GC at each stage; peak RSS ${f1(now.peakRssMb)} MB`);
    console.log('| stage | RSS MB | + MB | V8 heap used MB | V8 heap total MB | external MB | of which ArrayBuffers MB |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    now.stages.forEach((s, i) => {
      console.log(`| ${s.stage} | ${f1(s.rssMb)} | ${i === 0 ? '' : f1(s.rssMb - now.stages[i - 1].rssMb)} | ${f1(s.heapUsedMb)} | ${f1(s.heapTotalMb)} | ${f1(s.externalMb)} | ${f1(s.arrayBuffersMb)} |`);
    });
    console.log('\nwhat each edge setting saves: the probe with that one setting undone');
    console.log('| setting undone | probe peak RSS MB | saved by the setting MB | train s/round |');
    console.log('|---|---:|---:|---:|');
    console.log(`| none (as fedmq node runs now) | ${f1(now.peakRssMb)} | | ${f1(now.trainSeconds)} |`);
    for (const p of probes.slice(1)) {
      const label = p.undone.length === 1 ? `${p.undone[0]}: ${LEVERS[p.undone[0]]}` : 'all of them (the node before these settings)';
      console.log(`| ${label} | ${f1(p.peakRssMb)} | ${f1(p.peakRssMb - now.peakRssMb)} | ${f1(p.trainSeconds)} |`);
    }
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/edge-footprint.json'), `${JSON.stringify({ rows, probes }, null, 2)}\n`);
  console.log('wrote bench/results/edge-footprint.json');
}

const self = process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url;
if (self && process.argv.includes('--probe')) {
  const undone = new Set(JSON.parse(arg('undo', '[]')) as Lever[]);
  const r = await probe(arg('probe', ''), Number(arg('rounds', '3')), undone);
  process.stdout.write(`PROBE ${JSON.stringify(r)}\n`);
} else if (self) {
  await main();
}
