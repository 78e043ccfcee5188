/**
 * Splitting a dataset across federated nodes: IID, Dirichlet label skew (Hsu et al. 2019,
 * arXiv:1909.06335), and natural splits by a group id (device, user, mote).
 */
import { FedmqMlError } from './errors.ts';
import { createRng, permutation, sampleDirichlet, shuffleInPlace, type Rng } from './rng.ts';

/**
 * How to split examples over nodes.
 * - `iid`: a seeded random permutation cut into near-equal contiguous parts.
 * - `dirichlet`: label skew with concentration `alpha` > 0 (small alpha → each node sees few classes).
 * - `natural`: one node per distinct group id (e.g. device id); `groups[i]` is example i's group.
 */
export type PartitionSpec =
  | { kind: 'iid' }
  | { kind: 'dirichlet'; alpha: number }
  | { kind: 'natural'; groups: ArrayLike<number> };

function badPartition(msg: string): never {
  throw new FedmqMlError('ML_BAD_PARTITION', msg);
}

/**
 * Parses a partition spec string: `'iid'`, `'dirichlet:ALPHA'` (ALPHA a positive number, e.g.
 * `'dirichlet:0.5'`), or `'natural'`. For `'natural'` the result has `groups: []`: the caller
 * must fill in the per-example group ids from the dataset before calling {@link partition}.
 * Case-insensitive; surrounding whitespace ignored.
 * @throws FedmqMlError `ML_BAD_PARTITION` on any other string or a non-positive/non-finite alpha.
 */
export function parsePartition(s: string): PartitionSpec {
  const t = s.trim().toLowerCase();
  if (t === 'iid') return { kind: 'iid' };
  if (t === 'natural') return { kind: 'natural', groups: [] };
  const m = /^dirichlet:(.+)$/.exec(t);
  if (m) {
    const alpha = Number(m[1]);
    if (!Number.isFinite(alpha) || alpha <= 0) badPartition(`dirichlet alpha must be a positive number, got '${m[1]}'`);
    return { kind: 'dirichlet', alpha };
  }
  return badPartition(`unknown partition '${s}' (expected 'iid', 'dirichlet:ALPHA' or 'natural')`);
}

/** Minimum examples per node the Dirichlet split aims for before falling back (see {@link partition}). */
export const DIRICHLET_MIN_EXAMPLES = 10;
/** Redraws of the Dirichlet proportions before the fallback kicks in. */
export const DIRICHLET_MAX_DRAWS = 100;

function dirichletOnce(byClass: number[][], numNodes: number, alpha: number, rng: Rng): number[][] {
  const out: number[][] = Array.from({ length: numNodes }, () => []);
  for (const idx of byClass) {
    if (idx.length === 0) continue;
    const shuffled = shuffleInPlace(idx.slice(), rng);
    const p = sampleDirichlet(rng, alpha, numNodes);
    let cum = 0;
    let start = 0;
    for (let k = 0; k < numNodes; k++) {
      cum += p[k];
      const end = k === numNodes - 1 ? shuffled.length : Math.min(shuffled.length, Math.round(cum * shuffled.length));
      for (let i = start; i < end; i++) out[k].push(shuffled[i]);
      start = Math.max(start, end);
    }
  }
  return out;
}

/**
 * Splits example indices `0..labels.length-1` over `numNodes` nodes.
 *
 * Guarantees: every index appears in exactly one node; the result is a pure function of
 * (labels, numNodes, spec, seed); no node is empty. Each node's index list is sorted ascending.
 *
 * - `iid`: seeded permutation, node k gets the k-th of `numNodes` near-equal slices.
 * - `dirichlet` (Hsu, Qi & Brown 2019, arXiv:1909.06335, §3): for each class c, draw
 *   q_c ~ Dir(alpha · 1_numNodes) and cut class c's shuffled indices into consecutive pieces of
 *   sizes ≈ q_c · n_c (rounded cumulative cut points). Empty-node guarantee: if some node gets
 *   fewer than `min(DIRICHLET_MIN_EXAMPLES, floor(N / numNodes))` examples, all proportions are
 *   redrawn (as in NIID-Bench, Li et al. 2021, which requires ≥ 10 per party), up to
 *   `DIRICHLET_MAX_DRAWS` times; if still short (only for extreme alpha / many nodes), each empty
 *   node takes one random example from the currently largest node. The redraw loop continues
 *   the same seeded stream, so it stays deterministic.
 * - `natural`: one node per distinct group id, nodes ordered by ascending group id; `numNodes`
 *   must equal the number of distinct groups (use 0 to accept whatever the groups give).
 *
 * @param labels class label per example (integers).
 * @param numNodes number of nodes (≥ 1).
 * @param seed PRNG seed (see {@link createRng}).
 * @returns `numNodes` arrays of example indices.
 * @throws FedmqMlError `ML_BAD_PARTITION` if numNodes < 1 or > number of examples, alpha ≤ 0,
 *   natural groups missing/of wrong length, or the group count differs from numNodes.
 */
export function partition(labels: ArrayLike<number>, numNodes: number, spec: PartitionSpec, seed: number): number[][] {
  const n = labels.length;
  if (spec.kind === 'natural') return naturalSplit(n, numNodes, spec.groups);
  if (!Number.isInteger(numNodes) || numNodes < 1) badPartition(`numNodes must be a positive integer, got ${numNodes}`);
  if (numNodes > n) badPartition(`cannot split ${n} examples over ${numNodes} nodes without an empty node`);
  const rng = createRng(seed);
  let parts: number[][];
  if (spec.kind === 'iid') {
    const perm = permutation(n, rng);
    parts = [];
    for (let k = 0; k < numNodes; k++) {
      const a = Math.floor((k * n) / numNodes);
      const b = Math.floor(((k + 1) * n) / numNodes);
      parts.push(Array.from(perm.subarray(a, b)));
    }
  } else if (spec.kind === 'dirichlet') {
    if (!(spec.alpha > 0) || !Number.isFinite(spec.alpha)) badPartition(`dirichlet alpha must be > 0, got ${spec.alpha}`);
    const classes = new Map<number, number[]>();
    for (let i = 0; i < n; i++) {
      const c = labels[i];
      let list = classes.get(c);
      if (!list) classes.set(c, (list = []));
      list.push(i);
    }
    const byClass = [...classes.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
    const minSize = Math.min(DIRICHLET_MIN_EXAMPLES, Math.floor(n / numNodes));
    parts = dirichletOnce(byClass, numNodes, spec.alpha, rng);
    for (let draw = 1; draw < DIRICHLET_MAX_DRAWS && parts.some((p) => p.length < minSize); draw++) {
      parts = dirichletOnce(byClass, numNodes, spec.alpha, rng);
    }
    for (const p of parts) {
      if (p.length > 0) continue;
      let largest = parts[0];
      for (const q of parts) if (q.length > largest.length) largest = q;
      const j = Math.floor(rng() * largest.length);
      p.push(largest[j]);
      largest.splice(j, 1);
    }
  } else {
    return badPartition(`unknown partition kind '${(spec as { kind: string }).kind}'`);
  }
  for (const p of parts) p.sort((a, b) => a - b);
  return parts;
}

function naturalSplit(n: number, numNodes: number, groups: ArrayLike<number>): number[][] {
  if (groups.length !== n || n === 0) {
    badPartition(`natural partition needs one group id per example (${n}), got ${groups.length}`);
  }
  const byGroup = new Map<number, number[]>();
  for (let i = 0; i < n; i++) {
    const g = groups[i];
    let list = byGroup.get(g);
    if (!list) byGroup.set(g, (list = []));
    list.push(i);
  }
  if (numNodes !== 0 && numNodes !== byGroup.size) {
    badPartition(`natural partition has ${byGroup.size} groups but ${numNodes} nodes were requested`);
  }
  return [...byGroup.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
}
