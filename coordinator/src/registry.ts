import type { NodeStatus } from '@fedmq/protocol';

/**
 * The coordinator's view of the fleet, built from the nodes' retained status messages and
 * their Last Wills (state `offline`).
 */
export class NodeRegistry {
  private readonly nodes = new Map<string, NodeStatus>();

  /** Records a node's latest status. */
  update(status: NodeStatus): void {
    this.nodes.set(status.nodeId, status);
  }

  /** Forgets a node (its retained status was cleared). */
  remove(nodeId: string): void {
    this.nodes.delete(nodeId);
  }

  /** Ids of nodes whose last status is not `offline`, sorted. */
  online(): string[] {
    return [...this.nodes.values()].filter((n) => n.state !== 'offline').map((n) => n.nodeId).sort();
  }

  /** A node's latest status. */
  get(nodeId: string): NodeStatus | undefined {
    return this.nodes.get(nodeId);
  }

  /** Every node's latest status. */
  all(): NodeStatus[] {
    return [...this.nodes.values()];
  }
}
