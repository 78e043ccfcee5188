import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import type { Addable } from './aggregate.ts';

/**
 * A strategy is three parts and a list of fit-config contributors (docs/strategies.md):
 *
 * - a {@link Selector} picks the nodes of a round (FedAvg's uniform sample; Poisson sampling for DP);
 * - an {@link Aggregator} folds the round's accepted updates into one step (the numExamples-weighted
 *   mean delta, a robust rule, later a masked sum);
 * - a {@link ServerOptimizer} turns that step into the next global model (SGD, momentum, Adam, Yogi,
 *   Adagrad; Reddi et al. 2021 "Adaptive Federated Optimization", arXiv:2003.00295, Algorithm 2);
 * - {@link FitConfigContributor}s add to the local training configuration sent to nodes
 *   (FedProx's proximal term μ).
 *
 * The round engine owns the loop; a strategy only answers these questions. Every part is created
 * from a descriptor (name, zod parameter schema, CLI flags, create) in `strategies/`; the registry,
 * the CLI flags and the docs table are generated from the descriptors.
 */

/** One node's accepted update, as handed to an aggregator. */
export interface FitResult {
  nodeId: string;
  /** n_k, the node's local training examples. */
  numExamples: number;
  /** delta = trained − global, one validated tensor per global tensor, added without a decoded copy. */
  delta: readonly Addable[];
  /** Mean local training loss. */
  loss: number;
  /** Differential privacy with adaptive clipping: the node's bit b = 1[‖Δ‖ ≤ C] (Update `dp.unclipped`). */
  unclipped?: boolean;
}

/** A selected node that did not report, or a rejected update, by error code (or `timeout`, `offline`). */
export interface FitFailure {
  nodeId?: string;
  reason: string;
}

/**
 * One tensor of an aggregated step (the pseudo-gradient Δ_t of Reddi et al.): same name and shape
 * as the global tensor; float32 (the weighted mean, rounded) or float64 values (robust rules).
 */
export interface StepTensor {
  name: string;
  shape: number[];
  data: Float32Array | Float64Array;
}

/** Picks the fit cohort of a round. */
export interface Selector {
  /**
   * @param round the round, from 1.
   * @param available ids of the nodes online now, sorted ascending.
   * @param rng uniform [0, 1) generator of the run (seeded: selections are reproducible, and the
   *   number of draws is part of the checkpoint).
   * @returns distinct ids of `available`, sorted ascending.
   */
  select(round: number, available: readonly string[], rng: () => number): string[];
}

/** Per-round fold state of an aggregator. */
export interface RoundAggregate {
  /**
   * Folds one accepted update in.
   * @param scale factor applied to the delta's contribution (FedBuff's staleness weight s(τ) in
   *   async mode; 1 in synchronous rounds): the weighted mean becomes Σ n_k·s_k·Δ_k / Σ n_k.
   * @throws RangeError when `numExamples` is not positive and finite, or a tensor does not match
   *   the model (nothing is folded then).
   */
  add(result: FitResult, scale?: number): void;
  /** Updates folded in so far. */
  readonly count: number;
  /** Σ n_k so far. */
  readonly totalExamples: number;
  /** Σ n_k · loss_k / Σ n_k (NaN when empty). */
  readonly trainLoss: number;
}

/** Turns a round's accepted updates into one step. */
export interface Aggregator {
  /** Descriptor name, e.g. `mean`, `median`. */
  readonly name: string;
  /**
   * True when updates fold in O(model) memory as they arrive (weighted mean, norm bounding); false
   * when every update of the round is kept, O(n × model) (median, trimmed mean, Krum).
   */
  readonly streaming: boolean;
  /** A fresh fold for one round (or one FedBuff buffer). */
  begin(round: number, global: readonly NamedTensor[]): RoundAggregate;
  /**
   * The round's step Δ_t with the global model's tensor names and shapes, or `null` to keep the
   * model (no update, or the rule refuses, e.g. Krum with fewer than 2f + 3 updates).
   * @throws TypeError when `aggregate` was not made by this aggregator's {@link begin}.
   */
  finish(round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, failures: readonly FitFailure[]): StepTensor[] | null;
}

/** The server-side update x_{t+1} = opt(x_t, Δ_t). */
export interface ServerOptimizer {
  /** Descriptor name, e.g. `sgd`, `adam`. */
  readonly name: string;
  /**
   * The next global model from the current one and the round's step.
   * @returns new float32 tensors with the names and shapes of `global` (neither input is modified).
   * @throws RangeError when the optimizer's state does not match the model's tensors.
   */
  step(global: readonly NamedTensor[], delta: readonly StepTensor[]): NamedTensor[];
  /** State across rounds (momentum, moments) for the checkpoint; absent on stateless optimizers. A copy. */
  getState?(): StrategyState;
  /**
   * Restores a state from {@link getState} (possibly after JSON).
   * @throws TypeError when it is not a state of this optimizer.
   */
  setState?(state: StrategyState): void;
}

/** Adds to the local training configuration of every fit task (e.g. FedProx's `proximalMu`). */
export interface FitConfigContributor {
  readonly name: string;
  /** A new config with this contributor's keys set; `config` is not modified. */
  contribute(config: FitConfig): FitConfig;
}

/** A composed strategy, as the round engine uses it. */
export interface Strategy {
  /** Name shown in logs, metrics and checkpoints: a preset (`fedavg`, `fedadam`…) or `aggregator+optimizer`. */
  readonly name: string;
  readonly selector: Selector;
  readonly aggregator: Aggregator;
  readonly optimizer: ServerOptimizer;
  /** The fit config of `round`: the base config with every contributor applied. A fresh object. */
  fitConfig(round: number): FitConfig;
  /** The optimizer's state for the checkpoint, or null when stateless. A copy. */
  getState(): StrategyState | null;
  /** @throws TypeError when `state` is not a state of this strategy's optimizer. */
  setState(state: StrategyState): void;
}

/** A value that survives `JSON.stringify` / `JSON.parse` unchanged (finite numbers only). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A strategy's state as a JSON-serialisable object, part of the checkpoint. Typed arrays are
 * stored as plain number arrays (float32 and float64 values both round-trip exactly through JSON),
 * each optimizer documenting its own layout; by convention the object has a `strategy` field
 * holding the optimizer's name, checked by `setState`.
 */
export type StrategyState = { [key: string]: JsonValue };
