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
  /**
   * How a reading's errors from the (up to windowLength) windows containing it are combined:
   * `'min'` (default) — the reading is anomalous only if it is badly reconstructed in every
   * window that contains it, so a normal reading next to an event does not inherit the
   * event's error (the autoencoder spreads a window's error over all its positions);
   * `'median'`, `'mean'`; `'last'` — only the window ending at the reading (causal, streaming).
   */
  aggregate?: 'min' | 'median' | 'mean' | 'last';
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
 * Per-READING anomaly score of stride-1 windows (as built by `loadTelosb`). For reading r and
 * each window containing it, the error of r is the squared reconstruction error of r's own
 * values averaged over channels; these (1 … windowLength) errors are combined by
 * `opts.aggregate` (default `'min'`, see {@link AnomalyScoreOptions}).
 *
 * @param ds - stride-1 windows, featureShape `[windowLength * channels]`, channels
 *   interleaved per reading.
 * @returns length `ds.numExamples + windowLength − 1` (= readings of the mote), in
 *   normalised units² (robust σ², dimensionless). Empty if `ds.numExamples` is 0.
 * @throws RangeError if the feature size is not a multiple of `channels`.
 */
export function anomalyScores(
  model: tf.LayersModel,
  ds: Dataset,
  opts: AnomalyScoreOptions = {},
): Float32Array {
  const channels = opts.channels ?? 2;
  const aggregate = opts.aggregate ?? 'min';
  const d = ds.featureShape.reduce((a, b) => a * b, 1);
  if (d % channels !== 0) throw new RangeError(`feature size ${d} is not a multiple of ${channels}`);
  if (ds.numExamples === 0) return new Float32Array(0);
  const e = elementErrors(model, ds, opts.batchSize ?? 1024);
  return readingScoresFromErrors(e, ds.numExamples, d / channels, channels, aggregate);
}

/**
 * Combines per-element window errors (layout of {@link elementErrors}) of stride-1 windows
 * into one score per reading; see {@link anomalyScores}.
 *
 * @returns length `numWindows + windowLength − 1`.
 * @throws RangeError if `errors.length !== numWindows * windowLength * channels`.
 */
export function readingScoresFromErrors(
  errors: Float32Array,
  numWindows: number,
  windowLength: number,
  channels = 2,
  aggregate: 'min' | 'median' | 'mean' | 'last' = 'min',
): Float32Array {
  const d = windowLength * channels;
  if (errors.length !== numWindows * d) {
    throw new RangeError(`expected ${numWindows * d} errors, got ${errors.length}`);
  }
  const n = numWindows > 0 ? numWindows + windowLength - 1 : 0;
  const out = new Float32Array(n);
  const buf = new Float64Array(windowLength);
  for (let r = 0; r < n; r++) {
    // windows i with i <= r <= i + windowLength - 1
    const first = Math.max(0, r - windowLength + 1);
    const last = Math.min(numWindows - 1, r);
    let k = 0;
    for (let i = first; i <= last; i++) {
      const t = r - i;
      let acc = 0;
      for (let c = 0; c < channels; c++) acc += errors[i * d + t * channels + c];
      buf[k++] = acc / channels;
    }
    const v = buf.subarray(0, k);
    if (aggregate === 'last') out[r] = v[0];
    else if (aggregate === 'mean') out[r] = v.reduce((a, b) => a + b, 0) / k;
    else if (aggregate === 'min') out[r] = v.reduce((a, b) => Math.min(a, b), Infinity);
    else {
      const s = Float64Array.from(v).sort();
      out[r] = k % 2 ? s[k >> 1] : (s[(k >> 1) - 1] + s[k >> 1]) / 2;
    }
  }
  return out;
}

/** Default cut of {@link pickThreshold}'s `'sigma'` rule, in robust σ of the mote's own signal. */
export const DEFAULT_THRESHOLD_SIGMA = 0.7;

/** Options of {@link pickThreshold}. */
export interface ThresholdOptions {
  /**
   * - `'sigma'` (default): threshold = `sigma²`. Scores are squared reconstruction errors in
   *   units of the mote's OWN robust σ (each node normalises with its own median/MAD), so this
   *   flags a reading whose RMS reconstruction error exceeds `sigma` robust standard
   *   deviations of that mote's signal. Does not depend on the score distribution, which
   *   made it far more stable across training runs than the rules below (docs/sensors.md).
   * - `'mad'`: robust z-score in the log domain, `exp(median(ln s) + k · 1.4826 · MAD(ln s))`.
   * - `'quantile'`: the `q`-quantile of the scores (flags ≈ (1 − q) of readings, events or not).
   */
  method?: 'sigma' | 'mad' | 'quantile';
  /** Cut for `'sigma'`, in robust σ (default {@link DEFAULT_THRESHOLD_SIGMA} → threshold 0.49). */
  sigma?: number;
  /** Robust z cut-off for `'mad'` (default 3). */
  k?: number;
  /** Quantile for `'quantile'`, in (0, 1) (default 0.99). */
  q?: number;
}

/**
 * Picks one node's anomaly threshold without labels: readings with score > threshold are
 * flagged. Every rule uses only the node's own scores (and, through the scores' unit, its
 * own normalisation statistics); no labels and no other node's data.
 *
 * @param scores - non-negative per-reading scores of one node (from {@link anomalyScores}).
 * @returns threshold in the scores' unit (normalised units², robust σ²).
 * @throws RangeError on empty scores or an out-of-range option.
 */
export function pickThreshold(scores: Float32Array, opts: ThresholdOptions = {}): number {
  if (scores.length === 0) throw new RangeError('pickThreshold: empty scores');
  const method = opts.method ?? 'sigma';
  if (method === 'sigma') {
    const sigma = opts.sigma ?? DEFAULT_THRESHOLD_SIGMA;
    if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, got ${sigma}`);
    return sigma * sigma;
  }
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
  if (method !== 'mad') throw new RangeError(`unknown method ${String(method)}`);
  const k = opts.k ?? 3;
  if (!(k > 0)) throw new RangeError(`k must be > 0, got ${k}`);
  const logs = sorted.map((v) => Math.log(Math.max(v, 1e-12)));
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
