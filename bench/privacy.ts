/**
 * Privacy against utility and against a membership-inference attack: MNIST 2NN on 1,000 simulated
 * nodes (IID, 60 examples each), about 100 of them per round (fraction 0.1), once without DP
 * (ε = ∞), once per central-DP target ε (DP-FedAvg, McMahan et al. 2018, arXiv:1710.06963; σ
 * calibrated to reach ε at δ after the run's rounds) and once with local DP. For every run, the
 * loss-threshold attack of Yeom et al. 2018 (arXiv:1709.01604) on the final global model: the AUC
 * of telling 5,000 members (training examples of nodes whose updates went into an accepted round)
 * from 5,000 non-members (MNIST test examples) by their cross-entropy loss; 0.5 is chance.
 *
 *   npm run bench:privacy [-- --rounds 100 --epsilons 1,3,8,inf --local-epsilon 8 --clip adaptive:0.5 --initial-clip 0.5 --clip-lr 0.2
 *     --local-clip 0.5 --strategy fedavgm --server-lr 1 --lr 0.2 --epochs 1 --batch 32 --only central|local
 *     --out bench/results/privacy.json]
 *
 * Prints a markdown table and writes `--out` (default bench/results/privacy.json):
 * [{mode, epsilon, delta, noiseMultiplier, nodes, rounds, finalTestAccuracy, membershipAuc}], with
 * mode `none` for the non-private run (noiseMultiplier 0, epsilon and delta null), epsilon the ε
 * spent after the last round and noiseMultiplier σ as the last round's privacy record gives them.
 * Each run's rounds go to stderr as they end.
 *
 * Every run uses the same strategy (default `fedavgm`: FedAvg's mean with server momentum β = 0.9,
 * η = 1; with `dp` the coordinator swaps in Poisson sampling and the DP-FedAvg aggregator and keeps
 * the server optimizer), the same seed (42) and local training (DEFAULT_JOB.fit unless --lr, --epochs,
 * --batch). Local DP cannot clip adaptively: it clips to --local-clip. One non-private round at
 * 1,000 nodes took a median 3.3 s (3 rounds) and 3.7 s (15 rounds) on the 2-core development
 * machine while others used it too (load average about 4), 6.8 s at a load average of 12.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AdaptiveClipOptions, DpOptions } from '@fedmq/coordinator';
import { createModel, createRng, initBackend, perExampleLoss, permutation, subset, type Dataset } from '@fedmq/ml';
import { lossThresholdAuc } from '@fedmq/privacy';
import type { RoundRecord } from '@fedmq/protocol';
import { DEFAULT_JOB, loadSimDataset, runLocalJob, type NodePlan } from '@fedmq/simulator';
import { arg } from './lib.ts';

const NODES = 1000;
const FRACTION = 0.1;
const DEADLINE_MS = 120_000;
const ATTACK_EXAMPLES = 5000;
const SEED = DEFAULT_JOB.seed;

/** One row of the results file. */
interface PrivacyRow {
  mode: 'none' | 'central' | 'local';
  /** ε spent after the last round (null: no DP). */
  epsilon: number | null;
  delta: number | null;
  /** σ of the last round (0: no DP). */
  noiseMultiplier: number;
  nodes: number;
  rounds: number;
  finalTestAccuracy: number | null;
  membershipAuc: number;
}

function num(name: string, def: string): number {
  const s = arg(name, def);
  const v = s.trim().toLowerCase() === 'inf' ? Infinity : Number(s);
  if (Number.isNaN(v) || s.trim() === '') throw new RangeError(`--${name} must be a number, got ${JSON.stringify(s)}`);
  return v;
}

function optionalNum(name: string): number | undefined {
  return arg(name, '') === '' ? undefined : num(name, '');
}

/** `--clip`: `adaptive:γ` (Andrew et al. 2021, target quantile γ) or a fixed C > 0. */
function parseClip(s: string): number | AdaptiveClipOptions {
  const m = /^adaptive:(.+)$/.exec(s.trim());
  const v = Number(m ? m[1] : s);
  if (!(v > 0 && Number.isFinite(v))) throw new RangeError(`--clip must be adaptive:QUANTILE or a positive number, got ${JSON.stringify(s)}`);
  return m ? { targetQuantile: v } : v;
}

const rounds = num('rounds', '100');
const epsilons = arg('epsilons', '1,3,8,inf').split(',').map((s) => {
  const v = s.trim().toLowerCase() === 'inf' ? Infinity : Number(s);
  if (!(v > 0)) throw new RangeError(`--epsilons: each ε must be > 0 or inf, got ${JSON.stringify(s)}`);
  return v;
});
const localEpsilon = num('local-epsilon', '8');
const delta = num('delta', '1e-5');
const parsedClip = parseClip(arg('clip', 'adaptive:0.5'));
// adaptive clipping's C0 and η_C (defaults: 0.5, about the median update norm measured below; the paper's η_C 0.2)
const clip: number | AdaptiveClipOptions = typeof parsedClip === 'number' ? parsedClip
  : { ...parsedClip, initialClipNorm: num('initial-clip', '0.5'), learningRate: num('clip-lr', '0.2') };
// Adaptive clipping needs central mode (the coordinator noises the clipping bits): local DP clips to
// a fixed C, by default --clip's number, else 0.5, about the median norm of one node's update
// (E=1, B=32, lr 0.2 on 60 examples: 0.48 at the initial model, 0.46 after one epoch on 3,000 examples; 20 nodes each).
const localClip = num('local-clip', typeof clip === 'number' ? String(clip) : '0.5');
const strategy = arg('strategy', 'fedavgm');
const serverOptimizer = arg('server-optimizer', '') || undefined;
const serverLr = optionalNum('server-lr');
const fit = {
  ...DEFAULT_JOB.fit,
  learningRate: num('lr', String(DEFAULT_JOB.fit.learningRate)),
  epochs: num('epochs', String(DEFAULT_JOB.fit.epochs)),
  batchSize: num('batch', String(DEFAULT_JOB.fit.batchSize)),
};
const only = arg('only', '');
if (only !== '' && only !== 'central' && only !== 'local') throw new RangeError(`--only must be central or local, got ${JSON.stringify(only)}`);
const out = arg('out', 'bench/results/privacy.json');

/** The runs: central DP at each ε (∞: no DP at all), then local DP. */
const runs: { label: string; mode: PrivacyRow['mode']; dp?: DpOptions }[] = [];
if (only !== 'local') {
  for (const eps of epsilons) {
    runs.push(eps === Infinity
      ? { label: 'no DP (ε = ∞)', mode: 'none' }
      : { label: `central ε = ${eps}`, mode: 'central', dp: { mode: 'central', targetEpsilon: eps, delta, clipNorm: clip } });
  }
}
if (only !== 'central') runs.push({ label: `local ε = ${localEpsilon}`, mode: 'local', dp: { mode: 'local', targetEpsilon: localEpsilon, delta, clipNorm: localClip } });

/** `k` distinct entries of `pool`, seeded (all of them, shuffled, when the pool is smaller). */
function sample(pool: ArrayLike<number>, k: number, seed: number): number[] {
  const order = permutation(pool.length, createRng(seed));
  return Array.from(order.subarray(0, Math.min(k, pool.length)), (i) => pool[i]);
}

const data = loadSimDataset('mnist');
const test = data.test as Dataset;
await initBackend();
const nonMembers = subset(test, sample(Array.from({ length: test.numExamples }, (_, i) => i), ATTACK_EXAMPLES, SEED + 2));

const fmt = (v: number | null | undefined, digits: number) => (v === null || v === undefined ? '-' : v.toFixed(digits));
const rows: PrivacyRow[] = [];
const secondsPerRound: number[] = [];
const attackSizes: number[] = []; // members of each run (non-members: nonMembers.numExamples)
process.stderr.write(
  `bench:privacy: ${NODES} nodes (IID), fraction ${FRACTION}, ${rounds} rounds, strategy ${strategy}${serverOptimizer ? ` + ${serverOptimizer}` : ''}`
  + `${serverLr === undefined ? '' : `, server η ${serverLr}`}, local E=${fit.epochs} B=${fit.batchSize} lr=${fit.learningRate}, δ ${delta}, clip ${JSON.stringify(clip)}, local clip ${localClip}\n`,
);
for (const run of runs) {
  let plan: NodePlan[] = [];
  const acceptedIn = new Map<number, string[]>(); // round → nodes whose update the round took
  const members = new Set<string>(); // nodes whose update went into an accepted round
  const t0 = performance.now();
  const { history, weights } = await runLocalJob({
    job: 'bench-privacy', dataset: 'mnist', nodes: NODES, partition: { kind: 'iid' }, seed: SEED, rounds, fraction: FRACTION,
    minAvailableNodes: NODES, deadlineMs: DEADLINE_MS, fit, strategy, serverOptimizer,
    strategyParams: serverLr === undefined ? undefined : { serverLr }, dp: run.dp, port: 0, httpPort: false, metricsPort: false,
    onSimulation: (s) => (plan = s.plan),
    onCoordinator: (c) => c.on('accepted', ({ nodeId, round }) => acceptedIn.set(round, [...(acceptedIn.get(round) ?? []), nodeId])),
    onRound: (r: RoundRecord) => {
      if (r.accepted) for (const id of acceptedIn.get(r.round) ?? []) members.add(id);
      acceptedIn.delete(r.round);
      const p = r.privacy;
      process.stderr.write(
        `${run.label} round ${r.round}/${rounds}: ${r.reported}/${r.selected} nodes, test acc ${fmt(r.testAccuracy, 4)}, `
        + `ε ${p ? fmt(p.epsilon, 3) : '∞'}${p ? `, σ ${p.noiseMultiplier.toFixed(3)}, C ${p.clipNorm.toPrecision(3)}` : ''}, ${(r.durationMs / 1000).toFixed(1)} s\n`,
      );
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const last = history.at(-1);
  if (run.dp && !last?.privacy) throw new Error(`${run.label}: the run returned no privacy record: dp was not applied`);
  // members: training examples of the nodes that took part (every example, once all nodes have)
  const pool = plan.filter((n) => members.has(n.nodeId)).flatMap((n) => Array.from(n.indices));
  const memberData = subset(data.train, sample(pool, ATTACK_EXAMPLES, SEED + 1));
  const model = createModel(data.model);
  let membershipAuc: number;
  try {
    model.setWeights(weights);
    membershipAuc = lossThresholdAuc(await perExampleLoss(model, memberData), await perExampleLoss(model, nonMembers));
  } finally {
    model.dispose();
  }
  const row: PrivacyRow = {
    mode: run.mode,
    epsilon: last?.privacy?.epsilon ?? null,
    delta: last?.privacy?.delta ?? null,
    noiseMultiplier: last?.privacy?.noiseMultiplier ?? 0,
    nodes: NODES,
    rounds: last?.round ?? 0,
    finalTestAccuracy: last?.testAccuracy ?? null,
    membershipAuc,
  };
  rows.push(row);
  attackSizes.push(memberData.numExamples);
  const durations = history.map((r) => r.durationMs / 1000).sort((a, b) => a - b);
  secondsPerRound.push(durations[Math.floor((durations.length - 1) / 2)] ?? NaN);
  process.stderr.write(
    `${run.label}: ${JSON.stringify(row)}; ${members.size} of ${NODES} nodes took part, attack on ${memberData.numExamples} members `
    + `and ${nonMembers.numExamples} non-members; ${seconds.toFixed(1)} s, median round ${secondsPerRound.at(-1)!.toFixed(1)} s\n`,
  );
}

console.log(
  `DP-FedAvg on MNIST 2NN: ${NODES} nodes (IID, 60 examples each), fraction ${FRACTION}, ${rounds} rounds, strategy ${strategy}`
  + `${serverOptimizer ? ` + ${serverOptimizer}` : ''}${serverLr === undefined ? '' : `, server η ${serverLr}`}, local E=${fit.epochs} B=${fit.batchSize} lr=${fit.learningRate}, `
  + `central clip ${typeof clip === 'number' ? clip : `adaptive (quantile ${clip.targetQuantile})`}, local clip ${localClip}, node ${process.version}`,
);
console.log('| mode | ε | δ | σ | nodes | rounds | final test accuracy | membership AUC | s/round |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
rows.forEach((r, i) => {
  const eps = r.mode === 'none' ? '∞' : fmt(r.epsilon, 2);
  console.log(`| ${r.mode} | ${eps} | ${r.delta ?? '-'} | ${r.noiseMultiplier.toFixed(3)} | ${r.nodes} | ${r.rounds} | ${fmt(r.finalTestAccuracy, 4)} | ${r.membershipAuc.toFixed(4)} | ${secondsPerRound[i].toFixed(1)} |`);
});
// Under no leak the AUC of m members against n non-members has standard deviation √((m + n + 1)/(12·m·n)) (Mann & Whitney 1947)
const nullSd = (m: number) => Math.sqrt((m + nonMembers.numExamples + 1) / (12 * m * nonMembers.numExamples));
console.log(`membership AUC: loss-threshold attack (Yeom et al. 2018) on ${[...new Set(attackSizes)].join('/')} members and ${nonMembers.numExamples} non-members; 0.5 is chance, ±${nullSd(Math.min(...attackSizes)).toFixed(4)} its standard deviation when nothing leaks`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(rows, null, 2)}\n`);
console.log(`wrote ${out}`);
