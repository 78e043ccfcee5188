/**
 * Robustness benchmark: the default MNIST job (Dirichlet α = 0.5) with a fraction of malicious
 * nodes, for each strategy × attack × malicious fraction, plus each strategy without attack
 * (attack `none`): final test accuracy after a fixed number of rounds.
 *
 *   npm run bench:robust [-- --rounds 10 --fractions 0.1,0.2,0.3 --attacks sign-flip,gaussian,scale,label-flip,alie
 *                           --strategies fedavg,median,trimmed-mean,krum,multi-krum,norm-bounding --max-norm 2]
 *
 * Krum/Multi-Krum tolerate f = round(0.3 · 10) = 3 Byzantine nodes (10 ≥ 2·3 + 3); trimmed mean
 * trims β = 0.3 at each end; norm bounding clips at --max-norm.
 * Prints a table and writes bench/results/robust.json: [{strategy, attack, maliciousFraction, finalTestAccuracy}].
 * `--report` prints the table of what the file holds without running anything.
 * The file is rewritten after every run, and rows already in it (same strategy, attack, fraction
 * and rounds) are not run again: an interrupted matrix continues where it stopped, and a new
 * attack can be added to the matrix without re-running the others.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { initBackend } from '@fedmq/ml';
import type { AttackName } from '@fedmq/simulator';
import { arg, runJob } from './lib.ts';

const rounds = Number(arg('rounds', '10'));
const fractions = arg('fractions', '0.1,0.2,0.3').split(',').map(Number);
const attacks = arg('attacks', 'sign-flip,gaussian,scale,label-flip,alie').split(',') as AttackName[];
const strategies = arg('strategies', 'fedavg,median,trimmed-mean,krum,multi-krum,norm-bounding').split(',');
const params: Record<string, unknown> = { trimBeta: 0.3, krumF: 3, maxNorm: Number(arg('max-norm', '2')) };

const FILE = 'bench/results/robust.json';
interface Row { strategy: string; attack: string; maliciousFraction: number; rounds: number; finalTestAccuracy: number | null }
const rows: Row[] = existsSync(FILE) ? (JSON.parse(readFileSync(FILE, 'utf8')) as Row[]) : [];
const find = (strategy: string, attack: string, f: number) =>
  rows.find((r) => r.strategy === strategy && r.attack === attack && r.maliciousFraction === f && r.rounds === rounds);

await initBackend();
mkdirSync('bench/results', { recursive: true });
const measure = async (strategy: string, attack: AttackName | 'none', fraction: number) => {
  if (find(strategy, attack, fraction)) return;
  const r = await runJob({
    job: `robust-${strategy}`, rounds, strategy, strategyParams: params, ...(attack === 'none' ? {} : { byzantine: fraction, attack }),
  });
  rows.push({ strategy, attack, maliciousFraction: fraction, rounds, finalTestAccuracy: r.history.at(-1)?.testAccuracy ?? null });
  process.stderr.write(`${JSON.stringify(rows.at(-1))} ${r.seconds.toFixed(0)} s\n`);
  writeFileSync(FILE, `${JSON.stringify(rows, null, 2)}\n`);
};
// --report: print the table of what robust.json holds, run nothing
if (!process.argv.includes('--report')) {
  for (const strategy of strategies) {
    await measure(strategy, 'none', 0);
    for (const attack of attacks) for (const fraction of fractions) await measure(strategy, attack, fraction);
  }
}
console.log(`robust strategies on the default MNIST job, ${rounds} rounds, node ${process.version}`);
console.log(`| strategy | attack | ${fractions.map((f) => `${Math.round(f * 100)} %`).join(' | ')} |`);
console.log(`|---|---|${fractions.map(() => '---:').join('|')}|`);
for (const strategy of strategies) {
  const none = find(strategy, 'none', 0);
  console.log(`| ${strategy} | none | ${fractions.map(() => none?.finalTestAccuracy?.toFixed(4) ?? '-').join(' | ')} |`);
  for (const attack of attacks) {
    const cells = fractions.map((f) => find(strategy, attack, f)?.finalTestAccuracy);
    console.log(`| ${strategy} | ${attack} | ${cells.map((c) => c?.toFixed(4) ?? '-').join(' | ')} |`);
  }
}
if (!process.argv.includes('--report')) console.log(`wrote ${FILE}`);
