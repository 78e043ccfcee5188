/**
 * Defaults study: in-process FedAvg (McMahan et al. 2017, arXiv:1602.05629) of mnist-2nn over
 * 10 nodes on a Dirichlet(0.5) label split (Hsu et al. 2019) of the 60k MNIST train set, global
 * model evaluated on the 10k test set after every round. No MQTT.
 *
 *   npx tsx bench/defaults.ts [--configs "lr=0.1,E=1,B=32,frac=1,opt=sgd,rounds=15;lr=0.05,..."]
 *                             [--seed 42] [--nodes 10] [--alpha 0.5] [--budget 200] [--out bench/results/defaults.json]
 *
 * Wall time is ESTIMATED for the product's setup (2 worker threads, one trainer per core):
 * per round, the selected nodes are assigned to 2 workers greedily, largest numExamples first,
 * and the round costs max(load A, load B) of the node train durations measured here (run
 * sequentially on one core) + the measured aggregation and evaluation time. Startup and MQTT
 * transfer are not included. A config stops early once its estimated time exceeds --budget s.
 */
import { writeFileSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  createModel,
  createRng,
  initBackend,
  loadMnist,
  partition,
  subset,
  type Dataset,
  type FitOptions,
} from '@fedmq/ml';
import type { NamedTensor } from '@fedmq/protocol';

interface Config {
  lr: number;
  E: number;
  B: number;
  frac: number;
  opt: 'sgd' | 'momentum';
  mu: number;
  rounds: number;
}

interface RoundRow {
  round: number;
  accuracy: number;
  loss: number;
  trainLoss: number;
  roundSec: number;
  cumSec: number;
  trainSec: number;
  evalSec: number;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

function parseConfig(s: string): Config {
  const c: Config = { lr: 0.1, E: 1, B: 32, frac: 1, opt: 'sgd', mu: 0.9, rounds: 15 };
  for (const kv of s.split(',').map((t) => t.trim()).filter(Boolean)) {
    const [k, v] = kv.split('=');
    if (k === 'opt') c.opt = v === 'momentum' ? 'momentum' : 'sgd';
    else if (k in c) (c as unknown as Record<string, number>)[k] = Number(v);
    else throw new Error(`unknown config key ${k}`);
  }
  return c;
}

function label(c: Config): string {
  return `lr=${c.lr} E=${c.E} B=${c.B} frac=${c.frac} ${c.opt === 'momentum' ? `momentum(${c.mu})` : 'sgd'}`;
}

/**
 * Estimated 2-worker train time (s) of one round: nodes assigned largest numExamples first to
 * the worker with fewer examples so far (as the simulator balances them), round = max load.
 */
function twoWorkerMakespan(jobs: { n: number; sec: number }[]): number {
  const sorted = [...jobs].sort((a, b) => b.n - a.n);
  const examples = [0, 0];
  const load = [0, 0];
  for (const j of sorted) {
    const w = examples[0] <= examples[1] ? 0 : 1;
    examples[w] += j.n;
    load[w] += j.sec;
  }
  return Math.max(load[0], load[1]);
}

const seed = Number(arg('seed', '42'));
const numNodes = Number(arg('nodes', '10'));
const alpha = Number(arg('alpha', '0.5'));
const budget = Number(arg('budget', '200'));
const out = arg('out', 'bench/results/defaults.json');
const configs = arg('configs', 'lr=0.05,E=1,B=32;lr=0.1,E=1,B=32').split(';').map(parseConfig);

const backend = await initBackend();
const train = loadMnist('train');
const test = loadMnist('test');
const parts = partition(train.y, numNodes, { kind: 'dirichlet', alpha }, seed);
const nodes: Dataset[] = parts.map((p) => subset(train, p));
process.stdout.write(`backend ${backend}; nodes ${numNodes}, Dirichlet(${alpha}) seed ${seed}; sizes ${nodes.map((d) => d.numExamples).join(' ')}\n`);
{
  const jobs = nodes.map((d) => ({ n: d.numExamples, sec: d.numExamples }));
  process.stdout.write(`2-worker example split makespan: ${twoWorkerMakespan(jobs)} of ${train.numExamples} examples\n`);
}

const results: { config: Config; label: string; rows: RoundRow[]; secTo95: number | null; samplesPerSec: number }[] = existsSync(out)
  ? (JSON.parse(readFileSync(out, 'utf8')) as { results: [] }).results
  : [];

for (const cfg of configs) {
  const model = createModel('mnist-2nn', seed);
  let global: NamedTensor[] = model.getWeights();
  const rng = createRng(seed * 7919 + 1);
  const rows: RoundRow[] = [];
  let cum = 0;
  let secTo95: number | null = null;
  let trainedExamples = 0;
  let trainedSec = 0;
  process.stdout.write(`\n## ${label(cfg)}\n| round | test acc | test loss | train loss | round s (est) | cum s (est) |\n|---|---|---|---|---|---|\n`);
  for (let round = 1; round <= cfg.rounds; round++) {
    const m = Math.max(1, Math.round(cfg.frac * numNodes));
    const ids = Array.from({ length: numNodes }, (_, i) => i);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
    const selected = ids.slice(0, m).sort((a, b) => a - b);
    const sum = global.map((w) => new Float64Array(w.data.length));
    let total = 0;
    let lossSum = 0;
    const jobs: { n: number; sec: number }[] = [];
    const t0 = performance.now();
    for (const k of selected) {
      model.setWeights(global);
      const opts: FitOptions = { epochs: cfg.E, batchSize: cfg.B, learningRate: cfg.lr, seed: seed * 1000003 + round * 1009 + k, optimizer: cfg.opt, momentum: cfg.mu };
      const r = await model.fit(nodes[k], opts);
      jobs.push({ n: r.numExamples, sec: r.durationMs / 1000 });
      trainedExamples += r.numExamples * cfg.E;
      trainedSec += r.durationMs / 1000;
      const w = model.getWeights();
      for (let i = 0; i < w.length; i++) {
        const d = w[i].data;
        const s = sum[i];
        for (let j = 0; j < d.length; j++) s[j] += d[j] * r.numExamples;
      }
      total += r.numExamples;
      lossSum += r.loss * r.numExamples;
    }
    const trainWall = performance.now() - t0;
    const t1 = performance.now();
    global = global.map((w, i) => ({ name: w.name, shape: w.shape, data: Float32Array.from(sum[i], (v) => v / total) }));
    model.setWeights(global);
    const ev = await model.evaluate(test);
    const evalSec = (performance.now() - t1) / 1000;
    const roundSec = twoWorkerMakespan(jobs) + evalSec;
    cum += roundSec;
    if (secTo95 === null && ev.accuracy >= 0.95) secTo95 = cum;
    rows.push({ round, accuracy: ev.accuracy, loss: ev.loss, trainLoss: lossSum / total, roundSec, cumSec: cum, trainSec: trainWall / 1000, evalSec });
    process.stdout.write(`| ${round} | ${ev.accuracy.toFixed(4)} | ${ev.loss.toFixed(4)} | ${(lossSum / total).toFixed(4)} | ${roundSec.toFixed(1)} | ${cum.toFixed(1)} |\n`);
    if (cum > budget) break;
  }
  const samplesPerSec = trainedExamples / trainedSec;
  process.stdout.write(`=> ${label(cfg)}: est. s to 0.95: ${secTo95 === null ? 'not reached' : secTo95.toFixed(1)}; train throughput ${Math.round(samplesPerSec)} samples/s on one core\n`);
  model.dispose();
  const entry = { config: cfg, label: label(cfg), rows, secTo95, samplesPerSec, backend, date: new Date().toISOString() };
  const i = results.findIndex((r) => r.label === entry.label);
  if (i >= 0) results[i] = entry;
  else results.push(entry);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ setup: { model: 'mnist-2nn', numNodes, partition: `dirichlet:${alpha}`, seed, estimate: 'sum over rounds of max(2-worker train load) + eval' }, results }, null, 2));
}
