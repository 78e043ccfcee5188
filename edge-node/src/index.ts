export { EdgeNode, type EdgeNodeEvents, type EdgeNodeOptions, type EvalScore, type TransformDeltaContext } from './node.ts';
export { createTrainer, type EvaluateRequest, type LocalEvaluation, type LocalResult, type LocalTrainer, type TrainRequest } from './trainer.ts';
export { fnv1a, heldOutCount, splitDataset, splitIndices, type DataSplit } from './split.ts';
export { deviceInfo } from './device.ts';
