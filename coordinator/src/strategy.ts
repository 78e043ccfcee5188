import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import type { Addable, WeightedDeltaSum } from './aggregate.ts';

/** One node's accepted update, as handed to a strategy. */
export interface FitResult {
  nodeId: string;
  /** n_k, the node's local examples. */
  numExamples: number;
  /** delta = trained − global, one validated tensor per global tensor, added without a decoded copy. */
  delta: readonly Addable[];
  /** Mean local training loss. */
  loss: number;
}

/** What went wrong with a selected node or a rejected update, by error code (or `timeout`). */
export interface FitFailure {
  nodeId?: string;
  reason: string;
}

/**
 * An aggregation strategy, in the shape of Flower's `Strategy` (flwr/server/strategy/strategy.py)
 * in camelCase. The round loop lives in the coordinator; a strategy only decides whom to train,
 * how to fold updates and what the next global model is. One file per algorithm.
 */
export interface Strategy {
  /** Name used by `--strategy`. */
  readonly name: string;
  /**
   * Picks the nodes of a round and their local training configuration.
   * @param available ids of the nodes online now, sorted.
   * @param rng uniform [0,1) generator of the run (seeded, so selections are reproducible).
   */
  configureFit(round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig };
  /** A fresh accumulator that updates of `round` are folded into as they arrive. */
  beginRound(round: number, global: readonly NamedTensor[]): RoundAggregate;
  /**
   * The next global model from a closed round, or `null` to keep the current one
   * (for example when no update was accepted).
   */
  aggregateFit(round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, failures: readonly FitFailure[]): NamedTensor[] | null;
  /**
   * The strategy's state across rounds (server momentum, optimizer moments …), part of the
   * checkpoint: a coordinator that resumes from a checkpoint calls {@link setState} with it on a
   * freshly built strategy, and the next round is the same step as without the restart.
   * Absent on stateless strategies (FedAvg). The result is a copy: later rounds do not change it.
   */
  getState?(): StrategyState;
  /**
   * Restores a state returned by {@link getState} (possibly after `JSON.stringify` / `JSON.parse`).
   * @throws TypeError when `state` is not a state of this strategy (wrong `strategy` name or shape).
   */
  setState?(state: StrategyState): void;
}

/** A value that survives `JSON.stringify` / `JSON.parse` unchanged (finite numbers only). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A strategy's state as a JSON-serialisable object, part of the checkpoint. Typed arrays are
 * stored as plain number arrays (float32 and float64 values both round-trip exactly through JSON),
 * each strategy documenting its own layout; by convention the object has a `strategy` field
 * holding the strategy's {@link Strategy.name}, checked by `setState`.
 */
export type StrategyState = { [key: string]: JsonValue };

/** Per-round fold state of a strategy. */
export interface RoundAggregate {
  /** Folds one accepted update in. */
  add(result: FitResult): void;
  /** Updates folded in so far. */
  readonly count: number;
  /** Σ n_k so far. */
  readonly totalExamples: number;
  /** Σ n_k · loss_k / Σ n_k (NaN when empty). */
  readonly trainLoss: number;
  /** The running sum, for strategies built on the weighted mean. */
  readonly sum: WeightedDeltaSum;
}
