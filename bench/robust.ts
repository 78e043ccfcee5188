/**
 * Robustness benchmark: the default MNIST job (Dirichlet α = 0.5) with a fraction of malicious
 * nodes, for each strategy × attack × malicious fraction, plus each strategy without attack
 * (attack `none`): final test accuracy after a fixed number of rounds.
 *
 *   npm run bench:robust [-- --rounds 15 --fractions 0.1,0.2,0.3 --attacks sign-flip,gaussian,scale,label-flip
 *                           --strategies fedavg,median,trimmed-mean,krum,multi-krum,norm-bounding --max-norm 2]
 *
 * Krum/Multi-Krum tolerate f = round(0.3 · 10) = 3 Byzantine nodes (10 ≥ 2·3 + 3); trimmed mean
 * trims β = 0.3 at each end; norm bounding clips at --max-norm.
 * Prints a table and writes bench/results/robust.json: [{strategy, attack, maliciousFraction, finalTestAccuracy}].
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { StrategyParams } from '@fedmq/coordinator';
import { initBackend } from '@fedmq/ml';
import type { AttackName } from '@fedmq/simulator';
import { arg, runJob } from './lib.ts';

const rounds = Number(arg('rounds', '15'));
const fractions = arg('fractions', '0.1,0.2,0.3').split(',').map(Number);
const attacks = arg('attacks', 'sign-flip,gaussian,scale,label-flip').split(',') as AttackName[];
const strategies = arg('strategies', 'fedavg,median,trimmed-mean,krum,multi-krum,norm-bounding').split(',');
const params: StrategyParams = { trimBeta: 0.3, byzantine: 3, maxNorm: Number(arg('max-norm', '2')) };

await initBackend();
const rows: { strategy: string; attack: string; maliciousFraction: number; finalTestAccuracy: number | null }[] = [];
const record = (strategy: string, attack: string, maliciousFraction: number, acc: number | null) => {
  rows.push({ strategy, attack, maliciousFraction, finalTestAccuracy: acc });
  process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
};
for (const strategy of strategies) {
  const clean = await runJob({ job: `robust-${strategy}`, rounds, strategy, strategyParams: params });
  record(strategy, 'none', 0, clean.history.at(-1)?.testAccuracy ?? null);
  for (const attack of attacks) {
    for (const fraction of fractions) {
      const r = await runJob({ job: `robust-${strategy}`, rounds, strategy, strategyParams: params, byzantine: fraction, attack });
      record(strategy, attack, fraction, r.history.at(-1)?.testAccuracy ?? null);
    }
  }
}
console.log(`robust strategies on the default MNIST job, ${rounds} rounds, node ${process.version}`);
console.log(`| strategy | attack | ${fractions.map((f) => `${Math.round(f * 100)} %`).join(' | ')} |`);
console.log(`|---|---|${fractions.map(() => '---:').join('|')}|`);
for (const strategy of strategies) {
  const none = rows.find((r) => r.strategy === strategy && r.attack === 'none');
  console.log(`| ${strategy} | none | ${fractions.map(() => none?.finalTestAccuracy?.toFixed(4) ?? '-').join(' | ')} |`);
  for (const attack of attacks) {
    const cells = fractions.map((f) => rows.find((r) => r.strategy === strategy && r.attack === attack && r.maliciousFraction === f)?.finalTestAccuracy);
    console.log(`| ${strategy} | ${attack} | ${cells.map((c) => c?.toFixed(4) ?? '-').join(' | ')} |`);
  }
}
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/robust.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/robust.json');
