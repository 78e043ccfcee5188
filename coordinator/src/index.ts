// The public API of @fedmq/coordinator: a curated list (docs/architecture.md, docs/strategies.md).

// coordinator.ts: the MQTT adapter around the round engine (timers, files, tfjs evaluation)
export { Coordinator, CHECKPOINT_FILE, type CoordinatorEvents, type CoordinatorOptions, type SecAggJobOptions } from './coordinator.ts';
export { SECAGG_STAGES, fedavgEncoding, type SecAggOptions, type SecAggRound, type SecAggStageRecord } from './engine/secagg.ts';
export { DistributedDpLedger, DDG_BETA, DDG_WRAP_PROBABILITY } from './privacy/distributed.ts';
// engine/: the round engine as a pure state machine, its stages, FedBuff and their types
export { RoundMachine, validateConfig } from './engine/machine.ts';
export { SYNC_ROUND, federatedEval, type SyncRound } from './engine/sync.ts';
export { FedBuff, stalenessWeight } from './engine/fedbuff.ts';
export type { Answer, OpenTask, Stage } from './engine/stage.ts';
export type { AsyncOptions, CoordinatorCheckpoint, Effect, EngineConfig, EngineEvent, EngineNotice, StalenessFunction } from './engine/types.ts';
// privacy/: differential privacy of a run (DP-FedAvg, adaptive clipping, the accountant's ledger)
export type { AdaptiveClipOptions, DpOptions } from './privacy/options.ts';
// registry.ts: nodes seen and their status
export { NodeRegistry } from './registry.ts';
// aggregate.ts: the running weighted sum of deltas
export { WeightedDeltaSum, addable, applyDelta, type Addable } from './aggregate.ts';
// strategy.ts: the Strategy = Selector + Aggregator + ServerOptimizer interfaces
export type {
  Aggregator, FitConfigContributor, FitFailure, FitResult, RoundAggregate, Selector, ServerOptimizer, StepTensor, Strategy, StrategyState,
} from './strategy.ts';
// validate.ts: update tensors against the global model
export { checkUpdateTensors } from './validate.ts';
// metrics.ts: Prometheus metrics of the coordinator
export { coordinatorMetrics, serveMetrics, serveMetricsOrFallback, DEFAULT_METRICS_PORT, type CoordinatorMetrics } from './metrics.ts';
// strategies/: the registry of strategies, aggregators and optimizers, CLI flags and docs generated from descriptors
export {
  AGGREGATOR_NAMES, OPTIMIZER_NAMES, STRATEGY_NAMES, createStrategy, sample, strategiesMarkdown, strategyCliOptions,
  type StrategyCliOption, type StrategyName, type StrategySpec,
} from './strategies/index.ts';
export type {
  AggregatorDescriptor, ComponentContext, ComponentDescriptor, FitConfigDescriptor, OptimizerDescriptor, ParamFlag,
} from './strategies/descriptor.ts';
