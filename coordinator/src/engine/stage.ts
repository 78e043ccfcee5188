import type { EvaluateResult, NodeStage, SecAggAnswer, StageName, UpdateMessage } from '@fedmq/protocol';
import type { FitFailure } from '../strategy.ts';
import type { RoundMachine } from './machine.ts';

/** What a node status says of a cohort node (see {@link Stage.onPresence}). */
export type Presence = 'offline' | 'back' | 'gave-up';

/** An open task: sent to one node, not yet closed (its stage is open, or in async mode, in flight). */
export interface OpenTask {
  taskId: number;
  nodeId: string;
  stage: NodeStage;
  round: number;
  /** Global model version the task names. */
  version: number;
  /** When it was sent, ms (machine clock). */
  sentAt: number;
  deadline: number;
  answered: boolean;
  /** The published task payload, for republishing after a reconnect. */
  payload: Buffer;
}

/** A decoded, checked answer handed to a stage. */
export type Answer =
  | { kind: 'update'; task: OpenTask; update: UpdateMessage; wireBytes: number }
  | { kind: 'evaluation'; task: OpenTask; result: EvaluateResult; wireBytes: number }
  /** A secure-aggregation stage answer (docs/protocol.md §12.3). */
  | { kind: 'secagg'; task: OpenTask; answer: SecAggAnswer; wireBytes: number };

/**
 * One stage of a round (docs/architecture.md, "Stages"): its cohort and deadline are set in
 * `enter`, its message schema is the answer kind it takes, its completion rule is `isComplete`.
 * Today's synchronous round is waiting → select → fit → aggregate → evaluate ({@link SYNC_ROUND});
 * with secure aggregation (engine/secagg.ts) advertise-keys, share-keys, fit as the masked input, unmask and the unmasking aggregate.
 */
export interface Stage<R> {
  readonly name: StageName;
  /** Starts the stage: send tasks, set a deadline with `m.deadline(...)`, or do the work at once. */
  enter(m: RoundMachine, r: R): void;
  /** The answer kind the stage accepts (others get FEDMQ_STALE_UPDATE). */
  readonly accepts?: Answer['kind'];
  /** Takes one checked answer to one of this stage's tasks; throws a FedmqError to reject it. */
  onAnswer?(m: RoundMachine, r: R, answer: Answer): void;
  /**
   * A node of the stage's cohort went `offline`, came `back` (still working on its task after a
   * lost link), or `gave-up` its task (idle after it without an answer: its training failed).
   */
  onPresence?(m: RoundMachine, r: R, nodeId: string, presence: Presence): void;
  /** A `compute` effect of this stage finished with `value`, or failed with `error`. */
  onComputed?(m: RoundMachine, r: R, id: string, value: unknown, error: unknown): void;
  /** The central evaluation finished. */
  onEvaluated?(m: RoundMachine, r: R, result: { version: number; loss: number; accuracy: number }): void;
  /** Whether the stage is done (checked after every event). */
  isComplete(m: RoundMachine, r: R): boolean;
  /** Closes the stage (complete, deadline, or stop): bookkeeping of the missing. */
  exit(m: RoundMachine, r: R): void;
}

/** `x`, or null when it is not finite (NaN losses of empty rounds). */
export function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

/** Quantile by nearest rank of ascending `sorted` values (q in [0, 1]). */
export function nearestRank(sorted: readonly number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** The fit failures handed to an aggregator: missing nodes (`timeout`), nodes gone offline, nodes that gave their task up (`failed`). */
export function failureList(missing: readonly string[], dropped: Iterable<string>, gaveUp: Iterable<string> = []): FitFailure[] {
  return [
    ...missing.map((nodeId) => ({ nodeId, reason: 'timeout' })), ...[...dropped].map((nodeId) => ({ nodeId, reason: 'offline' })),
    ...[...gaveUp].map((nodeId) => ({ nodeId, reason: 'failed' })),
  ];
}
