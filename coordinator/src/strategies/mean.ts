import type { NamedTensor } from '@fedmq/protocol';
import { z } from 'zod';
import { WeightedDeltaSum, type Addable } from '../aggregate.ts';
import type { Aggregator, FitFailure, FitResult, RoundAggregate, StepTensor } from '../strategy.ts';
import type { AggregatorDescriptor } from './descriptor.ts';

/**
 * A round's numExamples-weighted running mean of deltas and losses, O(model) memory: the deltas
 * fold into a {@link WeightedDeltaSum} (exact and order-independent without a scale). Aggregates
 * that transform each delta first (clipping) extend it and call {@link fold}.
 */
export class MeanAggregate implements RoundAggregate {
  /** Σ n_k·s_k·Δ_k and Σ n_k so far. */
  readonly sum: WeightedDeltaSum;
  private lossSum = 0;

  /**
   * @param global the round's global model; only names and sizes are used.
   * @param owner the aggregator whose `begin` made this aggregate (checked by its `finish`).
   */
  constructor(global: readonly NamedTensor[], readonly owner: Aggregator) {
    this.sum = new WeightedDeltaSum(global);
  }

  /**
   * Folds `r`: n_k·s·Δ_k into the sum, n_k into Σ n_k, n_k·loss_k into the loss.
   * @param scale s ≥ 0 (FedBuff's staleness weight); absent or 1 keeps the exact arithmetic.
   * @throws RangeError when `numExamples` is not positive and finite or `scale` is negative or not
   *   finite (nothing folded), or a tensor's size differs from the model's (validate updates before).
   */
  add(r: FitResult, scale?: number): void {
    this.fold(r.delta, r, scale);
  }

  /** Adds `delta` (r's delta, possibly transformed) with weight r.numExamples and `scale`, and r's loss. */
  protected fold(delta: readonly Addable[], r: FitResult, scale?: number): void {
    this.sum.add(delta, r.numExamples, scale);
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

/**
 * FedAvg's aggregation (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
 * from Decentralized Data", arXiv:1602.05629, Algorithm 1): the step is the numExamples-weighted
 * mean delta Δ = Σ_k n_k Δ_k / Σ_k n_k over the nodes that reported, rounded once to float32.
 * With a scale s_k per update (FedBuff, Nguyen et al. 2022, arXiv:2106.06639) it is
 * Σ_k n_k s_k Δ_k / Σ_k n_k. Streaming: O(model) memory however many updates arrive.
 */
export class MeanAggregator implements Aggregator {
  readonly name = 'mean';
  readonly streaming = true;

  /** A {@link MeanAggregate} for the round. */
  begin(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new MeanAggregate(global, this);
  }

  /**
   * The weighted mean delta as float32 tensors named like the model, or `null` when no update was folded.
   * @throws TypeError when `aggregate` was not made by this aggregator's {@link begin}.
   */
  finish(_round: number, _global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): StepTensor[] | null {
    if (!(aggregate instanceof MeanAggregate) || aggregate.owner !== this) throw new TypeError(`${this.name} needs the aggregate returned by its begin`);
    if (aggregate.count === 0) return null;
    return aggregate.sum.mean();
  }
}

/** Descriptor of {@link MeanAggregator} (`--aggregator mean`); no parameters. */
export const meanDescriptor: AggregatorDescriptor = {
  kind: 'aggregator',
  name: 'mean',
  title: 'numExamples-weighted mean',
  paper: 'McMahan et al. 2017, arXiv:1602.05629',
  streaming: true,
  params: z.object({}),
  flags: [],
  create: () => new MeanAggregator(),
};
