/**
 * Codec benchmark: the default MNIST job (`npm start`: mnist-2nn, 10 nodes, Dirichlet 0.5, seed
 * 42, 15 rounds, over real MQTT) once per uplink codec, plus the encoding most tutorials use —
 * weights as a JSON array of numbers — as the baseline. For each: bytes up per update and total
 * bytes per round (from the run's history), encode and decode ms per update (median of 15, on a
 * real delta: how far the float32 run moved the global model, through MessagePack at a misaligned offset;
 * decode = the coordinator's path: unpack, check, fold into the float64 sums), and final test
 * accuracy.
 *
 *   npm run bench:codecs [-- --k 0.05 --block-size 256 --codecs float32,topk-int8 --rounds 15]
 *
 * JSON is lossless for float32 values, so its run would equal the float32 run: its accuracy is
 * the float32 run's, and only its bytes and times are measured (said in the table).
 * Prints a table and writes bench/results/codecs.json:
 * [{codec, bytesPerUpdate, bytesPerRound, encodeMs, decodeMs, finalTestAccuracy, ...}].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { WeightedDeltaSum } from '@fedmq/coordinator';
import { createModel, initBackend, parsePartition } from '@fedmq/ml';
import {
  CODEC_NAMES, PROTOCOL_VERSION, Scratch, decodeUpdate, encodePacked, getCodec, seededRng, withScratch,
  type CodecParams, type NamedTensor, type CodecName, type UpdateMessage,
} from '@fedmq/protocol';
import { DEFAULT_JOB, runLocalJob } from '@fedmq/simulator';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const params: CodecParams = { k: Number(arg('k', '0.05')), blockSize: Number(arg('block-size', '256')) };
const codecs = arg('codecs', CODEC_NAMES.join(',')).split(',') as CodecName[];
const rounds = Number(arg('rounds', String(DEFAULT_JOB.rounds)));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const misaligned = (b: Buffer) => {
  const buf = Buffer.alloc(b.length + 1);
  b.copy(buf, 1);
  return buf.subarray(1);
};

interface Row {
  codec: string;
  bytesPerUpdate: number;
  bytesPerRound: number;
  encodeMs: number;
  decodeMs: number;
  finalTestAccuracy: number | null;
  roundsTo095: number | null;
  runSeconds: number | null;
  note?: string;
}

/** Encode/decode timing of one codec on `delta`, the coordinator's decode path. */
function timeCodec(name: CodecName, delta: NamedTensor[]): { encodeMs: number; decodeMs: number; bytes: number } {
  const codec = getCodec(name);
  const enc: number[] = [];
  const dec: number[] = [];
  let bytes = 0;
  const sum = new WeightedDeltaSum(delta);
  const scratch = new Scratch();
  for (let r = 0; r < 18; r++) {
    const state = {}; // a fresh node each time: the residual of a previous encoding would change the input
    const t0 = performance.now();
    const tensors = codec.encode(delta, params, state, seededRng(r));
    const payload = encodePacked({
      v: PROTOCOL_VERSION, job: 'bench', runId: 'bench', nodeId: 'n', taskId: 1, round: 1, modelVersion: 1, numExamples: 6000, codec: name, kind: 'delta',
      metrics: { loss: 1, trainMs: 1 }, tensors, ts: 0,
    } satisfies UpdateMessage);
    const t1 = performance.now();
    const received = misaligned(payload);
    const t2 = performance.now();
    const u = decodeUpdate(received);
    sum.add(withScratch(scratch, () => u.tensors.map((t) => codec.prepare(t))), u.numExamples);
    const t3 = performance.now();
    if (r >= 3) {
      enc.push(t1 - t0);
      dec.push(t3 - t2);
    }
    bytes = payload.length;
  }
  return { encodeMs: median(enc), decodeMs: median(dec), bytes };
}

/** The same for weights as a JSON array of numbers (JSON.stringify / JSON.parse). */
function timeJson(delta: NamedTensor[]): { encodeMs: number; decodeMs: number; bytes: number } {
  const enc: number[] = [];
  const dec: number[] = [];
  let bytes = 0;
  const sums = delta.map((t) => new Float64Array(t.data.length));
  for (let r = 0; r < 18; r++) {
    const t0 = performance.now();
    const text = JSON.stringify({
      v: 1, job: 'bench', nodeId: 'n', round: 1, numExamples: 6000, tensors: delta.map((t) => ({ name: t.name, shape: t.shape, values: Array.from(t.data) })),
    });
    const payload = Buffer.from(text, 'utf8');
    const t1 = performance.now();
    const u = JSON.parse(payload.toString('utf8')) as { numExamples: number; tensors: { values: number[] }[] };
    u.tensors.forEach((t, i) => {
      const s = sums[i];
      for (let j = 0; j < s.length; j++) {
        const x = t.values[j];
        if (!Number.isFinite(x)) throw new Error('non-finite');
        s[j] += u.numExamples * x;
      }
    });
    const t2 = performance.now();
    if (r >= 3) {
      enc.push(t1 - t0);
      dec.push(t2 - t1);
    }
    bytes = payload.length;
  }
  return { encodeMs: median(enc), decodeMs: median(dec), bytes };
}

await initBackend();
const rows: Row[] = [];
let delta: NamedTensor[] | undefined;
let float32Accuracy: number | null = null;
for (const codec of codecs) {
  const t0 = performance.now();
  const { history, weights } = await runLocalJob({
    job: `bench-${codec}`, dataset: DEFAULT_JOB.dataset, nodes: DEFAULT_JOB.nodes, partition: parsePartition(DEFAULT_JOB.partition), seed: DEFAULT_JOB.seed,
    rounds, fraction: DEFAULT_JOB.fraction, deadlineMs: DEFAULT_JOB.deadlineMs, fit: DEFAULT_JOB.fit, codec, codecParams: params, port: 0,
    httpPort: false, metricsPort: false,
  });
  const runSeconds = (performance.now() - t0) / 1000;
  if (!delta) {
    // a real, dense delta of the model's size: how far the float32 run moved the global model
    const initial = createModel('mnist-2nn', DEFAULT_JOB.seed).getWeights();
    const after = codec === 'float32' ? weights : initial;
    delta = initial.map((w, i) => ({ name: w.name, shape: w.shape, data: after[i].data.map((x, j) => x - w.data[j]) }));
  }
  const last = history.at(-1)!;
  const reported = history.reduce((n, r) => n + r.reported, 0);
  const timing = timeCodec(codec, delta);
  const to95 = history.find((r) => (r.testAccuracy ?? 0) >= 0.95);
  rows.push({
    codec, bytesPerUpdate: Math.round(history.reduce((n, r) => n + r.bytesUp, 0) / reported),
    bytesPerRound: Math.round(history.reduce((n, r) => n + r.bytesUp + r.bytesDown, 0) / history.length), encodeMs: timing.encodeMs,
    decodeMs: timing.decodeMs, finalTestAccuracy: last.testAccuracy, roundsTo095: to95?.round ?? null, runSeconds,
  });
  if (codec === 'float32') float32Accuracy = last.testAccuracy;
  process.stderr.write(`${codec}: accuracy ${last.testAccuracy} in ${runSeconds.toFixed(0)} s\n`);
}
if (delta) {
  const j = timeJson(delta);
  const down = rows.find((r) => r.codec === 'float32');
  rows.unshift({
    codec: 'json (baseline)', bytesPerUpdate: j.bytes, bytesPerRound: down ? Math.round(down.bytesPerRound - down.bytesPerUpdate * DEFAULT_JOB.nodes + j.bytes * DEFAULT_JOB.nodes) : j.bytes * DEFAULT_JOB.nodes,
    encodeMs: j.encodeMs, decodeMs: j.decodeMs, finalTestAccuracy: float32Accuracy, roundsTo095: down?.roundsTo095 ?? null, runSeconds: null,
    note: 'lossless: accuracy of the float32 run; bytes and times measured on the same delta',
  });
}

const json = rows.find((r) => r.codec.startsWith('json'));
const f32 = rows.find((r) => r.codec === 'float32');
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
console.log(`uplink codecs on the default MNIST job (${rounds} rounds, k=${params.k}, blockSize=${params.blockSize}), node ${process.version}`);
console.log('| codec | bytes / update | × smaller than JSON | × smaller than float32 | bytes / round (up + down) | encode ms | decode ms | final test accuracy | rounds to 0.95 |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.codec} | ${kb(r.bytesPerUpdate)} | ${json ? (json.bytesPerUpdate / r.bytesPerUpdate).toFixed(1) : '-'} | ${f32 ? (f32.bytesPerUpdate / r.bytesPerUpdate).toFixed(1) : '-'} | ${kb(r.bytesPerRound)} | ${r.encodeMs.toFixed(1)} | ${r.decodeMs.toFixed(1)} | ${r.finalTestAccuracy?.toFixed(4) ?? '-'} | ${r.roundsTo095 ?? '-'} |`,
  );
}
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/codecs.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/codecs.json');
