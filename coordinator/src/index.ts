export { Coordinator, CHECKPOINT_FILE, type CoordinatorEvents, type CoordinatorOptions } from './coordinator.ts';
export { RoundMachine, validateConfig } from './engine/machine.ts';
export { SYNC_ROUND, federatedEval, type SyncRound } from './engine/sync.ts';
export { FedBuff, stalenessWeight } from './engine/fedbuff.ts';
export type { Answer, OpenTask, Stage } from './engine/stage.ts';
export type { AsyncOptions, CoordinatorCheckpoint, Effect, EngineConfig, EngineEvent, EngineNotice, StalenessFunction } from './engine/types.ts';
export { NodeRegistry } from './registry.ts';
export { WeightedDeltaSum, addable, applyDelta, type Addable } from './aggregate.ts';
export type {
  Aggregator, FitConfigContributor, FitFailure, FitResult, RoundAggregate, Selector, ServerOptimizer, StepTensor, Strategy, StrategyState,
} from './strategy.ts';
export { checkUpdateTensors } from './validate.ts';
export { coordinatorMetrics, serveMetrics, serveMetricsOrFallback, DEFAULT_METRICS_PORT, type CoordinatorMetrics } from './metrics.ts';
export {
  AGGREGATOR_NAMES, OPTIMIZER_NAMES, STRATEGY_NAMES, createStrategy, sample, strategiesMarkdown, strategyCliOptions,
  type StrategyCliOption, type StrategyName, type StrategySpec,
} from './strategies/index.ts';
export type {
  AggregatorDescriptor, ComponentContext, ComponentDescriptor, FitConfigDescriptor, OptimizerDescriptor, ParamFlag,
} from './strategies/descriptor.ts';
