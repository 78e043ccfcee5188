/**
 * Server learning-rate study of the adaptive server optimizers (Reddi et al. 2021): the default
 * MNIST job (mnist-2nn, 10 nodes, seed 42, E=1, B=32, local lr 0.2, all nodes every round) with
 * Dirichlet α = 0.1, once per (optimizer, server η), other hyperparameters at their defaults.
 * The defaults in the optimizer descriptors come from this table (docs/strategies.md).
 *
 *   npm run bench:server-lr [-- --rounds 15 --alpha 0.1 --strategies fedadam,fedyogi,fedadagrad --etas 0.003,0.01,0.03,0.1,0.3,1]
 *
 * Prints a table and writes bench/results/server-lr.json: [{strategy, alpha, serverLr, roundsTo095, finalTestAccuracy, seconds}].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { initBackend } from '@fedmq/ml';
import { arg, roundsTo, runJob } from './lib.ts';

const rounds = Number(arg('rounds', '15'));
const alpha = Number(arg('alpha', '0.1'));
const strategies = arg('strategies', 'fedadam,fedyogi,fedadagrad').split(',');
const etas = arg('etas', '0.003,0.01,0.03,0.1,0.3,1').split(',').map(Number);

await initBackend();
const rows: { strategy: string; alpha: number; serverLr: number; roundsTo095: number | null; finalTestAccuracy: number | null; seconds: number }[] = [];
for (const strategy of strategies) {
  for (const serverLr of etas) {
    const { history, seconds } = await runJob({ job: `bench-${strategy}`, alpha, rounds, strategy, serverLr });
    rows.push({ strategy, alpha, serverLr, roundsTo095: roundsTo(history, 0.95), finalTestAccuracy: history.at(-1)?.testAccuracy ?? null, seconds });
    process.stderr.write(`${strategy} η=${serverLr}: ${JSON.stringify(rows.at(-1))}\n`);
  }
}
console.log(`server learning rate of the adaptive optimizers, default MNIST job, α = ${alpha}, ${rounds} rounds, node ${process.version}`);
console.log('| strategy | server η | rounds to 0.95 | final test accuracy |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.strategy} | ${r.serverLr} | ${r.roundsTo095 ?? `> ${rounds}`} | ${r.finalTestAccuracy?.toFixed(4) ?? '-'} |`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/server-lr.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/server-lr.json');
