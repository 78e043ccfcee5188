/**
 * Seeded pseudo-random numbers for everything in fedmq that must be reproducible: partitions,
 * shuffles, node sampling. Pure JS, no tensors.
 */
import { createRng as protocolCreateRng } from '@fedmq/protocol';

/** A PRNG returning uniform floats in [0, 1). */
export type Rng = () => number;

/** Seeded PRNG of the run (mulberry32 on a mixed seed): defined in @fedmq/protocol, where node selection and the nodes' splits need it. */
export const createRng: (seed: number) => Rng = protocolCreateRng;

/** Uniform integer in [0, n). `n` must be a positive integer. */
export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

/** Standard normal sample N(0, 1) by the Box–Muller transform. */
export function sampleNormal(rng: Rng): number {
  let u = 0;
  while (u === 0) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/**
 * Gamma(shape, 1) sample by Marsaglia & Tsang 2000 ("A simple method for generating gamma
 * variables", ACM TOMS 26(3)); for `shape < 1` uses the boost `G(a) = G(a+1) · U^(1/a)`.
 * @throws RangeError if `shape` is not > 0.
 */
export function sampleGamma(rng: Rng, shape: number): number {
  if (!(shape > 0)) throw new RangeError(`gamma shape must be > 0, got ${shape}`);
  if (shape < 1) {
    let u = 0;
    while (u === 0) u = rng();
    return sampleGamma(rng, shape + 1) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = sampleNormal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/**
 * Symmetric Dirichlet(alpha, …, alpha) sample of dimension `k`: k non-negative numbers summing
 * to 1 (normalised Gamma(alpha) draws). If every draw underflows to 0 (tiny alpha), puts all mass
 * on one uniformly chosen coordinate, which is the limit of the distribution.
 * @throws RangeError if `alpha` is not > 0 or `k` < 1.
 */
export function sampleDirichlet(rng: Rng, alpha: number, k: number): number[] {
  if (!(k >= 1)) throw new RangeError(`dirichlet dimension must be >= 1, got ${k}`);
  const g = new Array<number>(k);
  let sum = 0;
  for (let i = 0; i < k; i++) {
    g[i] = sampleGamma(rng, alpha);
    sum += g[i];
  }
  if (!(sum > 0)) {
    g.fill(0);
    g[randInt(rng, k)] = 1;
    return g;
  }
  for (let i = 0; i < k; i++) g[i] /= sum;
  return g;
}

/** Fisher–Yates shuffle in place; returns the same array. */
export function shuffleInPlace<T extends { length: number; [i: number]: unknown }>(arr: T, rng: Rng): T {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = randInt(rng, i + 1);
    const tmp = arr[i];
    arr[i] = arr[j];
    arr[j] = tmp;
  }
  return arr;
}

/** A random permutation of 0..n-1 as an Int32Array. */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return shuffleInPlace(p, rng);
}
