export { EdgeNode, type EdgeNodeEvents, type EdgeNodeOptions } from './node.ts';
export { createTrainer, type LocalResult, type LocalTrainer } from './trainer.ts';
export { deviceInfo } from './device.ts';
