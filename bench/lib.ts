/** Shared helpers of the benchmarks: run the default MNIST job with some settings changed. */
import type { RoundRecord } from '@fedmq/protocol';
import type { AttackName } from '@fedmq/simulator';
import { DEFAULT_JOB, runLocalJob } from '@fedmq/simulator';

/** A command-line flag's value, or `def`. */
export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

/** Runs the default job (`npm start`'s split, seed, model, local training) with the given changes, on free ports. */
export async function runJob(o: {
  job: string; alpha?: number; rounds?: number; strategy?: string; strategyParams?: Record<string, unknown>; byzantine?: number; attack?: AttackName;
  /** Server learning rate η of the strategy's server optimizer, passed as `params.serverLr` (`--server-lr`; default: the optimizer's). */
  serverLr?: number;
}): Promise<{ history: RoundRecord[]; seconds: number }> {
  const t0 = performance.now();
  const { history } = await runLocalJob({
    job: o.job, dataset: DEFAULT_JOB.dataset, nodes: DEFAULT_JOB.nodes, partition: { kind: 'dirichlet', alpha: o.alpha ?? 0.5 }, seed: DEFAULT_JOB.seed,
    rounds: o.rounds ?? DEFAULT_JOB.rounds, fraction: DEFAULT_JOB.fraction, deadlineMs: DEFAULT_JOB.deadlineMs, fit: DEFAULT_JOB.fit,
    strategy: o.strategy, strategyParams: o.serverLr === undefined ? o.strategyParams : { ...o.strategyParams, serverLr: o.serverLr }, byzantine: o.byzantine, attack: o.attack, port: 0, httpPort: false, metricsPort: false,
  });
  return { history, seconds: (performance.now() - t0) / 1000 };
}

/** First round whose test accuracy reached `target`, or null. */
export function roundsTo(history: readonly RoundRecord[], target: number): number | null {
  return history.find((r) => (r.testAccuracy ?? 0) >= target)?.round ?? null;
}
