import type { NamedTensor } from '@fedmq/protocol';
import { z } from 'zod';
import type { Aggregator, FitFailure, FitResult, RoundAggregate, StepTensor } from '../strategy.ts';
import { FlatDelta, checkScale } from './collect.ts';
import { numberParam, type AggregatorDescriptor } from './descriptor.ts';
import { MeanAggregate } from './mean.ts';

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

/** min(1, M / ‖v‖₂), ‖v‖₂ in float64: the factor that clips `v` to L2 norm M. */
export function clipScale(v: ArrayLike<number>, maxNorm: number): number {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
  const norm = Math.sqrt(ss);
  return norm > maxNorm ? maxNorm / norm : 1;
}

function checkMaxNorm(maxNorm: number): void {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) throw new RangeError(`maxNorm must be a positive finite number, got ${maxNorm}`);
}

/**
 * Folds each update, clipped to L2 norm ≤ M over the whole delta, into a numExamples-weighted
 * running sum: O(model) memory like {@link MeanAggregate}. `sum` holds Σ n_k·s_k·clip(Δ_k) (the
 * scale s_k applied after clipping); count, totalExamples and trainLoss are as in {@link MeanAggregate}.
 */
export class ClippedMeanAggregate extends MeanAggregate {
  private readonly flat: FlatDelta;
  private readonly maxNorm: number;

  /**
   * @param global the round's global model; only tensor sizes and order are used.
   * @param maxNorm M.
   * @param owner the aggregator whose `begin` made this aggregate.
   * @throws RangeError when `maxNorm` is not a positive finite number.
   */
  constructor(global: readonly NamedTensor[], maxNorm: number, owner: Aggregator) {
    checkMaxNorm(maxNorm);
    super(global, owner);
    this.maxNorm = maxNorm;
    this.flat = new FlatDelta(global);
  }

  /**
   * Decodes the delta into a float64 scratch, clips it and folds it in with weight n_k and `scale`.
   * @throws RangeError when `numExamples` is not a positive finite number, `scale` is negative or
   *   not finite, or the tensors do not match the model (nothing is recorded then).
   */
  override add(r: FitResult, scale?: number): void {
    checkScale(scale);
    const values = this.flat.decode(r);
    const s = clipScale(values, this.maxNorm);
    if (s !== 1) for (let i = 0; i < values.length; i++) values[i] *= s;
    this.fold(this.flat.addables, r, scale);
  }
}

/** Options of {@link NormBoundingAggregator}. */
export interface NormBoundingOptions {
  /** M, the largest L2 norm a delta may have (norm over all tensors of the delta together), > 0 and finite. */
  maxNorm: number;
}

/**
 * Norm bounding (Sun et al. 2019, "Can You Really Backdoor Federated Learning?",
 * arXiv:1911.07963, Section 3): each delta is clipped to L2 norm ≤ M, Δ_k · min(1, M / ‖Δ_k‖),
 * and the step is Σ_k n_k clip(Δ_k) / Σ_k n_k, FedAvg's weighted mean of the clipped deltas
 * (float32). The step's norm is ≤ M whatever the updates (a convex combination of vectors in the
 * M-ball), up to float32 rounding (relative 2⁻²⁴); with scales s_k ≤ 1 it stays ≤ M.
 *
 * The paper's optional "weak differential privacy" Gaussian noise is not implemented. Streaming,
 * O(model) memory: deltas are clipped as they arrive ({@link ClippedMeanAggregate}).
 */
export class NormBoundingAggregator implements Aggregator {
  readonly name = 'norm-bounding';
  readonly streaming = true;
  /** M in use. */
  readonly maxNorm: number;

  /** @throws RangeError when `maxNorm` is not a positive finite number. */
  constructor(opts: NormBoundingOptions) {
    checkMaxNorm(opts.maxNorm);
    this.maxNorm = opts.maxNorm;
  }

  /** A {@link ClippedMeanAggregate} with this M. */
  begin(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new ClippedMeanAggregate(global, this.maxNorm, this);
  }

  /**
   * The weighted mean of the clipped deltas (float32, named like the model), or `null` when none was accepted.
   * @throws TypeError when `aggregate` was not made by this aggregator's {@link begin}.
   */
  finish(_round: number, _global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): StepTensor[] | null {
    if (!(aggregate instanceof ClippedMeanAggregate) || aggregate.owner !== this) throw new TypeError(`${this.name} needs the aggregate returned by its begin`);
    if (aggregate.count === 0) return null;
    return aggregate.sum.mean();
  }
}

const params = z.object({ maxNorm: numberParam.positive() });

/** Descriptor of {@link NormBoundingAggregator} (`--aggregator norm-bounding`); `--max-norm` is required. */
export const normBoundingDescriptor: AggregatorDescriptor<typeof params> = {
  kind: 'aggregator',
  name: 'norm-bounding',
  title: 'norm bounding (clipped weighted mean)',
  paper: 'Sun et al. 2019, arXiv:1911.07963',
  streaming: true,
  params,
  flags: [{ flag: '--max-norm <m>', key: 'maxNorm', help: 'norm-bounding: L2 bound M of each delta (over all its tensors)' }],
  create: (p) => new NormBoundingAggregator(p),
};
