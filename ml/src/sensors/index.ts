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
  DEFAULT_CLIP,
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
  readingScoresFromErrors,
  pickThreshold,
  DEFAULT_THRESHOLD_SIGMA,
  applyThreshold,
  detectionMetrics,
} from './score.ts';
export type { MoteDetection } from './detect.ts';
export { detectMote, aggregateF1 } from './detect.ts';
