/**
 * Aggregation benchmark: folds `updates` updates of `params` float32 parameters into a
 * numExamples-weighted mean the way the coordinator does — unpack the MessagePack update, check
 * and prepare its tensors (codec float32: views of the payload, no decoded copy), add them into
 * the float64 running sums (WeightedDeltaSum) — and compares the throughput with a plain
 * Float32Array multiply-add loop over the same data in the same process (the practical
 * memory-bandwidth limit). Updates are generated one at a time into a reused buffer, so peak
 * memory must not depend on the number of updates; the table shows it for several counts.
 *
 *   npm run bench:aggregate [-- --params 1000000 --updates 100]
 *
 * Prints a table and writes bench/results/aggregate.json:
 * {updates, params, gbPerSec, baselineGbPerSec, ratio, peakRssMb, runs: [...]}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { memoryUsage } from 'node:process';
import { WeightedDeltaSum } from '@fedmq/coordinator';
import { PROTOCOL_VERSION, Scratch, decodeUpdate, encodePacked, float32Codec, withScratch, type NamedTensor, type UpdateMessage } from '@fedmq/protocol';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const PARAMS = arg('params', 1_000_000);
const UPDATES = arg('updates', 100);
// one model-like layout: a big kernel, a bias, a second kernel, the rest
const shapes = [[1000, Math.floor((PARAMS - 1000 - 10_000) / 1000)], [1000], [1000, 10]];
const last = PARAMS - shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
if (last > 0) shapes.push([last]);
const like: NamedTensor[] = shapes.map((shape, i) => ({ name: `t${i}`, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }));

let peakRss = 0;
const sampleRss = () => {
  peakRss = Math.max(peakRss, memoryUsage.rss());
};

/** Fills `delta` with update k's values (deterministic, cheap). */
function fill(delta: NamedTensor[], k: number): void {
  let x = (k * 2654435761) >>> 0;
  for (const t of delta) for (let i = 0; i < t.data.length; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    t.data[i] = (x / 4294967296 - 0.5) * 0.01;
  }
}

function payloadFor(delta: NamedTensor[], k: number): Buffer {
  const u: UpdateMessage = {
    v: PROTOCOL_VERSION, job: 'bench', runId: 'bench', nodeId: `n${k}`, taskId: k + 1, round: 1, modelVersion: 1, numExamples: 100 + k, codec: 'float32', kind: 'delta',
    metrics: { loss: 1, trainMs: 1 }, tensors: float32Codec.encode(delta, {}, undefined, Math.random), ts: 0,
  };
  return encodePacked(u);
}

function run(updates: number): { fedmqS: number; baselineS: number; peakRssMb: number; bytes: number } {
  peakRss = 0;
  const delta = like.map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
  const sum = new WeightedDeltaSum(like);
  const scratch = new Scratch();
  const base = like.map((t) => new Float32Array(t.data.length));
  let fedmqS = 0;
  let baselineS = 0;
  let bytes = 0;
  for (let k = 0; k < updates; k++) {
    fill(delta, k);
    const payload = payloadFor(delta, k); // what arrives from the broker
    const weight = 100 + k;
    let t0 = performance.now();
    const u = decodeUpdate(payload);
    sum.add(withScratch(scratch, () => u.tensors.map((t) => float32Codec.prepare(t))), u.numExamples);
    fedmqS += (performance.now() - t0) / 1000;
    t0 = performance.now();
    for (let t = 0; t < base.length; t++) {
      const s = base[t];
      const d = delta[t].data;
      for (let i = 0; i < s.length; i++) s[i] += weight * d[i];
    }
    baselineS += (performance.now() - t0) / 1000;
    bytes += PARAMS * 4;
    sampleRss();
  }
  const mean = sum.mean(); // the result the coordinator would apply
  if (mean.length !== like.length) throw new Error('bad mean');
  return { fedmqS, baselineS, peakRssMb: peakRss / 2 ** 20, bytes };
}

run(3); // warm up the JIT
const runs = [Math.max(1, Math.floor(UPDATES / 4)), Math.max(1, Math.floor(UPDATES / 2)), UPDATES].map((updates) => {
  const r = run(updates);
  const gbPerSec = r.bytes / r.fedmqS / 1e9;
  const baselineGbPerSec = r.bytes / r.baselineS / 1e9;
  return { updates, params: PARAMS, gbPerSec, baselineGbPerSec, ratio: gbPerSec / baselineGbPerSec, peakRssMb: r.peakRssMb };
});

const f = (x: number, d = 2) => x.toFixed(d);
console.log(`aggregation of float32 updates, ${PARAMS.toLocaleString('en')} parameters each (node ${process.version})`);
console.log('| updates | fedmq GB/s (unpack + check + fold) | Float32Array loop GB/s | ratio | peak RSS MB |');
console.log('|---:|---:|---:|---:|---:|');
for (const r of runs) console.log(`| ${r.updates} | ${f(r.gbPerSec)} | ${f(r.baselineGbPerSec)} | ${f(r.ratio)} | ${f(r.peakRssMb, 0)} |`);
const main = runs.at(-1)!;
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/aggregate.json', `${JSON.stringify({ ...main, runs }, null, 2)}\n`);
console.log('wrote bench/results/aggregate.json');
