/**
 * `@fedmq/ml` — the TensorFlow.js side of fedmq: backend choice, model zoo, datasets and
 * partitioners, local training and evaluation. Importing it registers the built-in models.
 */
// backend.ts: tfjs backend choice (tensorflow, wasm, cpu)
export { initBackend, currentBackend, patchWasmKernels, type BackendName } from './backend.ts';
// errors.ts: coded errors of the ml package
export { FedmqMlError, type FedmqMlErrorCode } from './errors.ts';
// data.ts: datasets (MNIST, IDX, CSV) and helpers
export {
  loadMnist,
  loadIdx,
  loadCsv,
  loadDataset,
  loadIdxAsync,
  loadDatasetAsync,
  resolveDataset,
  subset,
  featureSize,
  validateDataset,
  mnistDataDir,
  isByteDataset,
  type Dataset,
  type ByteDataset,
  type LocalDataset,
  type LoadOptions,
  type CsvOptions,
  type DatasetSource,
} from './data.ts';
// partition.ts: IID, Dirichlet(α) and natural partitioners
export { partition, parsePartition, DIRICHLET_MIN_EXAMPLES, DIRICHLET_MAX_DRAWS, type PartitionSpec } from './partition.ts';
// rng.ts: seeded randomness (createRng is @fedmq/protocol's, re-exported) and samplers
export { createRng, randInt, sampleNormal, sampleGamma, sampleDirichlet, shuffleInPlace, permutation, type Rng } from './rng.ts';
// models/: the model zoo registry and built-in models
export { listModels, modelNames, registerModel, registerModelFamily, getModelDefinition, type ModelInfo, type ModelDefinition } from './models/registry.ts';
// check.ts: does a dataset fit a model
export { checkDataFits } from './check.ts';
export { mnist2nn, mlpDefinition, MLP_PATTERN } from './models/index.ts';
// federated-model.ts: FederatedModel (get/set weights, fit, evaluate)
export {
  createModel,
  type FederatedModel,
  type FitOptions,
  type LocalTrainingResult,
  type ModelEvaluation,
} from './federated-model.ts';
export { perExampleLoss } from './per-example.ts'; // per-example.ts: each example's loss (what a membership-inference attack reads)
// io.ts: tfjs layers-format files
export { fileSystemHandler, loadLayersModelFromDir, MODEL_JSON, WEIGHTS_BIN } from './io.ts';
// export.ts: writing datasets to files
export { writeIdx, writeCsv } from './export.ts';
// sensors/: TelosB sensor data, autoencoder and anomaly scoring (docs/sensors.md)
export {
  loadTelosb, detectMote, aggregateF1, anomalyScores, pickThreshold, applyThreshold, detectionMetrics, telosbAutoencoder, TELOSB_SOURCE,
  type TelosbMote, type TelosbData, type MoteDetection, type DetectionMetrics,
} from './sensors/index.ts';
