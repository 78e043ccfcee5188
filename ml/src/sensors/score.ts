/**
 * Anomaly scores, label-free thresholds and detection metrics.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { Dataset } from './types.ts';

/** Options of {@link anomalyScores}. */
export interface AnomalyScoreOptions {
  /** Channels per reading in the window (default 2: temperature, humidity). */
  channels?: number;
  /** Windows per predict call (default 1024). */
  batchSize?: number;
}

/**
 * Squared reconstruction error of every element of every window.
 *
 * @returns `numExamples * prod(featureShape)` values, same layout as `ds.x`.
 */
export function elementErrors(model: tf.LayersModel, ds: Dataset, batchSize = 1024): Float32Array {
  const d = ds.featureShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(ds.numExamples * d);
  for (let start = 0; start < ds.numExamples; start += batchSize) {
    const n = Math.min(batchSize, ds.numExamples - start);
    const err = tf.tidy(() => {
      const x = tf.tensor2d(ds.x.subarray(start * d, (start + n) * d), [n, d]);
      const r = model.predict(x) as tf.Tensor;
      return tf.squaredDifference(r.reshape([n, d]), x);
    });
    out.set(err.dataSync() as Float32Array, start * d);
    err.dispose();
  }
  return out;
}

/**
 * Mean squared reconstruction error per window.
 *
 * @returns one score per example of `ds` (length `ds.numExamples`).
 */
export function windowScores(model: tf.LayersModel, ds: Dataset, batchSize = 1024): Float32Array {
  const d = ds.featureShape.reduce((a, b) => a * b, 1);
  const e = elementErrors(model, ds, batchSize);
  const s = new Float32Array(ds.numExamples);
  for (let w = 0; w < ds.numExamples; w++) {
    let acc = 0;
    for (let j = 0; j < d; j++) acc += e[w * d + j];
    s[w] = acc / d;
  }
  return s;
}

/**
 * Per-READING anomaly score of stride-1 windows (as built by `loadTelosb`): for reading r,
 * the squared reconstruction error of r's own values (all channels), averaged over every
 * window that contains r (1 … windowLength windows). Localises an event to the readings that
 * deviate, rather than smearing it over the whole window.
 *
 * @param ds - stride-1 windows, featureShape `[windowLength * channels]`.
 * @returns length `ds.numExamples + windowLength − 1` (= readings of the mote), in
 *   normalised units² (dimensionless). Empty if `ds.numExamples` is 0.
 * @throws RangeError if featureShape is not a multiple of `channels`.
 */
export function anomalyScores(
  model: tf.LayersModel,
  ds: Dataset,
  opts: AnomalyScoreOptions = {},
): Float32Array {
  const channels = opts.channels ?? 2;
  const d = ds.featureShape.reduce((a, b) => a * b, 1);
  if (d % channels !== 0) throw new RangeError(`feature size ${d} is not a multiple of ${channels}`);
  if (ds.numExamples === 0) return new Float32Array(0);
  const w = d / channels;
  const n = ds.numExamples + w - 1;
  const e = elementErrors(model, ds, opts.batchSize ?? 1024);
  const sum = new Float64Array(n);
  const cnt = new Float64Array(n);
  for (let i = 0; i < ds.numExamples; i++) {
    for (let t = 0; t < w; t++) {
      let acc = 0;
      for (let c = 0; c < channels; c++) acc += e[i * d + t * channels + c];
      sum[i + t] += acc / channels;
      cnt[i + t] += 1;
    }
  }
  const s = new Float32Array(n);
  for (let r = 0; r < n; r++) s[r] = sum[r] / cnt[r];
  return s;
}

/** Options of {@link pickThreshold}. */
export interface ThresholdOptions {
  /**
   * `'mad'` (default): robust z-score on log scores,
   *   `exp(median(log s) + k · 1.4826 · MAD(log s))`;
   * `'quantile'`: the `q`-quantile of the scores.
   */
  method?: 'mad' | 'quantile';
  /** Robust z cut-off for `'mad'` (default 5). */
  k?: number;
  /** Quantile for `'quantile'`, in (0, 1) (default 0.99). */
  q?: number;
}

/**
 * Picks an anomaly threshold from one node's own scores, without labels: readings with
 * score > threshold are flagged. The default is a robust z-score in the log domain
 * (reconstruction errors are positive and right-skewed; their log is roughly symmetric),
 * so it adapts to each mote's own noise level and is insensitive to the few events.
 *
 * @param scores - non-negative anomaly scores of one node.
 * @throws RangeError on empty scores or an out-of-range option.
 */
export function pickThreshold(scores: Float32Array, opts: ThresholdOptions = {}): number {
  if (scores.length === 0) throw new RangeError('pickThreshold: empty scores');
  const method = opts.method ?? 'mad';
  const sorted = Float64Array.from(scores).sort();
  const quant = (a: Float64Array, q: number): number => {
    const pos = q * (a.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(a.length - 1, lo + 1);
    return a[lo] + (a[hi] - a[lo]) * (pos - lo);
  };
  if (method === 'quantile') {
    const q = opts.q ?? 0.99;
    if (!(q > 0 && q < 1)) throw new RangeError(`q must be in (0, 1), got ${q}`);
    return quant(sorted, q);
  }
  const k = opts.k ?? 5;
  if (!(k > 0)) throw new RangeError(`k must be > 0, got ${k}`);
  const floor = 1e-12;
  const logs = sorted.map((v) => Math.log(Math.max(v, floor)));
  const med = quant(logs, 0.5);
  const dev = logs.map((v) => Math.abs(v - med)).sort();
  const mad = 1.4826 * quant(dev, 0.5);
  return Math.exp(med + k * mad);
}

/**
 * Flags scores strictly above the threshold.
 * @returns 1 = anomaly, 0 = normal, same length as `scores`.
 */
export function applyThreshold(scores: ArrayLike<number>, threshold: number): Int32Array {
  const out = new Int32Array(scores.length);
  for (let i = 0; i < scores.length; i++) out[i] = scores[i] > threshold ? 1 : 0;
  return out;
}

/** Binary detection metrics; see {@link detectionMetrics}. */
export interface DetectionMetrics {
  /** tp / (tp + fp); NaN when nothing is predicted positive. */
  precision: number;
  /** tp / (tp + fn); NaN when there are no positive labels. */
  recall: number;
  /** 2·tp / (2·tp + fp + fn); NaN when there are neither positives nor predictions. */
  f1: number;
  tp: number;
  fp: number;
  fn: number;
}

/**
 * Precision, recall and F1 of binary predictions (non-zero = positive) against labels.
 * Undefined ratios are NaN (never silently 0 or 1): precision with no predicted positives,
 * recall with no labelled positives, F1 when both are absent. F1 = 2tp/(2tp+fp+fn), which
 * equals the harmonic mean of P and R whenever both are defined, and is 0 when there are
 * positives or predictions but no true positive.
 *
 * @throws RangeError if the lengths differ.
 */
export function detectionMetrics(
  predicted: ArrayLike<number>,
  labels: ArrayLike<number>,
): DetectionMetrics {
  if (predicted.length !== labels.length) {
    throw new RangeError(`length mismatch: ${predicted.length} predictions, ${labels.length} labels`);
  }
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = predicted[i] !== 0;
    const l = labels[i] !== 0;
    if (p && l) tp++;
    else if (p) fp++;
    else if (l) fn++;
  }
  const precision = tp + fp > 0 ? tp / (tp + fp) : NaN;
  const recall = tp + fn > 0 ? tp / (tp + fn) : NaN;
  const f1 = 2 * tp + fp + fn > 0 ? (2 * tp) / (2 * tp + fp + fn) : NaN;
  return { precision, recall, f1, tp, fp, fn };
}
