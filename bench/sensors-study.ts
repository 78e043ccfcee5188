/**
 * In-process study: federated (FedAvg) vs local-only autoencoder anomaly detection on the
 * TelosB single-hop sensor-network readings, one node per mote. No MQTT.
 *
 * Run: npx tsx bench/sensors-study.ts [--rounds 10] [--epochs 1] [--lr 0.05] [--batch 32] ...
 * Writes bench/results/sensors.json.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  anomalyScores,
  applyThreshold,
  createTelosbAutoencoder,
  detectionMetrics,
  loadTelosb,
  pickThreshold,
} from '../ml/src/sensors/index.ts';
import type { DetectionMetrics, ModelDefinition, TelosbMote, ThresholdOptions } from '../ml/src/sensors/index.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const num = (k: string, d: number): number => (args.has(k) ? Number(args.get(k)) : d);

const cfg = {
  windowLength: num('window', 10),
  hidden: num('hidden', 16),
  bottleneck: num('bottleneck', 3),
  rounds: num('rounds', 10),
  epochs: num('epochs', 1),
  batchSize: num('batch', 32),
  learningRate: num('lr', 0.05),
  optimizer: (args.get('optimizer') ?? 'sgd') as 'sgd' | 'momentum',
  thresholdK: num('k', 5),
  seed: num('seed', 1),
  out: args.get('out') ?? 'sensors.json',
};

function compile(model: tf.LayersModel): void {
  const opt =
    cfg.optimizer === 'momentum' ? tf.train.momentum(cfg.learningRate, 0.9) : tf.train.sgd(cfg.learningRate);
  model.compile({ optimizer: opt, loss: 'meanSquaredError' });
}

async function fitEpochs(model: tf.LayersModel, mote: TelosbMote, epochs: number): Promise<number> {
  const ds = mote.dataset;
  const d = ds.featureShape[0];
  const x = tf.tensor2d(ds.x, [ds.numExamples, d]);
  const h = await model.fit(x, x, { epochs, batchSize: cfg.batchSize, shuffle: true, verbose: 0 });
  x.dispose();
  const losses = h.history.loss as number[];
  return losses[losses.length - 1];
}

/** Weighted average of weight lists (FedAvg), weights ∝ numExamples. */
function fedAvg(updates: tf.Tensor[][], counts: number[]): tf.Tensor[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return updates[0].map((_, j) =>
    tf.tidy(() => tf.addN(updates.map((u, i) => u[j].mul(counts[i] / total)))),
  );
}

interface MoteResult extends DetectionMetrics {
  moteId: number;
  events: number;
  flagged: number;
  threshold: number;
}

function evaluate(model: tf.LayersModel, motes: TelosbMote[], th: ThresholdOptions): MoteResult[] {
  return motes.map((m) => {
    const scores = anomalyScores(model, m.dataset);
    const threshold = pickThreshold(scores, th);
    const pred = applyThreshold(scores, threshold);
    const met = detectionMetrics(pred, m.readingLabels);
    return {
      moteId: m.moteId,
      events: m.readingLabels.reduce((a, b) => a + b, 0),
      flagged: pred.reduce((a, b) => a + b, 0),
      threshold,
      ...met,
    };
  });
}

function aggregate(rs: MoteResult[]): { meanF1: number; pooled: DetectionMetrics } {
  const withEvents = rs.filter((r) => r.events > 0);
  const meanF1 = withEvents.reduce((a, r) => a + r.f1, 0) / withEvents.length;
  const tp = withEvents.reduce((a, r) => a + r.tp, 0);
  const fp = withEvents.reduce((a, r) => a + r.fp, 0);
  const fn = withEvents.reduce((a, r) => a + r.fn, 0);
  return {
    meanF1,
    pooled: { tp, fp, fn, precision: tp / (tp + fp), recall: tp / (tp + fn), f1: (2 * tp) / (2 * tp + fp + fn) },
  };
}

async function main(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  const t0 = performance.now();
  const data = loadTelosb({ windowLength: cfg.windowLength });
  const def: ModelDefinition = createTelosbAutoencoder({
    windowLength: cfg.windowLength,
    hidden: cfg.hidden,
    bottleneck: cfg.bottleneck,
  });
  const th: ThresholdOptions = { method: 'mad', k: cfg.thresholdK };
  const counts = data.motes.map((m) => m.dataset.numExamples);

  // (a) Federated: FedAvg over the 4 motes.
  const global = def.build(cfg.seed);
  const client = def.build(cfg.seed);
  compile(client);
  const fedLoss: number[] = [];
  for (let r = 0; r < cfg.rounds; r++) {
    const gw = global.getWeights();
    const updates: tf.Tensor[][] = [];
    let lossSum = 0;
    for (const m of data.motes) {
      client.setWeights(gw);
      lossSum += (await fitEpochs(client, m, cfg.epochs)) * m.dataset.numExamples;
      updates.push(client.getWeights().map((w) => w.clone()));
    }
    const avg = fedAvg(updates, counts);
    global.setWeights(avg);
    avg.forEach((t) => t.dispose());
    updates.flat().forEach((t) => t.dispose());
    fedLoss.push(lossSum / counts.reduce((a, b) => a + b, 0));
  }
  const fed = evaluate(global, data.motes, th);
  const tFed = performance.now() - t0;

  // (b) Local-only: each mote alone, same total epochs (rounds × epochs).
  const local: MoteResult[] = [];
  for (const m of data.motes) {
    const model = def.build(cfg.seed);
    compile(model);
    await fitEpochs(model, m, cfg.rounds * cfg.epochs);
    local.push(...evaluate(model, [m], th));
    model.dispose();
  }
  const tAll = performance.now() - t0;

  const f = (v: number): string => (Number.isNaN(v) ? '  n/a' : v.toFixed(3));
  console.log(`config ${JSON.stringify(cfg)}`);
  console.log(`federated loss per round: ${fedLoss.map((l) => l.toFixed(4)).join(' ')}`);
  console.log('| mote | events | fed P | fed R | fed F1 | fed flagged | local P | local R | local F1 | local flagged |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (let i = 0; i < fed.length; i++) {
    const a = fed[i];
    const b = local[i];
    console.log(
      `| ${a.moteId} | ${a.events} | ${f(a.precision)} | ${f(a.recall)} | ${f(a.f1)} | ${a.flagged} | ` +
        `${f(b.precision)} | ${f(b.recall)} | ${f(b.f1)} | ${b.flagged} |`,
    );
  }
  const af = aggregate(fed);
  const al = aggregate(local);
  console.log(
    `F1 over motes with events: federated mean ${f(af.meanF1)} pooled ${f(af.pooled.f1)}; ` +
      `local-only mean ${f(al.meanF1)} pooled ${f(al.pooled.f1)}`,
  );
  console.log(`time: federated ${(tFed / 1000).toFixed(1)} s, total ${(tAll / 1000).toFixed(1)} s`);
  const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, cfg.out),
    JSON.stringify({ config: cfg, source: data.source, fedLoss, federated: fed, localOnly: local,
      aggregate: { federated: af, localOnly: al }, seconds: tAll / 1000 }, null, 2),
  );
}

await main();
