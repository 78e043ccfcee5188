import type { NamedTensor } from '@fedmq/protocol';
import { addable, type Addable } from '../aggregate.ts';
import type { Aggregator, FitFailure, FitResult, RoundAggregate, StepTensor } from '../strategy.ts';

/**
 * One float64 buffer holding a whole delta (all tensors, in model order) with a view per tensor:
 * `decode` adds an update's tensors into it, and `addables` fold the buffer into a weighted sum.
 * Shared by the aggregates that need each delta as a whole vector (robust rules, clipping).
 */
export class FlatDelta {
  /** Σ tensor sizes, the delta's length. */
  readonly size: number;
  readonly values: Float64Array;
  /** The buffer as one addable per tensor, for `WeightedDeltaSum.add`. */
  readonly addables: Addable[];
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
   * Replaces the buffer's content with `r`'s delta (decoded once, exactly: float32 values in float64).
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
 * Checks a {@link RoundAggregate.add} scale.
 * @throws RangeError when `scale` is given and negative or not finite.
 */
export function checkScale(scale: number | undefined): void {
  if (scale !== undefined && (!(scale >= 0) || !Number.isFinite(scale))) throw new RangeError(`scale must be a finite number ≥ 0, got ${scale}`);
}

/**
 * A {@link RoundAggregate} that keeps every accepted delta, for the robust rules (coordinate-wise
 * median, trimmed mean, Krum) that need all n updates at once and cannot be folded into a running
 * sum.
 *
 * Each delta is decoded once, through its tensors' `addTo`, into a zeroed float64 scratch the
 * size of the model, multiplied by the update's scale when one other than 1 is given, and copied
 * as one flat float32 vector (the model's tensors concatenated in the global model's order, each
 * row-major; unscaled deltas are float32 values, so the copy is exact). count, totalExamples and
 * trainLoss are kept as by the weighted mean (numExamples-weighted loss).
 *
 * Memory: O(n × model) float32 for the n collected deltas, plus one float64 model-sized scratch.
 * This is inherent to the robust rules (they look at every update per coordinate or pairwise),
 * unlike the mean's O(model); a round of n updates of a P-parameter model holds about 4·n·P bytes.
 */
export class CollectAggregate implements RoundAggregate {
  /** Number of parameters of the model (length of each collected vector). */
  readonly size: number;
  private readonly flat: FlatDelta;
  private readonly vecs: Float32Array[] = [];
  private readonly examples: number[] = [];
  private readonly ids: string[] = [];
  private total = 0;
  private lossSum = 0;

  /**
   * @param global the global model of the round; only tensor sizes and order are used.
   * @param owner the aggregator whose `begin` made this aggregate (checked by its `finish`).
   */
  constructor(global: readonly NamedTensor[], readonly owner: Aggregator) {
    this.flat = new FlatDelta(global);
    this.size = this.flat.size;
  }

  /**
   * Decodes one accepted update into a flat float32 vector (times `scale`, rounded to float32,
   * when a scale other than 1 is given). The result's `delta` views are only read during this call.
   * @throws RangeError when `numExamples` is not a positive finite number, `scale` is negative or
   *   not finite, the number of tensors differs from the model's, or a tensor's size differs
   *   (nothing is recorded then).
   */
  add(r: FitResult, scale?: number): void {
    checkScale(scale);
    const values = this.flat.decode(r);
    if (scale !== undefined && scale !== 1) for (let i = 0; i < values.length; i++) values[i] *= scale;
    this.vecs.push(new Float32Array(values));
    this.examples.push(r.numExamples);
    this.ids.push(r.nodeId);
    this.total += r.numExamples;
    this.lossSum += r.numExamples * r.loss;
  }

  get count(): number {
    return this.vecs.length;
  }
  get totalExamples(): number {
    return this.total;
  }
  get trainLoss(): number {
    return this.vecs.length === 0 ? NaN : this.lossSum / this.total;
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
 * A flat step (tensors concatenated in `global`'s order, as {@link CollectAggregate.vectors}) as
 * per-tensor {@link StepTensor}s: subarray views of `flat` (no copy, no rounding) with `global`'s
 * names and shapes.
 * @throws RangeError when `flat.length` differs from the model's parameter count.
 */
export function flatStep(global: readonly NamedTensor[], flat: Float64Array): StepTensor[] {
  const size = global.reduce((s, t) => s + t.data.length, 0);
  if (flat.length !== size) throw new RangeError(`expected a step of ${size} values, got ${flat.length}`);
  let off = 0;
  return global.map((g) => {
    const data = flat.subarray(off, off + g.data.length);
    off += g.data.length;
    return { name: g.name, shape: [...g.shape], data };
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
 * Base of the aggregators that need every update of a round (robust rules): a
 * {@link CollectAggregate} per round (memory O(n × model), not streaming), and the step
 * `combine(...)` as float64 views per tensor ({@link flatStep}).
 */
export abstract class CollectingAggregator implements Aggregator {
  /** Name used by `--aggregator`. */
  abstract readonly name: string;
  readonly streaming = false;

  /** A {@link CollectAggregate} for the round. */
  begin(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new CollectAggregate(global, this);
  }

  /**
   * The step `combine(...)` with the global model's names and shapes (float64 values), or `null`
   * when no update was accepted or `combine` refuses.
   * @throws TypeError when `aggregate` was not made by this aggregator's {@link begin}.
   */
  finish(round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, failures: readonly FitFailure[]): StepTensor[] | null {
    if (!(aggregate instanceof CollectAggregate) || aggregate.owner !== this) throw new TypeError(`${this.name} needs the aggregate returned by its begin`);
    if (aggregate.count === 0) return null;
    const step = this.combine(aggregate, round, failures);
    return step === null ? null : flatStep(global, step);
  }

  /**
   * The round's step (a flat float64 vector of the model's size) from the collected deltas, or
   * `null` to keep the global model. Called with at least one delta.
   */
  protected abstract combine(aggregate: CollectAggregate, round: number, failures: readonly FitFailure[]): Float64Array | null;
}
