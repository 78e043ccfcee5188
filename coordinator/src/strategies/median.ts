import { z } from 'zod';
import type { FitFailure } from '../strategy.ts';
import { CollectingAggregator, checkVectors, type CollectAggregate } from './collect.ts';
import type { AggregatorDescriptor } from './descriptor.ts';

/**
 * Coordinate-wise median of n vectors: out[i] = median_k vectors[k][i], the mean of the two middle
 * values when n is even (Yin et al. 2018, "Byzantine-Robust Distributed Learning: Towards Optimal
 * Statistical Rates", ICML, Definition 1). Computed in float64.
 *
 * With f < n/2 arbitrary vectors among n, every out[i] lies in [min, max] of the honest vectors'
 * i-th coordinates. Values are expected finite (the coordinator rejects non-finite updates).
 *
 * @param vectors n ≥ 1 vectors of one length d.
 * @returns a float64 vector of length d.
 * @throws RangeError when `vectors` is empty or lengths differ.
 */
export function coordinateMedian(vectors: readonly ArrayLike<number>[]): Float64Array {
  const d = checkVectors(vectors);
  const n = vectors.length;
  const out = new Float64Array(d);
  const col = new Float64Array(n);
  const lo = (n - 1) >> 1;
  const hi = n >> 1;
  for (let i = 0; i < d; i++) {
    for (let k = 0; k < n; k++) col[k] = vectors[k][i];
    col.sort();
    out[i] = lo === hi ? col[lo] : (col[lo] + col[hi]) / 2;
  }
  return out;
}

/**
 * Coordinate-wise median aggregation (Yin et al. 2018, "Byzantine-Robust Distributed Learning:
 * Towards Optimal Statistical Rates", ICML, Algorithm 1 option I): the step is
 * coordinateMedian(Δ_1 … Δ_n) over the n nodes that reported (float64 values).
 *
 * Unweighted across nodes, as in Yin et al.: weighting by numExamples would let one node that
 * claims a huge n_k move the median alone. Robust to any f < n/2 malicious updates (each
 * coordinate of the step stays within the honest updates' range). Memory O(n × model), see
 * {@link CollectAggregate}.
 */
export class MedianAggregator extends CollectingAggregator {
  readonly name = 'median';

  protected combine(aggregate: CollectAggregate, _round: number, _failures: readonly FitFailure[]): Float64Array {
    return coordinateMedian(aggregate.vectors);
  }
}

/** Descriptor of {@link MedianAggregator} (`--aggregator median`); no parameters. */
export const medianDescriptor: AggregatorDescriptor = {
  kind: 'aggregator',
  name: 'median',
  title: 'coordinate-wise median',
  paper: 'Yin et al. 2018, "Byzantine-Robust Distributed Learning", ICML',
  streaming: false,
  params: z.object({}),
  flags: [],
  create: () => new MedianAggregator(),
};
