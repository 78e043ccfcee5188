import type { FitConfig } from '@fedmq/protocol';
import type { Aggregator, FitConfigContributor, Selector, ServerOptimizer, Strategy, StrategyState } from '../strategy.ts';

/** The parts of a {@link ComposedStrategy}. */
export interface StrategyParts {
  /** Name shown in logs, metrics and checkpoints. */
  name: string;
  selector: Selector;
  aggregator: Aggregator;
  optimizer: ServerOptimizer;
  /** Applied in order to the base fit config of every round. */
  contributors: readonly FitConfigContributor[];
  /** Local training configuration sent to every selected node before the contributors (copied). */
  fitConfig: FitConfig;
}

/**
 * A {@link Strategy} made of a selector, an aggregator, a server optimizer and fit-config
 * contributors (the shape of docs/strategies.md). The state is the optimizer's.
 */
export class ComposedStrategy implements Strategy {
  readonly name: string;
  readonly selector: Selector;
  readonly aggregator: Aggregator;
  readonly optimizer: ServerOptimizer;
  /** The fit-config contributors, in the order they are applied. */
  readonly contributors: readonly FitConfigContributor[];
  private readonly base: FitConfig;

  constructor(parts: StrategyParts) {
    this.name = parts.name;
    this.selector = parts.selector;
    this.aggregator = parts.aggregator;
    this.optimizer = parts.optimizer;
    this.contributors = [...parts.contributors];
    this.base = { ...parts.fitConfig };
  }

  /** The base fit config with every contributor applied, a fresh object (the same for every round today). */
  fitConfig(_round: number): FitConfig {
    let config: FitConfig = { ...this.base };
    for (const c of this.contributors) config = c.contribute(config);
    return config;
  }

  /** The optimizer's state (a copy), or null when the optimizer is stateless. */
  getState(): StrategyState | null {
    return this.optimizer.getState ? this.optimizer.getState() : null;
  }

  /** @throws TypeError when `state` is not a state of this strategy's optimizer (or the optimizer is stateless). */
  setState(state: StrategyState): void {
    if (!this.optimizer.setState) {
      const of = state !== null && typeof state === 'object' && !Array.isArray(state) ? JSON.stringify(state.strategy) : 'nothing';
      throw new TypeError(`strategy ${this.name}: optimizer ${this.optimizer.name} is stateless, got a state of ${of}`);
    }
    this.optimizer.setState(state);
  }
}
