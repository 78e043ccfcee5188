import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from '../random.ts';
import { MAX_SHARES } from './shamir.ts';

/**
 * The communication graph of SecAgg+ (Bell, Bonawitz, Gascón, Lepoint, Raykova 2020, "Secure
 * Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS, §3: a random k-regular
 * Harary graph) or of the original SecAgg (Bonawitz et al. 2017: the complete graph).
 */

/** `harary`: each node masks with k random neighbours (SecAgg+); `complete`: with all others (SecAgg). */
export type SecAggGraphKind = 'harary' | 'complete';

/** Most neighbours a node can have: its two secrets are Shamir-shared among them (at most 255 shares). */
export const MAX_NEIGHBOURS = MAX_SHARES - 1;

/**
 * The random Harary graph H(n, k) of Bell et al. 2020, §3: the nodes in a uniformly random order
 * on a ring (Fisher–Yates with rejection sampling from `random`), each linked to the k/2 nodes on
 * either side. k is even and < n; k ≥ n − 1 gives the complete graph.
 * @returns every node's neighbours, sorted, the node itself excluded; symmetric
 * @throws FedmqError FEDMQ_SECAGG_RANGE on an odd k < n − 1, k < 2, repeated ids, or a degree above {@link MAX_NEIGHBOURS}
 */
export function neighbourGraph(ids: readonly string[], k: number, kind: SecAggGraphKind = 'harary', random: RandomSource = cryptoRandom()): Map<string, string[]> {
  const n = ids.length;
  if (new Set(ids).size !== n) throw new FedmqError(ErrorCodes.SECAGG_RANGE, 'the cohort repeats a node id');
  const out = new Map<string, string[]>();
  if (kind === 'complete' || k >= n - 1) {
    if (n - 1 > MAX_NEIGHBOURS) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `the complete graph over ${n} nodes gives each ${n - 1} neighbours; at most ${MAX_NEIGHBOURS} (Shamir over GF(2^8)): use the SecAgg+ graph`);
    for (const id of ids) out.set(id, ids.filter((x) => x !== id).sort());
    return out;
  }
  if (!(Number.isInteger(k) && k >= 2 && k % 2 === 0)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `SecAgg+ needs an even number of neighbours k ≥ 2, got ${k}`);
  if (k > MAX_NEIGHBOURS) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `at most ${MAX_NEIGHBOURS} neighbours, got ${k}`);
  const order = [...ids];
  for (let i = n - 1; i > 0; i--) {
    const j = random.nextInt(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (let i = 0; i < n; i++) {
    const nb: string[] = [];
    for (let d = 1; d <= k / 2; d++) nb.push(order[(i + d) % n], order[(i - d + n) % n]);
    out.set(order[i], nb.sort());
  }
  return out;
}

/**
 * A node's Shamir threshold t_k among its k neighbours: the least integer above θ·k, and at least 2.
 * With θ ≥ 1/2 it exceeds k/2, so no two disjoint groups of its neighbours can both reach it: the
 * coordinator cannot get a node's self-mask and its mask key from honest nodes at once
 * (Bonawitz et al. 2017, §4, the argument for t > n/2).
 */
export function nodeThreshold(k: number, fraction: number): number {
  return Math.max(2, Math.floor(fraction * k) + 1);
}

/** P[Bin(k, p) < t], summed exactly in log space. */
export function binomialCdfBelow(k: number, p: number, t: number): number {
  let s = 0;
  let logC = 0; // log C(k, 0)
  for (let i = 0; i < t && i <= k; i++) {
    if (i > 0) logC += Math.log(k - i + 1) - Math.log(i);
    s += Math.exp(logC + i * Math.log(p) + (k - i) * Math.log1p(-p));
  }
  return Math.min(1, s);
}

/**
 * The default number of neighbours for a cohort of n: the smallest even k such that, with each
 * node dropping independently with probability `dropout`, the chance that some node keeps fewer
 * than its threshold t_k of surviving neighbours is at most `failure` (union bound:
 * n · P[Bin(k, 1 − dropout) < t_k] ≤ failure). This is the correctness half of Bell et al.'s
 * choice of k (their analysis also asks for security against colluding nodes, which the
 * threshold fraction sets). Capped at n − 1 (the complete graph) and {@link MAX_NEIGHBOURS}.
 */
export function defaultNeighbours(n: number, fraction: number, dropout = 1 / 3, failure = 2 ** -20): number {
  const cap = Math.min(n - 1, MAX_NEIGHBOURS);
  for (let k = 2; k < cap; k += 2) {
    if (n * binomialCdfBelow(k, 1 - dropout, nodeThreshold(k, fraction)) <= failure) return k;
  }
  return cap;
}
