/**
 * Synchronous FedAvg against asynchronous FedBuff (Nguyen et al. 2022) on the default MNIST job
 * (mnist-2nn, 10 nodes, Dirichlet 0.5, seed 42, E=1, B=32, lr 0.2, over real MQTT) with slow
 * devices: 30 % of the nodes (chosen by the seed) are 5× slower — each waits 4× its measured
 * training time before uploading, without holding its worker's trainer, as a slow device would not
 * slow the others. Wall time is measured from the first fit stage to the round (server step)
 * whose global model first reaches 0.95 on the 10k test set.
 *
 *   npm run bench:async [-- --slow 0.3 --slow-factor 5 --buffer-size 3 --concurrency 6 --staleness polynomial:0.5 --max-staleness 10 --server-lr 1 --modes sync,async --repeat 3]
 *
 * Each mode runs `repeat` times, alternating (sync, async, sync, …) so that machine noise hits
 * both alike; the table gives the median wall time to 0.95 (and every run's). FedBuff's defaults
 * (K = 3, C = 6) were chosen on this job: with 2 trainer threads, a smaller concurrency keeps
 * tasks from queueing behind each other (staleness ≈ 1 instead of ≈ 2) — see docs/strategies.md.
 *
 * Prints a table and writes bench/results/async.json: [{mode, wallSecondsTo095, roundsOrStepsTo095, finalTestAccuracy, ...}].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { RoundRecord } from '@fedmq/protocol';
import { initBackend } from '@fedmq/ml';
import { DEFAULT_JOB, runLocalJob, type LocalJobOptions } from '@fedmq/simulator';
import { arg } from './lib.ts';

const slow = Number(arg('slow', '0.3'));
const slowFactor = Number(arg('slow-factor', '5'));
const bufferSize = Number(arg('buffer-size', '3'));
const concurrency = Number(arg('concurrency', '6'));
const repeat = Number(arg('repeat', '3'));
const stalenessArg = arg('staleness', 'polynomial:0.5');
const staleness = stalenessArg === 'constant' ? { kind: 'constant' as const } : { kind: 'polynomial' as const, exponent: Number(stalenessArg.split(':')[1]) };
const maxStaleness = Number(arg('max-staleness', '10'));
const serverLr = arg('server-lr', '');
const syncRounds = Number(arg('rounds', String(DEFAULT_JOB.rounds)));
const asyncSteps = Number(arg('steps', String(Math.ceil((DEFAULT_JOB.rounds * DEFAULT_JOB.nodes) / bufferSize))));
const target = 0.95;
const modes = arg('modes', 'sync,async').split(',') as ('sync' | 'async')[];

interface Row {
  mode: 'sync' | 'async';
  /** Median over the repetitions (null if any never reached 0.95). */
  wallSecondsTo095: number | null;
  /** Every repetition's. */
  wallSecondsTo095Runs: (number | null)[];
  roundsOrStepsTo095: number | null;
  finalTestAccuracy: number | null;
  rounds: number;
  wallSeconds: number;
  updates: number;
  settings: string;
}

async function run(mode: 'sync' | 'async'): Promise<Row> {
  let t0: number | undefined;
  const reached: { round: number; at: number }[] = [];
  const o: LocalJobOptions = {
    job: `bench-${mode}`, dataset: DEFAULT_JOB.dataset, nodes: DEFAULT_JOB.nodes, partition: { kind: 'dirichlet', alpha: 0.5 }, seed: DEFAULT_JOB.seed,
    rounds: mode === 'sync' ? syncRounds : asyncSteps, fraction: DEFAULT_JOB.fraction, deadlineMs: DEFAULT_JOB.deadlineMs, fit: DEFAULT_JOB.fit,
    port: 0, httpPort: false, metricsPort: false, chaos: { slow, slowFactor },
    mode, async: mode === 'async' ? { bufferSize, concurrency, staleness, maxStaleness } : undefined,
    strategyParams: serverLr ? { serverLr: Number(serverLr) } : undefined,
    onCoordinator: (c) => {
      c.on('stage', (s) => {
        if (s.stage === 'fit' && t0 === undefined) t0 = performance.now();
      });
      c.on('round', (r: RoundRecord) => reached.push({ round: r.round, at: performance.now() }));
    },
  };
  const { history } = await runLocalJob(o);
  const end = performance.now();
  const first = history.find((r) => (r.testAccuracy ?? 0) >= target);
  const at = first ? reached.find((x) => x.round === first.round)?.at : undefined;
  return {
    mode,
    wallSecondsTo095: at !== undefined && t0 !== undefined ? (at - t0) / 1000 : null,
    wallSecondsTo095Runs: [],
    roundsOrStepsTo095: first?.round ?? null,
    finalTestAccuracy: history.at(-1)?.testAccuracy ?? null,
    rounds: history.length,
    wallSeconds: t0 === undefined ? 0 : (end - t0) / 1000,
    updates: history.reduce((n, r) => n + r.reported, 0),
    settings: mode === 'sync' ? `FedAvg, ${syncRounds} rounds, all 10 nodes per round` : `FedBuff K=${bufferSize}, C=${concurrency}, staleness ${stalenessArg}, max ${maxStaleness}, ${asyncSteps} steps${serverLr ? `, server lr ${serverLr}` : ''}`,
  };
}

await initBackend();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs: Record<'sync' | 'async', Row[]> = { sync: [], async: [] };
for (let i = 0; i < repeat; i++) {
  for (const mode of modes) {
    const r = await run(mode);
    runs[mode].push(r);
    process.stderr.write(`${mode} #${i + 1}: ${JSON.stringify(r)}\n`);
  }
}
const rows: Row[] = modes.map((mode) => {
  const rs = runs[mode];
  const walls = rs.map((r) => r.wallSecondsTo095);
  const all = walls.every((w): w is number => w !== null);
  return { ...rs[0], wallSecondsTo095: all ? median(walls as number[]) : null, wallSecondsTo095Runs: walls, wallSeconds: median(rs.map((r) => r.wallSeconds)) };
});
const s = rows.find((r) => r.mode === 'sync');
const a = rows.find((r) => r.mode === 'async');
console.log(`sync FedAvg vs async FedBuff, default MNIST job, ${slow * 100} % of nodes ${slowFactor}× slower, node ${process.version}`);
console.log(`| mode | settings | wall s to 0.95 (median of ${repeat}) | every run | rounds / steps to 0.95 (first run) | final test accuracy (first run) | rounds / steps | updates |`);
console.log('|---|---|---:|---|---:|---:|---:|---:|');
for (const r of rows) {
  const every = r.wallSecondsTo095Runs.map((w) => w?.toFixed(1) ?? '-').join(', ');
  console.log(`| ${r.mode} | ${r.settings} | ${r.wallSecondsTo095?.toFixed(1) ?? '-'} | ${every} | ${r.roundsOrStepsTo095 ?? '-'} | ${r.finalTestAccuracy?.toFixed(4) ?? '-'} | ${r.rounds} | ${r.updates} |`);
}
if (s?.wallSecondsTo095 && a?.wallSecondsTo095) console.log(`async / sync wall time to 0.95: ${(a.wallSecondsTo095 / s.wallSecondsTo095).toFixed(2)}× (goal ≤ 0.6×)`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/async.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/async.json');
