import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import { addable, type WeightedDeltaSum } from '../aggregate.ts';
import type { FitFailure, FitResult, RoundAggregate, Strategy } from '../strategy.ts';
import { FedAvg, MeanAggregate, type FedAvgOptions } from './fedavg.ts';

/**
 * One float64 buffer holding a whole delta (all tensors, in model order) with a view per tensor:
 * `decode` adds an update's tensors into it, and `addables` fold the buffer into a weighted sum.
 * Shared by the aggregates that need each delta as a whole vector (robust rules, clipping).
 */
export class FlatDelta {
  /** Σ tensor sizes, the delta's length. */
  readonly size: number;
  readonly values: Float64Array;
  /** The buffer as one addable per tensor, for {@link WeightedDeltaSum.add}. */
  readonly addables: ReturnType<typeof addable>[];
  private readonly views: Float64Array[];

  /** @param global the model; only tensor sizes and order are used. */
  constructor(global: readonly NamedTensor[]) {
    this.size = global.reduce((s, t) => s + t.data.length, 0);
    this.values = new Float64Array(this.size);
    let off = 0;
    this.views = global.map((t) => {
      const v = this.values.subarray(off, off + t.data.length);
      off += t.data.length;
      return v;
    });
    this.addables = this.views.map((v) => addable({ data: v }));
  }

  /**
   * Replaces the buffer's content with `r`'s delta (decoded once).
   * @throws RangeError when `numExamples` is not positive and finite, or the tensors do not match the model.
   */
  decode(r: FitResult): Float64Array {
    if (!(r.numExamples > 0) || !Number.isFinite(r.numExamples)) throw new RangeError(`numExamples must be positive, got ${r.numExamples}`);
    if (r.delta.length !== this.views.length) throw new RangeError(`expected ${this.views.length} tensors, got ${r.delta.length}`);
    this.values.fill(0);
    for (let t = 0; t < this.views.length; t++) r.delta[t].addTo(this.views[t], 1);
    return this.values;
  }
}

/**
 * A {@link RoundAggregate} that keeps every accepted delta, for the robust rules (coordinate-wise
 * median, trimmed mean, Krum) that need all n updates at once and cannot be folded into a running
 * sum.
 *
 * Each delta is decoded once, through its tensors' `addTo`, into a zeroed float64 scratch the
 * size of the model, then copied as one flat float32 vector (the model's tensors concatenated in
 * the global model's order, each row-major). The scratch also feeds the same numExamples-weighted
 * {@link WeightedDeltaSum} as {@link MeanAggregate} (count, totalExamples, trainLoss, sum), so the
 * coordinator's bookkeeping is unchanged.
 *
 * Memory: O(n × model) float32 for the n collected deltas, plus one float64 model-sized scratch
 * and the float64 running sum. This is inherent to the robust rules (they look at every update
 * per coordinate or pairwise), unlike FedAvg's O(model); a round of n updates of a P-parameter
 * model holds about 4·n·P bytes here.
 */
export class CollectAggregate extends MeanAggregate {
  /** Number of parameters of the model (length of each collected vector). */
  readonly size: number;
  private readonly flat: FlatDelta;
  private readonly vecs: Float32Array[] = [];
  private readonly examples: number[] = [];
  private readonly ids: string[] = [];

  /** @param global the global model of the round; only tensor sizes and order are used. */
  constructor(global: readonly NamedTensor[]) {
    super(global);
    this.flat = new FlatDelta(global);
    this.size = this.flat.size;
  }

  /**
   * Decodes one accepted update into a flat float32 vector and folds it into the weighted sum.
   * The result's `delta` views are only read during this call.
   * @throws RangeError when `numExamples` is not a positive finite number, the number of tensors
   * differs from the model's, or a tensor's size differs (nothing is recorded then).
   */
  add(r: FitResult): void {
    const values = this.flat.decode(r);
    this.fold(this.flat.addables, r);
    this.vecs.push(new Float32Array(values));
    this.examples.push(r.numExamples);
    this.ids.push(r.nodeId);
  }

  /** The collected deltas, one flat float32 vector of length {@link size} per update, in arrival order. */
  get vectors(): readonly Float32Array[] {
    return this.vecs;
  }

  /** n_k of each collected delta, aligned with {@link vectors}. */
  get numExamples(): readonly number[] {
    return this.examples;
  }

  /** nodeId of each collected delta, aligned with {@link vectors}. */
  get nodeIds(): readonly string[] {
    return this.ids;
  }

}

/**
 * `global + step`, where `step` is a flat vector laid out like {@link CollectAggregate.vectors}
 * (tensors concatenated in `global`'s order). Sums are rounded to float32.
 * @throws RangeError when `step.length` differs from the model's parameter count.
 */
export function applyFlatDelta(global: readonly NamedTensor[], step: ArrayLike<number>): NamedTensor[] {
  const size = global.reduce((s, t) => s + t.data.length, 0);
  if (step.length !== size) throw new RangeError(`expected a step of ${size} values, got ${step.length}`);
  let off = 0;
  return global.map((g) => {
    const out = new Float32Array(g.data.length);
    for (let i = 0; i < out.length; i++) out[i] = g.data[i] + step[off + i];
    off += g.data.length;
    return { name: g.name, shape: [...g.shape], data: out };
  });
}

/**
 * Checks `vectors` are non-empty and of one length, for the pure robust rules.
 * @returns the common length.
 * @throws RangeError when there is no vector or lengths differ.
 */
export function checkVectors(vectors: readonly ArrayLike<number>[]): number {
  if (vectors.length === 0) throw new RangeError('at least one vector is required');
  const d = vectors[0].length;
  for (let k = 1; k < vectors.length; k++) {
    if (vectors[k].length !== d) throw new RangeError(`vector ${k} has ${vectors[k].length} values, expected ${d}`);
  }
  return d;
}

/**
 * Base of the strategies that need every update of a round (robust rules): FedAvg's sampling
 * (max(⌈C·K⌉, minFitNodes) of the K available nodes, see {@link FedAvg}), a
 * {@link CollectAggregate} per round, and `global + combine(...)` as the next model.
 * Options are validated like {@link FedAvgOptions}.
 */
export abstract class CollectingStrategy<O extends FedAvgOptions = FedAvgOptions> implements Strategy {
  /** Name used by `--strategy`. */
  abstract readonly name: string;

  /**
   * @throws RangeError when `fractionFit` is not in (0, 1] or `minFitNodes` is not an integer ≥ 1.
   */
  private readonly selection: FedAvg;

  constructor(protected readonly opts: O) {
    this.selection = new FedAvg(opts); // validates fractionFit and minFitNodes, samples as FedAvg
  }

  /** Samples max(⌈C·K⌉, minFitNodes) of the K available nodes (all when fewer), as FedAvg. */
  configureFit(_round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    return this.selection.configureFit(_round, available, rng);
  }

  /** A {@link CollectAggregate} for the round (memory O(n × model)). */
  beginRound(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new CollectAggregate(global);
  }

  /**
   * `global + combine(...)`, or `null` when no update was accepted or `combine` refuses.
   * @throws TypeError when `aggregate` was not made by this strategy's {@link beginRound}.
   */
  aggregateFit(round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, failures: readonly FitFailure[]): NamedTensor[] | null {
    if (!(aggregate instanceof CollectAggregate)) throw new TypeError(`${this.name} needs the aggregate returned by its beginRound`);
    if (aggregate.count === 0) return null;
    const step = this.combine(aggregate, round, failures);
    return step === null ? null : applyFlatDelta(global, step);
  }

  /**
   * The round's step (a flat vector of the model's size) from the collected deltas, or `null` to
   * keep the global model. Called with at least one delta.
   */
  protected abstract combine(aggregate: CollectAggregate, round: number, failures: readonly FitFailure[]): ArrayLike<number> | null;
}
