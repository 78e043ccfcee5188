import type { NamedTensor } from '@fedmq/protocol';
import { addable } from '../aggregate.ts';
import type { Aggregator, FitFailure, FitResult } from '../strategy.ts';
import { SgdOptimizer } from './sgd.ts';

/**
 * Test fixtures for the robust aggregators (not used by library code): honest vectors near a
 * centre and adversarial vectors chosen against them.
 */

/** The ways {@link maliciousVectors} picks the f malicious vectors. */
export const ATTACKS = ['huge-random-sign', 'huge-same-sign', 'against-mean', 'outlier-copies', 'just-outside', 'little-is-enough'] as const;
/** One of {@link ATTACKS}. */
export type Attack = (typeof ATTACKS)[number];

/** A uniform integer in [lo, hi]. */
export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/**
 * n honest float32 vectors of length d: a centre uniform in [−5, 5]^d plus per-coordinate noise
 * uniform in [−spread, spread], spread uniform in [0.1, 2].
 */
export function honestVectors(rng: () => number, n: number, d: number): Float32Array[] {
  const centre = Array.from({ length: d }, () => 10 * rng() - 5);
  const spread = 0.1 + 1.9 * rng();
  return Array.from({ length: n }, () => Float32Array.from(centre, (c) => c + spread * (2 * rng() - 1)));
}

/**
 * f malicious float32 vectors of the honest vectors' length, chosen by `attack`:
 * ±1e9 per coordinate with random signs; +1e9 or −1e9 everywhere; copies of −1000 × the honest
 * mean (pulling against it, ±1e3 when the mean is ~0); f copies of one outlier 100…1000 away from
 * the honest mean in a random direction; copies of (honest max + 0.01) per coordinate (just
 * outside the range); copies of mean − 1.5 · std per coordinate ("a little is enough", Baruch
 * et al. 2019).
 */
export function maliciousVectors(rng: () => number, honest: readonly Float32Array[], f: number, attack: Attack): Float32Array[] {
  const d = honest[0].length;
  const mean = new Float64Array(d);
  for (const h of honest) for (let i = 0; i < d; i++) mean[i] += h[i] / honest.length;
  const one = (): Float32Array => {
    switch (attack) {
      case 'huge-random-sign':
        return Float32Array.from({ length: d }, () => (rng() < 0.5 ? -1e9 : 1e9));
      case 'huge-same-sign':
        return new Float32Array(d).fill(rng() < 0.5 ? -1e9 : 1e9);
      case 'against-mean':
        return Float32Array.from(mean, (m) => (Math.abs(m) < 1e-3 ? 1e3 : -1000 * m));
      case 'outlier-copies': {
        const dir = Array.from({ length: d }, () => 2 * rng() - 1);
        const len = Math.hypot(...dir) || 1;
        const r = 100 + 900 * rng();
        return Float32Array.from(mean, (m, i) => m + (r * dir[i]) / len);
      }
      case 'just-outside':
        return Float32Array.from(mean, (_m, i) => Math.max(...honest.map((h) => h[i])) + 0.01);
      case 'little-is-enough':
        return Float32Array.from(mean, (m, i) => {
          const sd = Math.sqrt(honest.reduce((s, h) => s + (h[i] - m) ** 2, 0) / honest.length);
          return m - 1.5 * sd;
        });
    }
  };
  const first = one();
  // Identical copies for the coordinated attacks, fresh draws for the random-sign one.
  return Array.from({ length: f }, () => (attack === 'huge-random-sign' ? one() : Float32Array.from(first)));
}

/** Returns `items` shuffled (Fisher–Yates) with their original indices. */
export function shuffled<T>(rng: () => number, items: readonly T[]): { item: T; index: number }[] {
  const out = items.map((item, index) => ({ item, index }));
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** A one-tensor model of d zeros. */
export function zeroModel(d: number): NamedTensor[] {
  return [{ name: 'w', shape: [d], data: new Float32Array(d) }];
}

/** A {@link FitResult} carrying `v` as a one-tensor delta (or split over the tensors of `like`). */
export function fitResult(nodeId: string, v: Float32Array, numExamples = 1, loss = 0, like?: readonly NamedTensor[]): FitResult {
  if (!like) return { nodeId, numExamples, loss, delta: [addable({ data: v })] };
  let off = 0;
  const delta = like.map((t) => {
    const part = v.subarray(off, off + t.data.length);
    off += t.data.length;
    return addable({ data: part });
  });
  return { nodeId, numExamples, loss, delta };
}

/** Euclidean distance in float64. */
export function dist(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

/**
 * One round of `aggregator` over `results` from `global`, applied by server SGD with η = 1 (the
 * robust presets: `median` = median + sgd …): the next global model, or `null` when the
 * aggregator keeps the model. Exposes the round's aggregate through `onAggregate` for bookkeeping checks.
 */
export function nextModel(
  aggregator: Aggregator, global: readonly NamedTensor[], results: readonly FitResult[],
  opts: { round?: number; failures?: readonly FitFailure[]; onAggregate?: (agg: ReturnType<Aggregator['begin']>) => void } = {},
): NamedTensor[] | null {
  const round = opts.round ?? 1;
  const agg = aggregator.begin(round, global);
  for (const r of results) agg.add(r);
  opts.onAggregate?.(agg);
  const step = aggregator.finish(round, global, agg, opts.failures ?? []);
  return step === null ? null : new SgdOptimizer().step(global, step);
}
