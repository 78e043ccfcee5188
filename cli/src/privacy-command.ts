/**
 * `fedmq privacy epsilon|noise`: the privacy accountant from the command line, for scripts and
 * auditors (docs/privacy.md, "Accounting"). Each prints one number on stdout and nothing else;
 * bad input ends with `fedmq: FEDMQ_BAD_CONFIG: …` on stderr and exit code 1 (process.ts).
 */
import type { Command } from 'commander';
import { epsilonFor, noiseMultiplierFor } from '@fedmq/privacy';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/** A flag's value as a number, or FEDMQ_BAD_CONFIG naming the flag (ranges are the library's to check). */
function numberFlag(flag: string): (v: string) => number {
  return (v: string) => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (Number.isNaN(n)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${flag} must be a number, got '${v}'`, { flag, value: v });
    return n;
  };
}

interface PlanFlags {
  q: number;
  rounds: number;
  delta: number;
}

/** Registers `fedmq privacy` and its subcommands `epsilon` and `noise` on `program`. */
export function registerPrivacyCommand(program: Command): void {
  const privacy = program
    .command('privacy')
    .description('differential privacy accounting of a DP-FedAvg run (RDP of the Poisson-subsampled Gaussian; docs/privacy.md): prints one number');

  const plan = (cmd: Command) => cmd
    .requiredOption('--q <q>', 'probability that a node is sampled in a round (Poisson sampling; the run\'s --fraction), in (0, 1]', numberFlag('--q'))
    .requiredOption('--rounds <r>', 'rounds of the run (one composition each), an integer ≥ 1', numberFlag('--rounds'))
    .requiredOption('--delta <δ>', 'δ of the (ε, δ) guarantee, in (0, 1)', numberFlag('--delta'));

  plan(privacy
    .command('epsilon')
    .description('ε(δ) of a run, in nats: prints ε (Infinity for --noise-multiplier 0)')
    .requiredOption('--noise-multiplier <σ>', 'noise standard deviation over the clip norm, ≥ 0', numberFlag('--noise-multiplier')))
    .action((o: PlanFlags & { noiseMultiplier: number }) => {
      const eps = epsilonFor({ q: o.q, rounds: o.rounds, delta: o.delta, noiseMultiplier: o.noiseMultiplier });
      process.stdout.write(`${eps}\n`);
    });

  plan(privacy
    .command('noise')
    .description('the smallest noise multiplier σ whose run is (ε, δ)-DP: prints σ (bisection to 1e-6 relative; the printed σ meets the target)')
    .requiredOption('--target-epsilon <ε>', 'target ε in nats, > 0', numberFlag('--target-epsilon')))
    .action((o: PlanFlags & { targetEpsilon: number }) => {
      const sigma = noiseMultiplierFor({ q: o.q, rounds: o.rounds, delta: o.delta, targetEpsilon: o.targetEpsilon });
      process.stdout.write(`${sigma}\n`);
    });
}
