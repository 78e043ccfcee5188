import { ErrorCodes, FedmqError, type NamedTensor } from '@fedmq/protocol';
import { fillGaussian } from '@fedmq/privacy';
import type { Aggregator, FitFailure, FitResult, RoundAggregate, Selector, StepTensor, Strategy } from '../strategy.ts';
import { FlatDelta } from '../strategies/collect.ts';
import { FedAvgSelector } from '../strategies/fedavg-selector.ts';
import { clipScale } from '../strategies/norm-bounding.ts';
import type { PrivacyLedger } from './ledger.ts';

/**
 * Poisson sampling (the sampling the accountant assumes; docs/privacy.md, "Sampling"): each
 * eligible node is in the cohort independently with probability q, so cohorts vary in size and
 * may be empty. The draws come from the ledger's CSPRNG, not the run's seeded generator (a known
 * seed would reveal who was sampled, and amplification by sampling assumes nobody knows).
 */
export class PoissonSelector implements Selector {
  constructor(private readonly ledger: PrivacyLedger) {}

  /** Each of `available` with probability q (one CSPRNG double per node); records N = available.length for the round. `rng` is not used. */
  select(_round: number, available: readonly string[], _rng: () => number): string[] {
    this.ledger.beginRound(available.length);
    const q = this.ledger.q;
    const rand = this.ledger.random;
    return available.filter(() => rand.nextDouble() < q);
  }
}

/**
 * One round of DP-FedAvg: every update clipped to C (the coordinator clips again whatever the
 * node did, central mode) and summed with weight 1 in float64; its count of unclipped updates;
 * the nodes' mean loss (unweighted). O(model) memory.
 */
export class DpRoundAggregate implements RoundAggregate {
  readonly sum: Float64Array;
  private readonly flat: FlatDelta;
  private n = 0;
  private examples = 0;
  private lossSum = 0;
  /** Σ b_k: updates within C before clipping (as the nodes report them). */
  unclipped = 0;

  constructor(global: readonly NamedTensor[], readonly owner: DpFedAvgAggregator, readonly round: ReturnType<PrivacyLedger['round']>) {
    this.flat = new FlatDelta(global);
    this.sum = new Float64Array(this.flat.size);
  }

  /**
   * Folds one update: decoded, clipped to C in central mode (scaled by C/‖Δ‖ when ‖Δ‖ > C), added with weight 1.
   * @throws FedmqError FEDMQ_DP_VIOLATION when the round asks for the clipping bit and the update has none (nothing folded);
   *   RangeError as `FlatDelta.decode`.
   */
  add(r: FitResult, scale?: number): void {
    if (scale !== undefined && scale !== 1) throw new RangeError('DP-FedAvg aggregates synchronous rounds only (no staleness scale)');
    if (this.round.clipBit && r.unclipped === undefined) {
      throw new FedmqError(ErrorCodes.DP_VIOLATION, `update of ${r.nodeId} has no dp.unclipped bit; adaptive clipping needs it`, { nodeId: r.nodeId });
    }
    const v = this.flat.decode(r);
    if (this.round.mode === 'central') {
      const s = clipScale(v, this.round.clipNorm);
      for (let i = 0; i < v.length; i++) this.sum[i] += s * v[i];
    } else {
      for (let i = 0; i < v.length; i++) this.sum[i] += v[i];
    }
    if (r.unclipped) this.unclipped++;
    this.n++;
    this.examples += r.numExamples;
    this.lossSum += r.loss;
  }

  get count(): number {
    return this.n;
  }
  get totalExamples(): number {
    return this.examples;
  }
  /** The unweighted mean of the nodes' losses (DP-FedAvg weighs every node equally). */
  get trainLoss(): number {
    return this.n === 0 ? NaN : this.lossSum / this.n;
  }
}

/**
 * DP-FedAvg's aggregation (McMahan et al. 2018, "Learning Differentially Private Recurrent
 * Language Models", ICLR, arXiv:1710.06963, Algorithm 1 with uniform weights w_k = 1):
 *
 * - central: Δ = (Σ_k clip_C(Δ_k) + N(0, z_Δ²C²·I)) / (q·N), the fixed-denominator estimator
 *   (q·N is the expected cohort: a denominator that depends on who reported would leak);
 * - local: the nodes clipped and noised already; Δ = Σ_k Δ_k / |cohort|.
 *
 * numExamples does not weigh the mean: a node's weight above 1 would multiply its sensitivity.
 * The noise comes from the ledger's CSPRNG (Box–Muller in float64, rounded once to float32 with
 * the step; docs/privacy.md, "Noise"). `finish` releases the round to the ledger (accountant,
 * adaptive clipping).
 */
export class DpFedAvgAggregator implements Aggregator {
  readonly name = 'dp-fedavg';
  readonly streaming = true;
  constructor(readonly ledger: PrivacyLedger) {}

  begin(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new DpRoundAggregate(global, this, this.ledger.round());
  }

  /**
   * The noised mean step (float32, named like the model), or `null` when no update was accepted
   * (nothing is released, nothing is spent).
   * @throws TypeError when `aggregate` was not made by this aggregator's {@link begin}.
   */
  finish(_round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): StepTensor[] | null {
    if (!(aggregate instanceof DpRoundAggregate) || aggregate.owner !== this) throw new TypeError(`${this.name} needs the aggregate returned by its begin`);
    if (aggregate.count === 0) return null;
    const r = aggregate.round;
    const sum = aggregate.sum;
    if (r.sumNoiseStd > 0) {
      const z = fillGaussian(new Float64Array(sum.length), this.ledger.random);
      for (let i = 0; i < sum.length; i++) sum[i] += r.sumNoiseStd * z[i];
    }
    const denom = r.mode === 'central' ? r.expectedCohort : aggregate.count;
    this.ledger.release(aggregate.unclipped, aggregate.count);
    let off = 0;
    return global.map((t) => {
      const data = new Float32Array(t.data.length);
      for (let i = 0; i < data.length; i++) data[i] = sum[off + i] / denom;
      off += data.length;
      return { name: t.name, shape: [...t.shape], data };
    });
  }
}

/**
 * The strategy of a DP run: `base` with its selector replaced by {@link PoissonSelector} (q = its
 * fraction) and its aggregator by {@link DpFedAvgAggregator}; the server optimizer and fit config
 * are kept (DP-FedAvg with server momentum is McMahan et al.'s DP-FedAvgM).
 * @throws FedmqError FEDMQ_BAD_CONFIG when `base` does not sample with FedAvg's fraction, or its
 *   aggregator is not FedAvg's mean (robust aggregators look at single updates and would need their
 *   own sensitivity analysis).
 */
export function withDp(base: Strategy, ledger: PrivacyLedger): Strategy {
  if (!(base.selector instanceof FedAvgSelector)) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'dp: the strategy must sample with a fraction (FedAvg sampling) to be replaced by Poisson sampling');
  if (base.aggregator.name !== 'mean') {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `dp: aggregator ${base.aggregator.name} does not compose with DP-FedAvg (its sensitivity is not analysed); use the mean aggregator with any server optimizer`, { aggregator: base.aggregator.name });
  }
  const selector = new PoissonSelector(ledger);
  const aggregator = new DpFedAvgAggregator(ledger);
  return {
    name: base.name, selector, aggregator, optimizer: base.optimizer,
    fitConfig: (round) => base.fitConfig(round), getState: () => base.getState(), setState: (s) => base.setState(s),
  };
}
