/**
 * Federated sensor anomaly detection on the Suthaharan et al. TelosB single-hop data set:
 * loading/windowing, the `telosb-ae` autoencoder, anomaly scores, label-free thresholds and
 * detection metrics. See docs/sensors.md.
 *
 * @packageDocumentation
 */
export type { Dataset, ModelDefinition } from './types.ts';
export type {
  TelosbReading,
  ChannelStats,
  MoteNormalization,
  TelosbMote,
  TelosbData,
  LoadTelosbOptions,
} from './data.ts';
export {
  DEFAULT_WINDOW_LENGTH,
  TELOSB_SOURCE,
  readTelosbReadings,
  median,
  robustStats,
  slidingWindows,
  loadTelosb,
} from './data.ts';
export type { TelosbAutoencoderOptions } from './model.ts';
export { createTelosbAutoencoder, telosbAutoencoder } from './model.ts';
export type { AnomalyScoreOptions, ThresholdOptions, DetectionMetrics } from './score.ts';
export {
  elementErrors,
  windowScores,
  anomalyScores,
  pickThreshold,
  applyThreshold,
  detectionMetrics,
} from './score.ts';
