// The public API of @fedmq/edge-node: a curated list (used by the CLI, the simulator and the tests).

// node.ts: the device runtime (connect, announce, answer fit and evaluate tasks)
export { EdgeNode, privatizeDelta, type EdgeNodeEvents, type EdgeNodeOptions, type EvalScore, type TransformDeltaContext } from './node.ts';
// trainer.ts: local training and evaluation behind an interface (tfjs by default)
export { createTrainer, type EvaluateRequest, type LocalEvaluation, type LocalResult, type LocalTrainer, type TrainRequest } from './trainer.ts';
// split.ts: the node's held-out split (docs/protocol.md §5.4)
export { fnv1a, heldOutCount, splitDataset, splitIndices, type DataSplit } from './split.ts';
// device.ts: device info announced in the node status
export { deviceInfo } from './device.ts';
