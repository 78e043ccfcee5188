/**
 * `@fedmq/ml` — the TensorFlow.js side of fedmq: backend choice, model zoo, datasets and
 * partitioners, local training and evaluation. Importing it registers the built-in models.
 */
export { initBackend, currentBackend, patchWasmKernels, type BackendName } from './backend.ts';
export { FedmqMlError, type FedmqMlErrorCode } from './errors.ts';
export {
  loadMnist,
  loadIdx,
  loadCsv,
  loadDataset,
  subset,
  featureSize,
  validateDataset,
  mnistDataDir,
  type Dataset,
} from './data.ts';
export { partition, parsePartition, DIRICHLET_MIN_EXAMPLES, DIRICHLET_MAX_DRAWS, type PartitionSpec } from './partition.ts';
export { createRng, randInt, sampleNormal, sampleGamma, sampleDirichlet, shuffleInPlace, permutation, type Rng } from './rng.ts';
export { listModels, registerModel, registerModelFamily, getModelDefinition, type ModelInfo, type ModelDefinition } from './models/registry.ts';
export { mnist2nn, mlpDefinition, MLP_PATTERN } from './models/index.ts';
export {
  createModel,
  type FederatedModel,
  type FitOptions,
  type FitResult,
  type EvaluateResult,
} from './federated-model.ts';
export { fileSystemHandler, loadLayersModelFromDir, MODEL_JSON, WEIGHTS_BIN } from './io.ts';
export { writeIdx, writeCsv } from './export.ts';
export {
  loadTelosb, detectMote, aggregateF1, anomalyScores, pickThreshold, applyThreshold, detectionMetrics, telosbAutoencoder, TELOSB_SOURCE,
  type TelosbMote, type TelosbData, type MoteDetection, type DetectionMetrics,
} from './sensors/index.ts';
