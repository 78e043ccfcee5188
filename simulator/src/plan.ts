import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { partition, type Dataset, type PartitionSpec } from '@fedmq/ml';

/** One simulated node: its id and the indices of its examples in the shared training set. */
export interface NodePlan {
  nodeId: string;
  indices: Int32Array;
}

/**
 * Splits `train` over `numNodes` nodes (`node-000` …) with the partitioner; `groups` supplies
 * the natural split (one group id per example). Deterministic for a seed.
 * @throws FedmqError FEDMQ_BAD_CONFIG when a natural split has no groups or any node ends up empty.
 */
export function planNodes(train: Dataset, numNodes: number, spec: PartitionSpec, seed: number, groups?: ArrayLike<number>): NodePlan[] {
  if (!(Number.isInteger(numNodes) && numNodes >= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `nodes must be an integer ≥ 1, got ${numNodes}`);
  let s = spec;
  if (s.kind === 'natural') {
    if (!groups) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'this dataset has no natural split');
    s = { kind: 'natural', groups };
  }
  const parts = partition(train.y, numNodes, s, seed);
  const width = String(numNodes - 1).length < 3 ? 3 : String(numNodes - 1).length;
  return parts.map((idx, i) => {
    if (idx.length === 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `node ${i} would get no examples`);
    return { nodeId: `node-${String(i).padStart(width, '0')}`, indices: Int32Array.from(idx) };
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
