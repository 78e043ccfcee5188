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
