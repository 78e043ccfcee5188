import type { Selector } from '../strategy.ts';

/** Options of {@link FedAvgSelector}, in Flower's naming. */
export interface FedAvgSelectorOptions {
  /** Fraction C of the available nodes sampled each round, in (0, 1]. */
  fraction: number;
  /** Minimum nodes sampled per round (when that many are available), integer ≥ 1. */
  minFitNodes: number;
}

/**
 * FedAvg's client sampling (McMahan et al. 2017, "Communication-Efficient Learning of Deep
 * Networks from Decentralized Data", arXiv:1602.05629, Algorithm 1: "m ← max(C·K, 1); S_t ←
 * random set of m clients"): of the K available nodes, k = min(K, max(minFitNodes, ⌈C·K⌉))
 * distinct ones chosen uniformly with {@link sample} (k draws of the run's rng per round).
 */
export class FedAvgSelector implements Selector {
  readonly fraction: number;
  readonly minFitNodes: number;

  /** @throws RangeError when `fraction` is not in (0, 1] or `minFitNodes` is not an integer ≥ 1. */
  constructor(opts: FedAvgSelectorOptions) {
    if (!(opts.fraction > 0 && opts.fraction <= 1)) throw new RangeError(`fraction must be in (0, 1], got ${opts.fraction}`);
    if (!(Number.isInteger(opts.minFitNodes) && opts.minFitNodes >= 1)) throw new RangeError(`minFitNodes must be an integer ≥ 1, got ${opts.minFitNodes}`);
    this.fraction = opts.fraction;
    this.minFitNodes = opts.minFitNodes;
  }

  /** k = min(K, max(minFitNodes, ⌈C·K⌉)) distinct ids of `available` (all when fewer), in `available`'s order. */
  select(_round: number, available: readonly string[], rng: () => number): string[] {
    const k = Math.min(available.length, Math.max(this.minFitNodes, Math.ceil(this.fraction * available.length)));
    return sample(available, k, rng);
  }
}

/**
 * k distinct items of `items` chosen uniformly (partial Fisher–Yates: exactly k draws of `rng`,
 * in order), returned in `items` order.
 * @param k 0 ≤ k ≤ items.length.
 */
export function sample<T>(items: readonly T[], k: number, rng: () => number): T[] {
  const idx = items.map((_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k).sort((a, b) => a - b).map((i) => items[i]);
}
