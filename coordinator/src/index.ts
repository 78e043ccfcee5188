export { Coordinator, CHECKPOINT_FILE, type CoordinatorCheckpoint, type CoordinatorEvents, type CoordinatorOptions, type RoundRecord } from './coordinator.ts';
export { NodeRegistry } from './registry.ts';
export { WeightedDeltaSum, addable, applyDelta, type Addable } from './aggregate.ts';
export { FedAvg, MeanAggregate, sample, type FedAvgOptions } from './strategies/fedavg.ts';
export type { FitFailure, FitResult, RoundAggregate, Strategy } from './strategy.ts';
export { checkUpdateTensors } from './validate.ts';
export { coordinatorMetrics, serveMetrics, serveMetricsOrFallback, DEFAULT_METRICS_PORT, type CoordinatorMetrics } from './metrics.ts';
export {
  STRATEGY_NAMES, createStrategy, FedAvgM, FedAdam, FedYogi, FedAdagrad, FedProx, CoordinateMedian, TrimmedMean, Krum, MultiKrum, NormBounding,
  type StrategyName, type StrategyParams,
} from './strategies/index.ts';
export type { StrategyState } from './strategy.ts';
