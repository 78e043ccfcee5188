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

  /**
   * Ids of the online nodes that can train `model`, sorted: those whose last status does not say
   * their data does not fit it (NodeStatus `dataMismatch` naming `model`). What the round engine
   * waits for and selects from.
   */
  eligible(model: string): string[] {
    return [...this.nodes.values()].filter((n) => n.state !== 'offline' && n.dataMismatch?.model !== model).map((n) => n.nodeId).sort();
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
