import type { NamedTensor, PreparedTensor } from '@fedmq/protocol';

/** Something that adds `weight ×` its values into a running sum: a codec's prepared tensor, or a plain tensor via {@link addable}. */
export type Addable = Pick<PreparedTensor, 'addTo' | 'addToCompensated'>;

/** A float32 tensor as an {@link Addable}. */
export function addable(t: { data: ArrayLike<number> }): Addable {
  return {
    addTo(target, weight) {
      if (target.length !== t.data.length) throw new RangeError(`expected ${target.length} values, got ${t.data.length}`);
      const d = t.data;
      for (let i = 0; i < target.length; i++) target[i] += weight * d[i];
    },
  };
}

/**
 * Running weighted sum of deltas: Σ_k n_k · Δ_k and Σ_k n_k, folded in one update at a time so
 * the coordinator's memory is O(model), not O(updates × model) (McMahan et al. 2017,
 * arXiv:1602.05629, Algorithm 1: w_{t+1} = w_t + Σ_k (n_k / n) Δ_k).
 *
 * The result does not depend on the order updates arrive in: each product n_k · Δ_k,i is exact in
 * float64 (a float32 times an integer below 2^29), and the products are summed with an
 * error-free transformation (Knuth's TwoSum, TAOCP vol. 2 §4.2.2) into a high and a low float64
 * part, so the sum carries ~106 bits and its rounding to float64, then float32, is the rounding of
 * the exact sum. A run therefore reaches the same model bit for bit however the network orders
 * the updates, which makes a resumed run identical to an uninterrupted one. (This holds for
 * unscaled adds; an add with a scale ≠ 1, FedBuff's staleness weight, is rounded: see {@link add}.)
 */
export class WeightedDeltaSum {
  private readonly hi: Float64Array[];
  private readonly lo: Float64Array[];
  /** One update's products n_k · Δ_k, before they are folded into hi/lo (kept zeroed between updates); for codecs without `addToCompensated`. */
  private scratch?: Float64Array[];
  private readonly names: string[];
  private readonly shapes: number[][];
  private weight = 0;
  private n = 0;

  /** @param like the global model's tensors; only names and sizes are used. */
  constructor(like: readonly NamedTensor[]) {
    this.names = like.map((t) => t.name);
    this.shapes = like.map((t) => [...t.shape]);
    this.hi = like.map((t) => new Float64Array(t.data.length));
    this.lo = like.map((t) => new Float64Array(t.data.length));
  }

  /** Number of deltas folded in. */
  get count(): number {
    return this.n;
  }

  /** Σ n_k of the deltas folded in. */
  get totalWeight(): number {
    return this.weight;
  }

  /**
   * Adds `weight · scale · delta` to the sum and `weight` to Σ n_k, each tensor decoded straight
   * into a float64 scratch and folded into the compensated sums. `delta` must hold the same
   * tensors in the same order as `like`, already validated (the coordinator checks an update
   * completely before folding it).
   *
   * `scale` is FedBuff's staleness weight s(τ) (Nguyen et al. 2022, "Federated Learning with
   * Buffered Asynchronous Aggregation", AISTATS, arXiv:2106.06639): the update contributes
   * n_k·s·Δ_k to the numerator while the denominator stays Σ n_k. With `scale` absent or exactly 1
   * the arithmetic is the exact one described on the class (n_k · Δ_k,i exact, TwoSum), so the
   * mean is order-independent bit for bit. With any other scale the product (n_k·s)·Δ_k,i is
   * rounded to float64 before it is summed, so the result is no longer exact and may differ in
   * the last bits between arrival orders (async mode has no fixed order anyway).
   *
   * @param weight n_k, positive and finite.
   * @param scale s ≥ 0 and finite; default 1.
   * @throws RangeError when `weight` is not a positive finite number, `scale` is negative or not
   *   finite, or a tensor's size differs (when a tensor after the first fails, the earlier ones
   *   are already folded: validate before adding).
   */
  add(delta: readonly Addable[], weight: number, scale = 1): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight must be positive, got ${weight}`);
    if (!(scale >= 0) || !Number.isFinite(scale)) throw new RangeError(`scale must be a finite number ≥ 0, got ${scale}`);
    if (delta.length !== this.hi.length) throw new RangeError(`expected ${this.hi.length} tensors, got ${delta.length}`);
    const w = scale === 1 ? weight : weight * scale;
    for (let t = 0; t < this.hi.length; t++) {
      const fast = delta[t].addToCompensated;
      if (fast) {
        fast.call(delta[t], this.hi[t], this.lo[t], w);
        continue;
      }
      const x = (this.scratch ??= this.hi.map((h) => new Float64Array(h.length)))[t];
      try {
        delta[t].addTo(x, w);
      } catch (err) {
        x.fill(0);
        throw err;
      }
      twoSumInto(this.hi[t], this.lo[t], x);
    }
    this.weight += weight;
    this.n++;
  }

  /**
   * Σ n_k·s_k·Δ_k / Σ n_k as float32 tensors named like the model (s_k = 1 unless a scale was
   * given): the float64 sum hi + lo divided by Σ n_k, rounded once to float32.
   * @throws RangeError when nothing was added.
   */
  mean(): NamedTensor[] {
    if (this.n === 0) throw new RangeError('no delta was added');
    return this.hi.map((h, t) => {
      const l = this.lo[t];
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = (h[i] + l[i]) / this.weight;
      return { name: this.names[t], shape: [...this.shapes[t]], data: out };
    });
  }
}

/** hi + lo += x element-wise with TwoSum (hi keeps the rounded sum, lo gathers the rounding errors); zeroes x. */
function twoSumInto(hi: Float64Array, lo: Float64Array, x: Float64Array): void {
  for (let i = 0; i < x.length; i++) {
    const a = hi[i];
    const b = x[i];
    const s = a + b;
    const bb = s - a;
    lo[i] += (a - (s - bb)) + (b - bb);
    hi[i] = s;
    x[i] = 0;
  }
}

/**
 * `global + step`, tensor by tensor (names and shapes from `global`): each value g + d is
 * computed in float64 and rounded once to float32. `step` must have `global`'s tensors in order.
 * @returns new float32 tensors; neither input is modified.
 */
export function applyDelta(global: readonly NamedTensor[], step: readonly NamedTensor[]): NamedTensor[] {
  return global.map((g, t) => {
    const out = new Float32Array(g.data.length);
    const d = step[t].data;
    for (let i = 0; i < out.length; i++) out[i] = g.data[i] + d[i];
    return { name: g.name, shape: [...g.shape], data: out };
  });
}
