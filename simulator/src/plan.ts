import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { partition, type Dataset, type PartitionSpec } from '@fedmq/ml';

/** One simulated node: its id and the indices of its examples in the shared training set. */
export interface NodePlan {
  nodeId: string;
  indices: Int32Array;
}

/**
 * Splits `train` over `numNodes` nodes (`node-000` …) with the partitioner. For a natural split
 * `groups` gives each example's group id, there is one node per group (`numNodes` 0 means "as
 * many as there are groups") and the node of group g is `${groupPrefix}-${g}`. Deterministic for a seed.
 * @throws FedmqError FEDMQ_BAD_CONFIG when a natural split has no groups or any node ends up empty;
 *   FedmqMlError ML_BAD_PARTITION from the partitioner.
 */
export function planNodes(train: Dataset, numNodes: number, spec: PartitionSpec, seed: number, groups?: ArrayLike<number>, groupPrefix = 'group'): NodePlan[] {
  const natural = spec.kind === 'natural';
  if (!(Number.isInteger(numNodes) && (numNodes >= 1 || (natural && numNodes === 0)))) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `nodes must be an integer ≥ 1, got ${numNodes}`);
  }
  if (natural && !groups) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'this dataset has no natural split');
  const parts = partition(train.y, numNodes, natural ? { kind: 'natural', groups: groups! } : spec, seed);
  const ids = natural ? [...new Set(Array.from(groups!))].sort((a, b) => a - b) : [];
  const width = Math.max(3, String(parts.length - 1).length);
  return parts.map((idx, i) => {
    if (idx.length === 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `node ${i} would get no examples`);
    const nodeId = natural ? `${groupPrefix}-${ids[i]}` : `node-${String(i).padStart(width, '0')}`;
    return { nodeId, indices: Int32Array.from(idx) };
  });
}

/**
 * Assigns nodes to `workers` threads, largest first to the least loaded (LPT), so the
 * threads' training loads (Σ numExamples) are balanced. Returns node lists per worker.
 */
export function balance(nodes: readonly NodePlan[], workers: number): NodePlan[][] {
  const bins: { load: number; nodes: NodePlan[] }[] = Array.from({ length: Math.max(1, Math.min(workers, nodes.length)) }, () => ({ load: 0, nodes: [] }));
  for (const n of [...nodes].sort((a, b) => b.indices.length - a.indices.length || a.nodeId.localeCompare(b.nodeId))) {
    const bin = bins.reduce((m, b) => (b.load < m.load ? b : m));
    bin.nodes.push(n);
    bin.load += n.indices.length;
  }
  return bins.map((b) => b.nodes.sort((x, y) => x.nodeId.localeCompare(y.nodeId)));
}

/** Shard `index` (0-based) of `count` of a fleet: `fedmq simulate --shard I/N` runs shard I − 1 of N. */
export interface Shard {
  index: number;
  count: number;
}

/**
 * The nodes of one shard of a planned fleet: the contiguous block ⌊index·N/count⌋ …
 * ⌊(index+1)·N/count⌋ − 1 of the N nodes (in plan order). The shards of a fleet are disjoint and
 * together are the whole fleet, so N processes on N machines run the unsharded run's nodes
 * with the unsharded run's data.
 * @throws FedmqError FEDMQ_BAD_CONFIG when count < 1, index ∉ [0, count), or a shard would be empty (count > N).
 */
export function shardOf<T>(fleet: readonly T[], { index, count }: Shard): T[] {
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `shard must be I/N with 1 ≤ I ≤ N, got ${index + 1}/${count}`);
  }
  if (count > fleet.length) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${count} shards of ${fleet.length} nodes: a shard would have no node`);
  return fleet.slice(Math.floor((index * fleet.length) / count), Math.floor(((index + 1) * fleet.length) / count));
}

/**
 * Parses `--shard I/N` (1-based I, as a user counts machines) into a {@link Shard}.
 * @throws FedmqError FEDMQ_BAD_CONFIG unless `I/N` with integers 1 ≤ I ≤ N.
 */
export function parseShard(spec: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  const i = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || i < 1 || n < 1 || i > n) throw new FedmqError(ErrorCodes.BAD_CONFIG, `shard must be I/N with 1 ≤ I ≤ N (e.g. 2/3), got ${JSON.stringify(spec)}`);
  return { index: i - 1, count: n };
}
