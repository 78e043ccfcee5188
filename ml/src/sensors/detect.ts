/**
 * One-call detection for a node: scores → label-free threshold → flags (→ metrics).
 *
 * @packageDocumentation
 */
import type * as tf from '@tensorflow/tfjs';
import type { TelosbMote } from './data.ts';
import {
  anomalyScores,
  applyThreshold,
  detectionMetrics,
  pickThreshold,
} from './score.ts';
import type { AnomalyScoreOptions, DetectionMetrics, ThresholdOptions } from './score.ts';

/** Result of {@link detectMote}. */
export interface MoteDetection {
  moteId: number;
  /** Per-reading scores, length `mote.numReadings` (robust σ²). */
  scores: Float32Array;
  /** Threshold picked from `scores` alone ({@link pickThreshold}). */
  threshold: number;
  /** Per-reading flags, 1 = anomaly. */
  predicted: Int32Array;
  /** Number of flagged readings. */
  flagged: number;
  /** Number of labelled event readings (evaluation only). */
  events: number;
  /** Per-reading metrics against `mote.readingLabels` (evaluation only). */
  metrics: DetectionMetrics;
}

/**
 * Scores every reading of one mote with `model`, picks the mote's threshold from its own
 * scores (no labels), flags readings, and only then compares the flags with the labels.
 *
 * @throws RangeError from {@link anomalyScores} / {@link pickThreshold} on invalid input.
 */
export function detectMote(
  model: tf.LayersModel,
  mote: TelosbMote,
  opts: { score?: AnomalyScoreOptions; threshold?: ThresholdOptions } = {},
): MoteDetection {
  const scores = anomalyScores(model, mote.dataset, opts.score);
  const threshold = pickThreshold(scores, opts.threshold);
  const predicted = applyThreshold(scores, threshold);
  let flagged = 0;
  let events = 0;
  for (let i = 0; i < predicted.length; i++) {
    flagged += predicted[i];
    events += mote.readingLabels[i];
  }
  return {
    moteId: mote.moteId,
    scores,
    threshold,
    predicted,
    flagged,
    events,
    metrics: detectionMetrics(predicted, mote.readingLabels),
  };
}

/**
 * "F1 over the motes that have events", both ways: the mean of the per-mote F1 and the
 * pooled F1 (tp/fp/fn summed over those motes, then F1). Motes without labelled events are
 * excluded (their F1 is undefined; report their false positives separately).
 *
 * @returns NaN values if no mote has events.
 */
export function aggregateF1(dets: ReadonlyArray<Pick<MoteDetection, 'events' | 'metrics'>>): {
  meanF1: number;
  pooled: DetectionMetrics;
  motes: number;
} {
  const withEvents = dets.filter((d) => d.events > 0);
  const tp = withEvents.reduce((a, d) => a + d.metrics.tp, 0);
  const fp = withEvents.reduce((a, d) => a + d.metrics.fp, 0);
  const fn = withEvents.reduce((a, d) => a + d.metrics.fn, 0);
  const meanF1 = withEvents.length
    ? withEvents.reduce((a, d) => a + d.metrics.f1, 0) / withEvents.length
    : NaN;
  return {
    meanF1,
    pooled: {
      tp,
      fp,
      fn,
      precision: tp + fp > 0 ? tp / (tp + fp) : NaN,
      recall: tp + fn > 0 ? tp / (tp + fn) : NaN,
      f1: 2 * tp + fp + fn > 0 ? (2 * tp) / (2 * tp + fp + fn) : NaN,
    },
    motes: withEvents.length,
  };
}
