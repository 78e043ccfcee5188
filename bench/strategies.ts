/**
 * Strategy benchmark: the default MNIST job (mnist-2nn, 10 nodes, seed 42, E=1, B=32, lr 0.2,
 * fraction 1) with Dirichlet α = 0.1 and 0.5, once per non-robust strategy with its default
 * options: rounds to reach 0.95 test accuracy and final accuracy after a fixed number of rounds.
 *
 *   npm run bench:strategies [-- --rounds 15 --alphas 0.1,0.5 --strategies fedavg,fedprox]
 *
 * Prints a table and writes bench/results/strategies.json: [{strategy, alpha, roundsTo095, finalTestAccuracy, seconds}].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { initBackend } from '@fedmq/ml';
import { arg, roundsTo, runJob } from './lib.ts';

const rounds = Number(arg('rounds', '15'));
const alphas = arg('alphas', '0.1,0.5').split(',').map(Number);
const strategies = arg('strategies', 'fedavg,fedavgm,fedprox,fedadam,fedyogi,fedadagrad').split(',');

await initBackend();
const rows: { strategy: string; alpha: number; roundsTo095: number | null; finalTestAccuracy: number | null; seconds: number }[] = [];
for (const alpha of alphas) {
  for (const strategy of strategies) {
    const { history, seconds } = await runJob({ job: `bench-${strategy}`, alpha, rounds, strategy });
    rows.push({ strategy, alpha, roundsTo095: roundsTo(history, 0.95), finalTestAccuracy: history.at(-1)?.testAccuracy ?? null, seconds });
    process.stderr.write(`${strategy} α=${alpha}: ${JSON.stringify(rows.at(-1))}\n`);
  }
}
console.log(`strategies on the default MNIST job, ${rounds} rounds, node ${process.version}`);
console.log('| strategy | α | rounds to 0.95 | final test accuracy |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.strategy} | ${r.alpha} | ${r.roundsTo095 ?? `> ${rounds}`} | ${r.finalTestAccuracy?.toFixed(4) ?? '-'} |`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/strategies.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/strategies.json');
