import { z } from 'zod';
import type { FitFailure } from '../strategy.ts';
import { CollectingAggregator, checkVectors, type CollectAggregate } from './collect.ts';
import { numberParam, type AggregatorDescriptor } from './descriptor.ts';

/** Default fraction β trimmed at each end by {@link TrimmedMeanAggregator}. */
export const DEFAULT_TRIM_BETA = 0.1;

/**
 * Coordinate-wise β-trimmed mean of n vectors (Yin et al. 2018, "Byzantine-Robust Distributed
 * Learning: Towards Optimal Statistical Rates", ICML, Definition 2): for each coordinate, drop the
 * k = ⌊β·n⌋ largest and k smallest values and average the n − 2k left. Computed in float64.
 *
 * With f ≤ k arbitrary vectors among n, every out[i] lies in [min, max] of the honest vectors'
 * i-th coordinates. Values are expected finite (the coordinator rejects non-finite updates).
 *
 * @param vectors n ≥ 1 vectors of one length d.
 * @param beta β ∈ [0, 0.5) (so n − 2k ≥ 1); 0 is the plain mean.
 * @returns a float64 vector of length d.
 * @throws RangeError when `vectors` is empty, lengths differ, or `beta` is outside [0, 0.5).
 */
export function trimmedMean(vectors: readonly ArrayLike<number>[], beta: number): Float64Array {
  checkBeta(beta);
  const d = checkVectors(vectors);
  const n = vectors.length;
  const k = Math.floor(beta * n);
  const out = new Float64Array(d);
  const col = new Float64Array(n);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < n; j++) col[j] = vectors[j][i];
    col.sort();
    let s = 0;
    for (let j = k; j < n - k; j++) s += col[j];
    out[i] = s / (n - 2 * k);
  }
  return out;
}

function checkBeta(beta: number): void {
  if (!(beta >= 0 && beta < 0.5)) throw new RangeError(`trimBeta must be in [0, 0.5), got ${beta}`);
}

/** Options of {@link TrimmedMeanAggregator}. */
export interface TrimmedMeanOptions {
  /**
   * Fraction β ∈ [0, 0.5) trimmed from each end, per coordinate: ⌊β·n⌋ largest and ⌊β·n⌋ smallest
   * of the n updates received are dropped. Tolerates f ≤ ⌊β·n⌋ malicious updates. Default
   * {@link DEFAULT_TRIM_BETA}.
   */
  trimBeta?: number;
}

/**
 * Coordinate-wise trimmed-mean aggregation (Yin et al. 2018, "Byzantine-Robust Distributed
 * Learning: Towards Optimal Statistical Rates", ICML, Algorithm 1 option II): the step is
 * trimmedMean(Δ_1 … Δ_n, β) over the n nodes that reported (float64 values).
 *
 * Unweighted across nodes, as in Yin et al.: weighting by numExamples would let one node that
 * claims a huge n_k dominate the mean of the kept values. Memory O(n × model), see
 * {@link CollectAggregate}.
 */
export class TrimmedMeanAggregator extends CollectingAggregator {
  readonly name = 'trimmed-mean';
  /** β in use. */
  readonly trimBeta: number;

  /** @throws RangeError when `trimBeta` is outside [0, 0.5). */
  constructor(opts: TrimmedMeanOptions = {}) {
    super();
    this.trimBeta = opts.trimBeta ?? DEFAULT_TRIM_BETA;
    checkBeta(this.trimBeta);
  }

  protected combine(aggregate: CollectAggregate, _round: number, _failures: readonly FitFailure[]): Float64Array {
    return trimmedMean(aggregate.vectors, this.trimBeta);
  }
}

const params = z.object({ trimBeta: numberParam.below(0.5).default(DEFAULT_TRIM_BETA) });

/** Descriptor of {@link TrimmedMeanAggregator} (`--aggregator trimmed-mean`). */
export const trimmedMeanDescriptor: AggregatorDescriptor<typeof params> = {
  kind: 'aggregator',
  name: 'trimmed-mean',
  title: 'coordinate-wise trimmed mean',
  paper: 'Yin et al. 2018, "Byzantine-Robust Distributed Learning", ICML',
  streaming: false,
  params,
  flags: [{ flag: '--trim-beta <b>', key: 'trimBeta', help: 'trimmed-mean: fraction β trimmed at each end, per coordinate, in [0, 0.5)' }],
  create: (p) => new TrimmedMeanAggregator(p),
};
