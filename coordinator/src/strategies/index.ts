import type { Logger } from 'pino';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import type { Strategy } from '../strategy.ts';
import { FedAvg, type FedAvgOptions } from './fedavg.ts';
import { FedAvgM } from './fedavgm.ts';
import { FedAdam } from './fedadam.ts';
import { FedYogi } from './fedyogi.ts';
import { FedAdagrad } from './fedadagrad.ts';
import { FedProx } from './fedprox.ts';
import { CoordinateMedian } from './median.ts';
import { TrimmedMean } from './trimmed-mean.ts';
import { Krum, MultiKrum } from './krum.ts';
import { NormBounding } from './norm-bounding.ts';

/** Names `--strategy` accepts (docs/strategies.md). */
export const STRATEGY_NAMES = [
  'fedavg', 'fedavgm', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad', 'median', 'trimmed-mean', 'krum', 'multi-krum', 'norm-bounding',
] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

/**
 * Each strategy's own options, all optional here; a strategy reads only its own and the
 * constructors validate them (defaults in each class's docs).
 */
export interface StrategyParams {
  /** FedAvgM: server learning rate η (default 1) and momentum β (default 0.9). */
  serverLearningRate?: number;
  serverMomentum?: number;
  /** FedAdam/FedYogi/FedAdagrad: server learning rate η, β1, β2, adaptivity τ. */
  eta?: number;
  beta1?: number;
  beta2?: number;
  tau?: number;
  /** FedProx: proximal term μ. */
  proximalMu?: number;
  /** Trimmed mean: fraction β trimmed at each end, [0, 0.5). */
  trimBeta?: number;
  /** Krum / Multi-Krum: f, Byzantine nodes tolerated (required), and m, updates averaged. */
  byzantine?: number;
  multiKrumM?: number;
  /** Norm bounding: L2 bound of each delta (required). */
  maxNorm?: number;
}

/**
 * Builds the strategy `name` from the common options (`fractionFit`, `minFitNodes`, `fitConfig`)
 * and its own parameters.
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown name, a missing required parameter, or a
 *   value the strategy refuses (its RangeError's message is kept).
 */
export function createStrategy(name: string, base: FedAvgOptions, p: StrategyParams = {}, logger?: Logger): Strategy {
  const need = (value: number | undefined, flag: string): number => {
    if (value === undefined) throw new FedmqError(ErrorCodes.BAD_CONFIG, `strategy ${name} needs ${flag}`);
    return value;
  };
  try {
    switch (name as StrategyName) {
      case 'fedavg': return new FedAvg(base);
      case 'fedavgm': return new FedAvgM({ ...base, serverLearningRate: p.serverLearningRate, serverMomentum: p.serverMomentum });
      case 'fedprox': return new FedProx({ ...base, proximalMu: p.proximalMu });
      case 'fedadam': return new FedAdam({ ...base, eta: p.eta, beta1: p.beta1, beta2: p.beta2, tau: p.tau });
      case 'fedyogi': return new FedYogi({ ...base, eta: p.eta, beta1: p.beta1, beta2: p.beta2, tau: p.tau });
      case 'fedadagrad': return new FedAdagrad({ ...base, eta: p.eta, beta1: p.beta1, tau: p.tau });
      case 'median': return new CoordinateMedian(base);
      case 'trimmed-mean': return new TrimmedMean({ ...base, beta: p.trimBeta });
      case 'krum': return new Krum({ ...base, byzantine: need(p.byzantine, '--krum-f F'), logger });
      case 'multi-krum': return new MultiKrum({ ...base, byzantine: need(p.byzantine, '--krum-f F'), m: p.multiKrumM, logger });
      case 'norm-bounding': return new NormBounding({ ...base, maxNorm: need(p.maxNorm, '--max-norm M') });
    }
  } catch (err) {
    if (err instanceof FedmqError) throw err;
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `strategy ${name}: ${(err as Error).message}`, {}, { cause: err });
  }
  throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown strategy ${JSON.stringify(name)}; expected one of ${STRATEGY_NAMES.join(', ')}`);
}

export { FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad, FedProx, CoordinateMedian, TrimmedMean, Krum, MultiKrum, NormBounding };
