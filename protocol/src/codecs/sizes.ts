/**
 * Prints the size of one encoded mnist-2nn update (199,210 parameters) per codec, packed as a
 * full Update message (docs/protocol.md §3.8) with `packMessage`, and encode / accumulate times.
 *
 *   npx tsx protocol/src/codecs/sizes.ts            # k = 0.01, blockSize 256
 *   npx tsx protocol/src/codecs/sizes.ts 0.05 64    # other k, blockSize
 *
 * Sizes do not depend on the values (every codec has a fixed layout); times are medians of 7 runs
 * after 3 warm-up runs, on random N(0, 0.01²) deltas (noisy: ±10–30 % between runs). A second
 * table times one tensor of 1M values.
 */
import { performance } from 'node:perf_hooks';
import { packMessage, unpackMessage } from '../codec.ts';
import type { NamedTensor } from '../tensor.ts';
import { CODEC_NAMES, getCodec, seededRng } from './index.ts';
import type { CodecParams } from './types.ts';

const k = Number(process.argv[2] ?? 0.01);
const blockSize = Number(process.argv[3] ?? 256);
const params: CodecParams = { k, blockSize };

const SHAPES: [string, number[]][] = [
  ['fc1/kernel', [784, 200]],
  ['fc1/bias', [200]],
  ['fc2/kernel', [200, 200]],
  ['fc2/bias', [200]],
  ['fc3/kernel', [200, 10]],
  ['fc3/bias', [10]],
];

function gaussian(n: number, seed: number, scale: number): Float32Array {
  const rng = seededRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng()) * scale;
  return out;
}

const delta: NamedTensor[] = SHAPES.map(([name, shape], i) => ({ name, shape, data: gaussian(shape.reduce((a, b) => a * b, 1), i + 1, 0.01) }));
const total = delta.reduce((a, t) => a + t.data.length, 0);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function updateMessage(codec: string, tensors: unknown[]) {
  return {
    v: 2, job: 'demo', runId: 'run-mwrcs77o', nodeId: 'pi-1', taskId: 7, round: 2, modelVersion: 2, numExamples: 600,
    codec, kind: 'delta', metrics: { loss: 0.1234, trainMs: 812.5, bytesDown: 797_650 }, tensors, ts: 1795322716321,
  };
}

/** Encodes and accumulates `tensors` 10 times; returns the last payload and median times of the last 7. */
function measure(name: string, tensors: NamedTensor[]) {
  const codec = getCodec(name);
  const encMs: number[] = [];
  const accMs: number[] = [];
  let payload: Uint8Array = new Uint8Array(0);
  let tensorBytes = 0;
  for (let run = 0; run < 10; run++) {
    const state = {};
    let t0 = performance.now();
    const enc = codec.encode(tensors, params, state, seededRng(run));
    const e = performance.now() - t0;
    payload = packMessage(updateMessage(name, enc));
    tensorBytes = packMessage(enc).byteLength;
    const wire = (unpackMessage(payload) as { tensors: unknown[] }).tensors;
    const targets = tensors.map((t) => new Float64Array(t.data.length));
    t0 = performance.now();
    wire.forEach((w, i) => codec.accumulate(w, targets[i], 0.5));
    const a = performance.now() - t0;
    if (run >= 3) {
      encMs.push(e);
      accMs.push(a);
    }
  }
  return { bytes: payload.byteLength, tensorBytes, encMs: median(encMs), accMs: median(accMs) };
}

const rows: string[][] = [];
let baseline = 0;
for (const name of CODEC_NAMES) {
  const m = measure(name, delta);
  if (name === 'float32') baseline = m.bytes;
  rows.push([name, m.bytes.toLocaleString('en-US'), m.tensorBytes.toLocaleString('en-US'), (m.bytes / total).toFixed(3), `${(baseline / m.bytes).toFixed(1)}×`, m.encMs.toFixed(2), m.accMs.toFixed(2)]);
}

const header = ['codec', 'update bytes', 'tensors bytes', 'bytes/param', 'vs float32', 'encode ms', 'accumulate ms'];
process.stdout.write(`mnist-2nn delta, ${total.toLocaleString('en-US')} parameters in ${delta.length} tensors; k = ${k}, blockSize = ${blockSize}; Node ${process.version}\n\n`);
process.stdout.write(`| ${header.join(' | ')} |\n|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|\n`);
for (const r of rows) process.stdout.write(`| ${r.join(' | ')} |\n`);

const big: NamedTensor[] = [{ name: 'big', shape: [1_000_000], data: gaussian(1_000_000, 99, 0.01) }];
process.stdout.write(`\nOne tensor of 1,000,000 values (same params)\n\n| codec | update bytes | encode ms | accumulate ms |\n|---|---:|---:|---:|\n`);
for (const name of CODEC_NAMES) {
  const m = measure(name, big);
  process.stdout.write(`| ${name} | ${m.bytes.toLocaleString('en-US')} | ${m.encMs.toFixed(2)} | ${m.accMs.toFixed(2)} |\n`);
}
