import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import { applyDelta } from '../aggregate.ts';
import { FlatDelta } from './collect.ts';
import type { FitFailure, FitResult, RoundAggregate, Strategy } from '../strategy.ts';
import { FedAvg, MeanAggregate, type FedAvgOptions } from './fedavg.ts';

/**
 * Scales `v` so that its L2 norm is at most `maxNorm`: v · min(1, maxNorm / ‖v‖) (Sun et al. 2019,
 * "Can You Really Backdoor Federated Learning?", arXiv:1911.07963, Section 3, norm thresholding).
 * Computed in float64; `v` is not modified.
 *
 * @param v a vector.
 * @param maxNorm M > 0, finite.
 * @returns a new float64 vector with ‖out‖ ≤ M (up to float64 rounding).
 * @throws RangeError when `maxNorm` is not a positive finite number.
 */
export function clipToNorm(v: ArrayLike<number>, maxNorm: number): Float64Array {
  checkMaxNorm(maxNorm);
  const out = Float64Array.from(v);
  const s = clipScale(out, maxNorm);
  if (s !== 1) for (let i = 0; i < out.length; i++) out[i] *= s;
  return out;
}

/** min(1, M / ‖v‖). */
function clipScale(v: ArrayLike<number>, maxNorm: number): number {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  const norm = Math.sqrt(ss);
  return norm > maxNorm ? maxNorm / norm : 1;
}

function checkMaxNorm(maxNorm: number): void {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) throw new RangeError(`maxNorm must be a positive finite number, got ${maxNorm}`);
}

/** Options of {@link NormBounding}. */
export interface NormBoundingOptions extends FedAvgOptions {
  /** M, the largest L2 norm a delta may have (norm over all tensors of the delta together), > 0. */
  maxNorm: number;
}

/**
 * Folds each update, clipped to L2 norm ≤ M over the whole delta, into a numExamples-weighted
 * running sum: O(model) memory like {@link MeanAggregate}. `sum` holds Σ n_k · clip(Δ_k); count,
 * totalExamples and trainLoss are as in {@link MeanAggregate}.
 */
export class ClippedMeanAggregate extends MeanAggregate {
  private readonly flat: FlatDelta;
  private readonly maxNorm: number;

  /**
   * @param global the round's global model; only tensor sizes and order are used.
   * @param maxNorm M.
   * @throws RangeError when `maxNorm` is not a positive finite number.
   */
  constructor(global: readonly NamedTensor[], maxNorm: number) {
    checkMaxNorm(maxNorm);
    super(global); // sum holds Σ n_k · clip(Δ_k) and Σ n_k
    this.maxNorm = maxNorm;
    this.flat = new FlatDelta(global);
  }

  /**
   * Decodes the delta into a float64 scratch, clips it and folds it in with weight n_k.
   * @throws RangeError when `numExamples` is not a positive finite number or the tensors do not
   * match the model (nothing is recorded then).
   */
  add(r: FitResult): void {
    const values = this.flat.decode(r);
    const s = clipScale(values, this.maxNorm);
    if (s !== 1) for (let i = 0; i < values.length; i++) values[i] *= s;
    this.fold(this.flat.addables, r);
  }
}

/**
 * Norm bounding (Sun et al. 2019, "Can You Really Backdoor Federated Learning?",
 * arXiv:1911.07963, Section 3): each delta is clipped to L2 norm ≤ M, Δ_k · min(1, M / ‖Δ_k‖),
 * and the next global model is w + Σ_k n_k clip(Δ_k) / Σ_k n_k, FedAvg's weighted mean of the
 * clipped deltas; sampling as FedAvg. The step's norm is ≤ M whatever the updates (a convex
 * combination of vectors in the M-ball), up to float32 rounding of the result (relative 2⁻²⁴).
 *
 * The paper's optional "weak differential privacy" Gaussian noise is not implemented. Memory
 * O(model): deltas are clipped as they arrive ({@link ClippedMeanAggregate}).
 */
export class NormBounding implements Strategy {
  readonly name = 'norm-bounding';
  /** M in use. */
  readonly maxNorm: number;

  /**
   * @throws RangeError when `fractionFit` is not in (0, 1], `minFitNodes` is not an integer ≥ 1,
   * or `maxNorm` is not a positive finite number.
   */
  private readonly selection: FedAvg;

  constructor(private readonly opts: NormBoundingOptions) {
    this.selection = new FedAvg(opts); // validates fractionFit and minFitNodes, samples as FedAvg
    checkMaxNorm(opts.maxNorm);
    this.maxNorm = opts.maxNorm;
  }

  /** Samples max(⌈C·K⌉, minFitNodes) of the K available nodes (all when fewer), as FedAvg. */
  configureFit(_round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    return this.selection.configureFit(_round, available, rng);
  }

  /** A {@link ClippedMeanAggregate} with this M. */
  beginRound(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new ClippedMeanAggregate(global, this.maxNorm);
  }

  /**
   * w + the weighted mean of the clipped deltas, or `null` when none was accepted.
   * @throws TypeError when `aggregate` was not made by {@link beginRound}.
   */
  aggregateFit(_round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): NamedTensor[] | null {
    if (!(aggregate instanceof ClippedMeanAggregate)) throw new TypeError('norm-bounding needs the aggregate returned by its beginRound');
    if (aggregate.count === 0) return null;
    return applyDelta(global, aggregate.sum.mean());
  }
}
