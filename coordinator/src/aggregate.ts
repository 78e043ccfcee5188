import type { NamedTensor } from '@fedmq/protocol';

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
   * Adds `weight · delta`. `delta` must hold the same tensors in the same order as `like`
   * (the coordinator validates updates before folding them).
   * @throws RangeError when `weight` is not a positive finite number or a tensor's size differs.
   */
  add(delta: readonly { data: ArrayLike<number> }[], weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight must be positive, got ${weight}`);
    if (delta.length !== this.sums.length) throw new RangeError(`expected ${this.sums.length} tensors, got ${delta.length}`);
    for (let t = 0; t < this.sums.length; t++) {
      const s = this.sums[t];
      const d = delta[t].data;
      if (d.length !== s.length) throw new RangeError(`tensor ${this.names[t]}: expected ${s.length} values, got ${d.length}`);
      for (let i = 0; i < s.length; i++) s[i] += weight * d[i];
    }
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
