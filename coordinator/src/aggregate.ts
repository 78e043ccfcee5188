import type { NamedTensor, PreparedTensor } from '@fedmq/protocol';

/** Something that adds `weight ×` its values into a running sum: a codec's prepared tensor, or a plain tensor via {@link addable}. */
export type Addable = Pick<PreparedTensor, 'addTo'>;

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
 * Sums are kept in float64 so that the order updates arrive in does not change the mean
 * beyond float32 rounding of the result.
 */
export class WeightedDeltaSum {
  private readonly sums: Float64Array[];
  private readonly names: string[];
  private readonly shapes: number[][];
  private weight = 0;
  private n = 0;

  /** @param like the global model's tensors; only names and sizes are used. */
  constructor(like: readonly NamedTensor[]) {
    this.names = like.map((t) => t.name);
    this.shapes = like.map((t) => [...t.shape]);
    this.sums = like.map((t) => new Float64Array(t.data.length));
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
   * Adds `weight · delta`, each tensor decoded straight into the float64 sums. `delta` must hold
   * the same tensors in the same order as `like`, already validated (the coordinator checks an
   * update completely before folding it).
   * @throws RangeError when `weight` is not a positive finite number or a tensor's size differs.
   */
  add(delta: readonly Addable[], weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight must be positive, got ${weight}`);
    if (delta.length !== this.sums.length) throw new RangeError(`expected ${this.sums.length} tensors, got ${delta.length}`);
    for (let t = 0; t < this.sums.length; t++) delta[t].addTo(this.sums[t], weight);
    this.weight += weight;
    this.n++;
  }

  /**
   * Σ n_k Δ_k / Σ n_k as float32 tensors named like the model.
   * @throws RangeError when nothing was added.
   */
  mean(): NamedTensor[] {
    if (this.n === 0) throw new RangeError('no delta was added');
    return this.sums.map((s, t) => {
      const out = new Float32Array(s.length);
      for (let i = 0; i < s.length; i++) out[i] = s[i] / this.weight;
      return { name: this.names[t], shape: [...this.shapes[t]], data: out };
    });
  }
}

/** `global + step`, tensor by tensor (names and shapes from `global`). */
export function applyDelta(global: readonly NamedTensor[], step: readonly NamedTensor[]): NamedTensor[] {
  return global.map((g, t) => {
    const out = new Float32Array(g.data.length);
    const d = step[t].data;
    for (let i = 0; i < out.length; i++) out[i] = g.data[i] + d[i];
    return { name: g.name, shape: [...g.shape], data: out };
  });
}
