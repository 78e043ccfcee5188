import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import { WeightedDeltaSum, applyDelta, type Addable } from '../aggregate.ts';
import type { FitFailure, FitResult, RoundAggregate, Strategy } from '../strategy.ts';

/** Options of {@link FedAvg}, in Flower's naming. */
export interface FedAvgOptions {
  /** Fraction C of available nodes sampled each round, (0, 1]. */
  fractionFit: number;
  /** Minimum nodes sampled per round (when that many are available). */
  minFitNodes: number;
  /** Local training configuration sent to every selected node. */
  fitConfig: FitConfig;
}

/**
 * Federated Averaging (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
 * from Decentralized Data", arXiv:1602.05629, Algorithm 1): sample max(C·K, minFitNodes) of the K
 * available nodes, each trains E epochs of minibatch SGD from the global model, and the new
 * global model is w + Σ_k (n_k/n) Δ_k over the nodes that reported, n = Σ_k n_k.
 */
export class FedAvg implements Strategy {
  readonly name = 'fedavg';
  constructor(private readonly opts: FedAvgOptions) {
    if (!(opts.fractionFit > 0 && opts.fractionFit <= 1)) throw new RangeError(`fractionFit must be in (0, 1], got ${opts.fractionFit}`);
    if (!(Number.isInteger(opts.minFitNodes) && opts.minFitNodes >= 1)) throw new RangeError(`minFitNodes must be an integer ≥ 1, got ${opts.minFitNodes}`);
  }

  configureFit(_round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    const k = Math.min(available.length, Math.max(this.opts.minFitNodes, Math.ceil(this.opts.fractionFit * available.length)));
    return { selected: sample(available, k, rng), config: { ...this.opts.fitConfig } };
  }

  beginRound(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new MeanAggregate(global);
  }

  aggregateFit(_round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): NamedTensor[] | null {
    if (aggregate.count === 0) return null;
    return applyDelta(global, aggregate.sum.mean());
  }
}

/**
 * Folds updates into a numExamples-weighted running mean of deltas and losses. Aggregates that
 * transform each delta first (collecting, clipping) extend it and call {@link fold}.
 */
export class MeanAggregate implements RoundAggregate {
  readonly sum: WeightedDeltaSum;
  private lossSum = 0;
  constructor(global: readonly NamedTensor[]) {
    this.sum = new WeightedDeltaSum(global);
  }
  add(r: FitResult): void {
    this.fold(r.delta, r);
  }
  /** Adds `delta` (r's delta, possibly transformed) with weight r.numExamples, and r's loss. */
  protected fold(delta: readonly Addable[], r: FitResult): void {
    this.sum.add(delta, r.numExamples);
    this.lossSum += r.numExamples * r.loss;
  }
  get count(): number {
    return this.sum.count;
  }
  get totalExamples(): number {
    return this.sum.totalWeight;
  }
  get trainLoss(): number {
    return this.sum.count === 0 ? NaN : this.lossSum / this.sum.totalWeight;
  }
}

/** k distinct items of `items` chosen uniformly (partial Fisher–Yates), in `items` order. */
export function sample<T>(items: readonly T[], k: number, rng: () => number): T[] {
  const idx = items.map((_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k).sort((a, b) => a - b).map((i) => items[i]);
}
