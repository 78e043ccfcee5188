export { EdgeNode, type EdgeNodeEvents, type EdgeNodeOptions, type TransformDeltaContext } from './node.ts';
export { createTrainer, type LocalResult, type LocalTrainer } from './trainer.ts';
export { deviceInfo } from './device.ts';
