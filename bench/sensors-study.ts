/**
 * In-process study (no MQTT): federated (FedAvg) vs local-only autoencoder anomaly detection
 * on the TelosB single-hop sensor-network readings (Suthaharan et al., ISSNIP 2010; CC BY 4.0),
 * one federated node per mote. Labels are used only to score the flags.
 *
 * Run:   npx tsx bench/sensors-study.ts
 * Flags: --rounds 10 --epochs 1 --batch 32 --lr 0.05 --optimizer sgd|momentum --seeds 1,2,3
 *        --window 10 --hidden 16 --bottleneck 3 --clip 6 --sigma 0.7 --aggregate min
 * Writes bench/results/sensors.json (or --out NAME).
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  aggregateF1,
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
  clip: num('clip', 6),
  rounds: num('rounds', 10),
  epochs: num('epochs', 1),
  batchSize: num('batch', 32),
  learningRate: num('lr', 0.05),
  optimizer: (args.get('optimizer') ?? 'sgd') as 'sgd' | 'momentum',
  aggregate: (args.get('aggregate') ?? 'min') as 'min' | 'median' | 'mean' | 'last',
  sigma: num('sigma', 0.7),
  seeds: (args.get('seeds') ?? '1,2,3').split(',').map(Number),
  out: args.get('out') ?? 'sensors.json',
};

/** Label-free threshold rules evaluated on the same scores (the first is the headline rule). */
const RULES: Array<{ name: string; opts: ThresholdOptions }> = [
  { name: `sigma ${cfg.sigma}`, opts: { method: 'sigma', sigma: cfg.sigma } },
  { name: 'sigma 0.5', opts: { method: 'sigma', sigma: 0.5 } },
  { name: 'sigma 1.0', opts: { method: 'sigma', sigma: 1.0 } },
  { name: 'log-MAD k=3', opts: { method: 'mad', k: 3 } },
  { name: 'log-MAD k=4', opts: { method: 'mad', k: 4 } },
  { name: 'quantile 0.99', opts: { method: 'quantile', q: 0.99 } },
];

function compile(model: tf.LayersModel): void {
  const opt =
    cfg.optimizer === 'momentum' ? tf.train.momentum(cfg.learningRate, 0.9) : tf.train.sgd(cfg.learningRate);
  model.compile({ optimizer: opt, loss: 'meanSquaredError' });
}

async function fitEpochs(model: tf.LayersModel, mote: TelosbMote, epochs: number): Promise<number> {
  const ds = mote.dataset;
  const x = tf.tensor2d(ds.x, [ds.numExamples, ds.featureShape[0]]);
  const h = await model.fit(x, x, { epochs, batchSize: cfg.batchSize, shuffle: true, verbose: 0 });
  x.dispose();
  const losses = h.history.loss as number[];
  return losses[losses.length - 1];
}

/** FedAvg: average of the clients' weights, weighted by their numExamples. */
function fedAvg(updates: tf.Tensor[][], counts: number[]): tf.Tensor[] {
  const total = counts.reduce((a, b) => a + b, 0);
  return updates[0].map((_, j) => tf.tidy(() => tf.addN(updates.map((u, i) => u[j].mul(counts[i] / total)))));
}

interface Row extends DetectionMetrics {
  moteId: number;
  events: number;
  flagged: number;
  threshold: number;
}

function evaluate(scores: Float32Array[], motes: TelosbMote[], rule: ThresholdOptions): Row[] {
  return motes.map((m, i) => {
    const threshold = pickThreshold(scores[i], rule); // label-free
    const pred = applyThreshold(scores[i], threshold);
    const met = detectionMetrics(pred, m.readingLabels); // labels: evaluation only
    return {
      moteId: m.moteId,
      events: m.readingLabels.reduce((a, b) => a + b, 0),
      flagged: pred.reduce((a, b) => a + b, 0),
      threshold,
      ...met,
    };
  });
}

const agg = (rows: Row[]) => aggregateF1(rows.map((r) => ({ events: r.events, metrics: r })));
const f = (v: number): string => (Number.isNaN(v) ? 'n/a' : v.toFixed(3));

async function main(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  const t0 = performance.now();
  const data = loadTelosb({ windowLength: cfg.windowLength, clip: cfg.clip });
  const motes = data.motes;
  const def: ModelDefinition = createTelosbAutoencoder({
    windowLength: cfg.windowLength,
    hidden: cfg.hidden,
    bottleneck: cfg.bottleneck,
  });
  const counts = motes.map((m) => m.dataset.numExamples);
  const runs: Array<{ seed: number; fedLoss: number[]; fed: Float32Array[]; local: Float32Array[] }> = [];

  for (const seed of cfg.seeds) {
    // (a) Federated: every round each mote starts from the global weights, trains E epochs on
    // its own windows, then the server averages the weights (FedAvg, ∝ numExamples).
    const global = def.build(seed);
    const client = def.build(seed);
    compile(client);
    const fedLoss: number[] = [];
    for (let r = 0; r < cfg.rounds; r++) {
      const gw = global.getWeights();
      const updates: tf.Tensor[][] = [];
      let lossSum = 0;
      for (const m of motes) {
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
    const fed = motes.map((m) => anomalyScores(global, m.dataset, { aggregate: cfg.aggregate }));
    global.dispose();
    client.dispose();

    // (b) Local-only baseline: each mote trains alone, same total epochs (rounds × E).
    const local: Float32Array[] = [];
    for (const m of motes) {
      const model = def.build(seed);
      compile(model);
      await fitEpochs(model, m, cfg.rounds * cfg.epochs);
      local.push(anomalyScores(model, m.dataset, { aggregate: cfg.aggregate }));
      model.dispose();
    }
    runs.push({ seed, fedLoss, fed, local });
  }
  const seconds = (performance.now() - t0) / 1000;

  // Headline table (first rule), per seed.
  const rule = RULES[0];
  console.log(`config ${JSON.stringify(cfg)}`);
  console.log(`\nthreshold rule: ${rule.name} (label-free, per mote); scoring unit: reading\n`);
  const perSeed = runs.map((run) => ({
    seed: run.seed,
    fedLoss: run.fedLoss,
    rules: RULES.map((r) => {
      const fed = evaluate(run.fed, motes, r.opts);
      const local = evaluate(run.local, motes, r.opts);
      return { rule: r.name, federated: fed, localOnly: local, aggFed: agg(fed), aggLocal: agg(local) };
    }),
  }));
  for (const s of perSeed) {
    const h = s.rules[0];
    console.log(`seed ${s.seed}: federated training loss per round ${s.fedLoss.map((l) => l.toFixed(4)).join(' ')}`);
    console.log('| mote | events | fed P | fed R | fed F1 | fed flagged | local P | local R | local F1 | local flagged |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    h.federated.forEach((a, i) => {
      const b = h.localOnly[i];
      console.log(
        `| ${a.moteId} | ${a.events} | ${f(a.precision)} | ${f(a.recall)} | ${f(a.f1)} | ${a.flagged} | ` +
          `${f(b.precision)} | ${f(b.recall)} | ${f(b.f1)} | ${b.flagged} |`,
      );
    });
    console.log(
      `F1 over motes with events (1, 4): federated mean ${f(h.aggFed.meanF1)} / pooled ${f(h.aggFed.pooled.f1)}; ` +
        `local-only mean ${f(h.aggLocal.meanF1)} / pooled ${f(h.aggLocal.pooled.f1)}\n`,
    );
  }

  // Summary over seeds for every rule.
  const stat = (v: number[]) => `${f(v.reduce((a, b) => a + b, 0) / v.length)} [${f(Math.min(...v))}–${f(Math.max(...v))}]`;
  const summary = RULES.map((r, ri) => {
    const pick = (k: 'federated' | 'localOnly', mote: number) => perSeed.map((s) => s.rules[ri][k][mote]);
    const fp23 = (k: 'federated' | 'localOnly') =>
      perSeed.map((s) => s.rules[ri][k].filter((x) => x.events === 0).reduce((a, x) => a + x.fp, 0));
    return {
      rule: r.name,
      fedF1Mote1: pick('federated', 0).map((x) => x.f1),
      fedF1Mote4: pick('federated', 3).map((x) => x.f1),
      localF1Mote1: pick('localOnly', 0).map((x) => x.f1),
      localF1Mote4: pick('localOnly', 3).map((x) => x.f1),
      fedMeanF1: perSeed.map((s) => s.rules[ri].aggFed.meanF1),
      fedPooledF1: perSeed.map((s) => s.rules[ri].aggFed.pooled.f1),
      localMeanF1: perSeed.map((s) => s.rules[ri].aggLocal.meanF1),
      localPooledF1: perSeed.map((s) => s.rules[ri].aggLocal.pooled.f1),
      fedFpMotes23: fp23('federated'),
      localFpMotes23: fp23('localOnly'),
    };
  });
  console.log(`summary over seeds ${cfg.seeds.join(',')}: mean [min–max]`);
  console.log('| rule | fed F1 m1 | fed F1 m4 | fed mean F1 | fed pooled F1 | fed FP m2+m3 | local F1 m1 | local F1 m4 | local mean F1 | local pooled F1 | local FP m2+m3 |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const s of summary) {
    console.log(
      `| ${s.rule} | ${stat(s.fedF1Mote1)} | ${stat(s.fedF1Mote4)} | ${stat(s.fedMeanF1)} | ${stat(s.fedPooledF1)} | ${s.fedFpMotes23.join('/')} | ` +
        `${stat(s.localF1Mote1)} | ${stat(s.localF1Mote4)} | ${stat(s.localMeanF1)} | ${stat(s.localPooledF1)} | ${s.localFpMotes23.join('/')} |`,
    );
  }
  console.log(`\ntime: ${seconds.toFixed(1)} s for ${cfg.seeds.length} seed(s) (backend ${tf.getBackend()})`);

  const outDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    join(outDir, cfg.out),
    JSON.stringify(
      {
        generatedBy: 'npx tsx bench/sensors-study.ts',
        source: data.source,
        scoringUnit: 'reading',
        aggregateDefinition: 'over motes with labelled events (1 and 4): meanF1 = mean of per-mote F1; pooled = F1 of summed tp/fp/fn',
        config: cfg,
        normalization: motes.map((m) => ({ moteId: m.moteId, indoor: m.indoor, ...m.normalization })),
        perSeed,
        summary,
        seconds,
      },
      null,
      2,
    ),
  );
}

await main();
