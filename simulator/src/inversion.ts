/**
 * The gradient inversion attack that secure aggregation stops (docs/privacy.md, "The attack secure
 * aggregation stops"; `npm run demo:inversion`).
 *
 * One node trains ONE plain SGD step (batch size 1) on ONE MNIST example with the edge node's own
 * trainer (`createTrainer` of @fedmq/edge-node, the code path of a real fit task) and computes the
 * delta its update would carry, `trained − global`. The first layer of `mnist-2nn` is dense,
 * z = xW + b, so for that one example ∂L/∂W = x·(∂L/∂z)ᵀ and ∂L/∂b = ∂L/∂z, and after one step of
 * learning rate η
 *
 *   ΔW[i, j] = −η·x[i]·∂L/∂z[j],   Δb[j] = −η·∂L/∂z[j],   so  ΔW[i, j] / Δb[j] = x[i]
 *
 * for every unit j with Δb[j] ≠ 0 (Phong et al. 2017, "Privacy-Preserving Deep Learning via
 * Additively Homomorphic Encryption", IEEE TIFS 13(5); Geiping et al. 2020, "Inverting Gradients —
 * How easy is it to break privacy in federated learning?", NeurIPS, arXiv:2003.14053). A
 * coordinator that sees the update sees the input.
 *
 * With secure aggregation (SecAgg+, `simulateSecAgg` of @fedmq/privacy) the coordinator holds for
 * that node only its masked vector, which is indistinguishable from uniform: the demo measures the
 * bytes (chi-square against uniform, entropy) and runs the same reconstruction on them.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { createModel, initBackend, loadMnist, subset, type Dataset } from '@fedmq/ml';
import { createTrainer } from '@fedmq/edge-node';
import { packBits, quantizeVector, simulateSecAgg } from '@fedmq/privacy';
import gammainc from '@stdlib/math-base-special-gammainc';
import { ErrorCodes, FedmqError, type NamedTensor } from '@fedmq/protocol';

/** Defaults of {@link runInversionDemo}. */
export const INVERSION_DEMO = {
  /** MNIST training example attacked. */
  index: 0,
  /** Seed of the global model's initial weights (and of the local shuffle, which one example does not use). */
  seed: 42,
  /** η of the one local SGD step (the default job's, `DEFAULT_JOB.fit.learningRate`). */
  learningRate: 0.2,
  /** Nodes besides the target in the secure sum. */
  others: 9,
  /** Quantisation clip, weight-delta units: values are clipped to [−clip, clip] before quantising (the result's `secagg.clipped` counts the target's values beyond it; 0 for the default examples, whose largest |Δ| is ~0.18). */
  clip: 0.25,
  /** Quantisation levels 0..2^levelBits − 1. */
  levelBits: 16,
  /** Bit width of the secure sum's ring Z_(2^bits): 10·(2^16 − 1) < 2^32. */
  bits: 32,
  /** Nearest-neighbour upscaling of the 28×28 pictures. */
  scale: 8,
} as const;

/** The model attacked and the names of its first dense layer's weights. */
const MODEL = 'mnist-2nn';
const KERNEL = 'fc1/kernel';
const BIAS = 'fc1/bias';
const SIDE = 28;

/** One node's one-example, one-step update. */
export interface OneStepUpdate {
  /** The example as the model sees it: 784 pixels in [0, 1] (byte / 255), row-major 28×28. */
  input: Float32Array;
  /** Its label, 0–9. */
  label: number;
  /** The global weights the node started from. */
  global: NamedTensor[];
  /** trained − global, one tensor per weight (what the node's update carries). */
  delta: NamedTensor[];
}

/**
 * One node update per dataset of `examples`: the edge node's trainer trains `mnist-2nn` from
 * `global` for one epoch of batch size 1 (one plain SGD step for a dataset of one example) and
 * returns trained − global, in the order of `examples`.
 * The tfjs backend must be initialised.
 * @param examples datasets of one example each.
 * @throws FedmqError FEDMQ_TRAINING_FAILED / FEDMQ_MODEL_MISMATCH from the trainer.
 */
export async function oneStepDeltas(global: readonly NamedTensor[], examples: readonly Dataset[], learningRate: number, seed: number): Promise<NamedTensor[][]> {
  const trainer = createTrainer();
  try {
    const out: NamedTensor[][] = [];
    for (const data of examples) {
      const r = await trainer.train({ modelName: MODEL, global, data, config: { epochs: 1, batchSize: 1, learningRate }, seed });
      out.push(r.delta);
    }
    return out;
  } finally {
    trainer.dispose();
  }
}

/**
 * The global model (`mnist-2nn` initialised from `seed`) and one node's update after one plain SGD
 * step of learning rate `learningRate` on the MNIST training example `index`.
 * The tfjs backend must be initialised.
 * @throws FedmqError FEDMQ_BAD_CONFIG when `index` is not an example of the training split.
 */
export async function oneStepUpdate(o: { index: number; seed: number; learningRate: number; train?: Dataset }): Promise<OneStepUpdate> {
  const train = o.train ?? loadMnist('train');
  if (!Number.isInteger(o.index) || o.index < 0 || o.index >= train.numExamples) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `--index ${o.index}: MNIST has training examples 0..${train.numExamples - 1}`, { index: o.index });
  }
  const model = createModel(MODEL, o.seed);
  const global = model.getWeights();
  model.dispose();
  const example = subset(train, [o.index]);
  const [delta] = await oneStepDeltas(global, [example], o.learningRate, o.seed);
  return { input: Float32Array.from(example.x), label: example.y[0], global, delta };
}

/** What {@link reconstructInput} found. */
export interface Reconstruction {
  /** The input recovered, one value per row of the kernel (784 for `mnist-2nn`), same units as the input. */
  x: Float32Array;
  /** The unit j with the largest |Δb[j]|. */
  bestUnit: number;
  /** Units with Δb[j] ≠ 0 (the others, dead ReLUs, carry nothing). */
  unitsUsed: number;
}

/**
 * Recovers the input of a dense layer from a one-example, one-step update of it: with
 * ΔW[:, j] = x·Δb[j] for every unit j, the least-squares x over all units,
 * x[i] = Σ_j Δb[j]·ΔW[i, j] / Σ_j Δb[j]², i.e. the ratios ΔW[i, j]/Δb[j] averaged with weights
 * Δb[j]² (units with a large bias change dominate; units with Δb[j] = 0 drop out). Exact for the
 * true update up to float32 rounding. Runs on any numbers (a masked vector too): it is what a
 * coordinator holding the vector would compute.
 * @param kernel the layer's kernel delta, tfjs layout [in, out] row-major (`in·out` values).
 * @param bias the bias delta (`out` values).
 * @throws FedmqError FEDMQ_BAD_CONFIG when the sizes disagree, or when every Δb[j] is 0 (nothing to divide by).
 */
export function reconstructInput(kernel: ArrayLike<number>, bias: ArrayLike<number>): Reconstruction {
  const units = bias.length;
  if (units === 0 || kernel.length % units !== 0) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `kernel of ${kernel.length} values does not fit a bias of ${units}`);
  }
  const inputs = kernel.length / units;
  let norm = 0;
  let bestUnit = -1;
  let unitsUsed = 0;
  for (let j = 0; j < units; j++) {
    const b = bias[j];
    if (b === 0) continue;
    unitsUsed++;
    norm += b * b;
    if (bestUnit < 0 || Math.abs(b) > Math.abs(bias[bestUnit])) bestUnit = j;
  }
  if (!(norm > 0) || !Number.isFinite(norm)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, 'no unit of the layer changed its bias: the update says nothing about the input');
  }
  const x = new Float32Array(inputs);
  for (let i = 0; i < inputs; i++) {
    let s = 0;
    const row = i * units;
    for (let j = 0; j < units; j++) s += bias[j] * kernel[row + j];
    x[i] = s / norm;
  }
  return { x, bestUnit, unitsUsed };
}

/** How far a reconstruction is from the input. */
export interface ReconstructionError {
  /** max_i |x̂[i] − x[i]|, input units ([0, 1] for MNIST pixels). */
  maxAbsError: number;
  /** Peak signal-to-noise ratio 10·log10(1 / MSE), dB, peak 1 (the [0, 1] range); Infinity when MSE = 0. */
  psnr: number;
  /** Pearson correlation of x̂ with x: 1 for a faithful reconstruction, near 0 (±~0.04 for 784 pixels) for one unrelated to the input; NaN when either is constant. */
  correlation: number;
}

/**
 * Max abs error, PSNR (peak 1) and correlation of `estimate` against `truth`. A NaN estimate counts
 * as an infinite error (max abs error Infinity, PSNR −Infinity).
 * @throws FedmqError FEDMQ_BAD_CONFIG when the lengths differ or are 0.
 */
export function reconstructionError(truth: ArrayLike<number>, estimate: ArrayLike<number>): ReconstructionError {
  if (truth.length !== estimate.length || truth.length === 0) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `cannot compare ${estimate.length} values with ${truth.length}`);
  }
  const n = truth.length;
  let max = 0;
  let sq = 0;
  let mt = 0;
  let me = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.abs(estimate[i] - truth[i]);
    const err = Number.isNaN(e) ? Infinity : e;
    if (err > max) max = err;
    sq += err * err;
    mt += truth[i] / n;
    me += estimate[i] / n;
  }
  let stt = 0;
  let see = 0;
  let ste = 0;
  for (let i = 0; i < n; i++) {
    const dt = truth[i] - mt;
    const de = estimate[i] - me;
    stt += dt * dt;
    see += de * de;
    ste += dt * de;
  }
  return { maxAbsError: max, psnr: 10 * Math.log10(1 / (sq / n)), correlation: stt > 0 && see > 0 ? ste / Math.sqrt(stt * see) : NaN };
}

/**
 * The delta's first dense layer, reconstructed: the tensors `fc1/kernel` and `fc1/bias` of a
 * `mnist-2nn` update.
 * @throws FedmqError FEDMQ_MODEL_MISMATCH when they are missing; see {@link reconstructInput}.
 */
export function reconstructFromDelta(delta: readonly NamedTensor[]): Reconstruction {
  const kernel = delta.find((t) => t.name === KERNEL);
  const bias = delta.find((t) => t.name === BIAS);
  if (!kernel || !bias) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `the update has no ${KERNEL} and ${BIAS}`);
  return reconstructInput(kernel.data, bias.data);
}

/** The tensors of `delta` one after another (the order of the model's weights), float64. */
export function flatten(delta: readonly NamedTensor[]): Float64Array {
  const out = new Float64Array(delta.reduce((s, t) => s + t.data.length, 0));
  let o = 0;
  for (const t of delta) {
    out.set(t.data, o);
    o += t.data.length;
  }
  return out;
}

/**
 * The inverse of the quantiser `quantizeVector` of @fedmq/privacy: level q ∈ 0..2^levelBits − 1
 * stands for −clip + q·2·clip/(2^levelBits − 1). Applied to whatever numbers it is given (a masked
 * vector's words too: that is the coordinator's best reading of them without the masks).
 */
export function dequantize(levels: ArrayLike<number>, o: { clip: number; levelBits: number }): Float64Array {
  const step = (2 * o.clip) / (2 ** o.levelBits - 1);
  const out = new Float64Array(levels.length);
  for (let i = 0; i < levels.length; i++) out[i] = -o.clip + levels[i] * step;
  return out;
}

/** Splits a flat vector back into tensors shaped like `like` (the inverse of {@link flatten}). */
export function unflatten(flat: ArrayLike<number>, like: readonly NamedTensor[]): NamedTensor[] {
  let o = 0;
  return like.map((t) => {
    const data = Float32Array.from({ length: t.data.length }, (_, i) => flat[o + i]);
    o += t.data.length;
    return { name: t.name, shape: [...t.shape], data };
  });
}

// ---- statistics of bytes --------------------------------------------------------------------

/**
 * Pr[χ²_df ≥ stat]: the p-value of a chi-square statistic with `df` degrees of freedom, the
 * regularized upper incomplete gamma Q(df/2, stat/2) of `@stdlib/math-base-special-gammainc`
 * (computed directly in the upper tail, so it does not lose the small p-values to 1 − P).
 */
export function chiSquarePValue(stat: number, df: number): number {
  if (!(df > 0) || !(stat >= 0) || !Number.isFinite(df) || !Number.isFinite(stat)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `chi-square p-value of ${stat} with ${df} degrees of freedom: needs df > 0 and a statistic ≥ 0, finite`);
  }
  return gammainc(stat / 2, df / 2, true, true);
}

/** Statistics of a byte string against the uniform distribution on 0..255. */
export interface ByteStats {
  /** Number of bytes. */
  bytes: number;
  /** Pearson's chi-square statistic of the 256-bin byte histogram against uniform (expected bytes/256 per bin). */
  chiSquare: number;
  /** Degrees of freedom of {@link chiSquare}: 255. */
  df: number;
  /** Pr[χ²_255 ≥ chiSquare]: near 0 for structured bytes, uniform on (0, 1) for uniform bytes. */
  pValue: number;
  /** Shannon entropy of the byte histogram, bits per byte (8 for uniform bytes). */
  entropyBits: number;
}

/**
 * Histogram statistics of `bytes`: chi-square against uniform over 256 values with its p-value
 * (255 degrees of freedom) and the Shannon entropy in bits per byte.
 * @throws FedmqError FEDMQ_BAD_CONFIG on an empty string.
 */
export function byteStats(bytes: Uint8Array): ByteStats {
  const n = bytes.length;
  if (n === 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'no bytes to measure');
  const counts = new Float64Array(256);
  for (let i = 0; i < n; i++) counts[bytes[i]]++;
  const expected = n / 256;
  let chi = 0;
  let entropy = 0;
  for (const c of counts) {
    chi += ((c - expected) * (c - expected)) / expected;
    if (c > 0) entropy -= (c / n) * Math.log2(c / n);
  }
  return { bytes: n, chiSquare: chi, df: 255, pValue: chiSquarePValue(chi, 255), entropyBits: entropy };
}

// ---- pictures --------------------------------------------------------------------------------

/**
 * A `side`×`side` grayscale picture of `values` (row-major; 0 → black, 1 → white, values outside
 * [0, 1] and NaN clamped, NaN to black), upscaled `scale`× nearest-neighbour, as PNG bytes (8-bit grayscale).
 * @throws FedmqError FEDMQ_BAD_CONFIG when `values` does not have side² values or `scale` is not an integer ≥ 1.
 */
export function grayPng(values: ArrayLike<number>, side = SIDE, scale: number = INVERSION_DEMO.scale): Buffer {
  if (values.length !== side * side) throw new FedmqError(ErrorCodes.BAD_CONFIG, `a ${side}×${side} picture needs ${side * side} values, got ${values.length}`);
  if (!Number.isInteger(scale) || scale < 1) throw new FedmqError(ErrorCodes.BAD_CONFIG, `scale must be an integer ≥ 1, got ${scale}`);
  const w = side * scale;
  const png = new PNG({ width: w, height: w });
  for (let y = 0; y < w; y++) {
    for (let x = 0; x < w; x++) {
      const v = values[Math.floor(y / scale) * side + Math.floor(x / scale)];
      const g = Number.isNaN(v) ? 0 : Math.round(255 * Math.min(1, Math.max(0, v)));
      const o = (y * w + x) * 4;
      png.data[o] = g;
      png.data[o + 1] = g;
      png.data[o + 2] = g;
      png.data[o + 3] = 255;
    }
  }
  return PNG.sync.write(png, { colorType: 0 });
}

// ---- the demo --------------------------------------------------------------------------------

/** Options of {@link runInversionDemo}; defaults in {@link INVERSION_DEMO}. */
export interface InversionDemoOptions {
  /** MNIST training example attacked. */
  index?: number;
  /** Seed of the global model. */
  seed?: number;
  /** η of the node's one SGD step. */
  learningRate?: number;
  /** Nodes besides the target in the secure sum (integer ≥ 1); their inputs are the one-step deltas of the next examples. */
  others?: number;
  /** Quantisation clip (weight-delta units). */
  clip?: number;
  /** Quantisation levels 0..2^levelBits − 1. */
  levelBits?: number;
  /** Ring Z_(2^bits) of the secure sum; (others + 1)·(2^levelBits − 1) must be < 2^bits. */
  bits?: number;
  /** Where to write original.png, reconstruction-plain.png and reconstruction-masked.png (none written when absent). */
  outDir?: string;
  /** Upscaling of the pictures (default 8: 224×224). */
  scale?: number;
  /** The MNIST training split, when the caller has it loaded already. */
  train?: Dataset;
}

/** What {@link runInversionDemo} measured. */
export interface InversionDemoResult {
  index: number;
  label: number;
  seed: number;
  learningRate: number;
  /** Weights in the update (199,210 for `mnist-2nn`). */
  parameters: number;
  /** The input as the model sees it (784 values in [0, 1]). */
  input: Float32Array;
  /** Without secure aggregation: the coordinator reconstructs from the float32 delta. */
  plain: Reconstruction & ReconstructionError;
  /** From the quantised but unmasked levels (what the coordinator would hold if only quantisation were applied). */
  quantized: Reconstruction & ReconstructionError & { bytes: ByteStats };
  /** With secure aggregation: from the masked vector the coordinator received for the target node. */
  masked: Reconstruction & ReconstructionError & { bytes: ByteStats };
  /** The secure sum: nodes, ring, and whether the unmasked sum equals the sum of the quantised inputs mod 2^bits. */
  secagg: { nodes: number; survivors: number; bits: number; levelBits: number; clip: number; clipped: number; sumCorrect: boolean };
  /** Paths of the pictures written (when `outDir` was given). */
  files?: { original: string; plain: string; masked: string };
}

function positiveInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${name} must be an integer ≥ ${min}, got ${v}`, { [name]: v });
}

/**
 * The demo: one node's one-step update on MNIST example `index`, reconstructed by the coordinator
 * without secure aggregation, then quantised and masked with SecAgg+ next to `others` other nodes
 * (their one-step deltas on the examples after `index`), and the same reconstruction attempted
 * on the masked vector. Initialises the tfjs backend when needed. Masks come from the CSPRNG, so
 * the masked numbers differ from run to run; the plain attack is a function of `seed` and `index`.
 * @throws FedmqError FEDMQ_BAD_CONFIG on bad options (see {@link InversionDemoOptions}); errors of
 *   `simulateSecAgg` as they are.
 */
export async function runInversionDemo(o: InversionDemoOptions = {}): Promise<InversionDemoResult> {
  const index = o.index ?? INVERSION_DEMO.index;
  const seed = o.seed ?? INVERSION_DEMO.seed;
  const learningRate = o.learningRate ?? INVERSION_DEMO.learningRate;
  const others = o.others ?? INVERSION_DEMO.others;
  const clip = o.clip ?? INVERSION_DEMO.clip;
  const levelBits = o.levelBits ?? INVERSION_DEMO.levelBits;
  const bits = o.bits ?? INVERSION_DEMO.bits;
  positiveInt('others', others, 1);
  positiveInt('levelBits', levelBits, 1);
  positiveInt('bits', bits, 1);
  if (!(clip > 0) || !Number.isFinite(clip)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `clip must be > 0, got ${clip}`);
  if ((others + 1) * (2 ** levelBits - 1) >= 2 ** bits) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `${others + 1} nodes × (2^${levelBits} − 1) does not fit in 2^${bits}: the sum would wrap`);
  }
  await initBackend();
  const train = o.train ?? loadMnist('train');
  const target = await oneStepUpdate({ index, seed, learningRate, train });

  // without secure aggregation: the coordinator holds the delta itself
  const plainRec = reconstructFromDelta(target.delta);
  const plain = { ...plainRec, ...reconstructionError(target.input, plainRec.x) };

  // with secure aggregation: quantise every node's flattened delta, run SecAgg+
  const otherExamples = Array.from({ length: others }, (_, k) => subset(train, [(index + 1 + k) % train.numExamples]));
  const otherDeltas = await oneStepDeltas(target.global, otherExamples, learningRate, seed);
  const q = { clip, levelBits };
  const targetFlat = flatten(target.delta);
  const clipped = targetFlat.reduce((c, v) => c + (Math.abs(v) > clip ? 1 : 0), 0);
  const targetLevels = quantizeVector(targetFlat, q);
  const inputs = new Map<string, Uint32Array>([['target', targetLevels]]);
  otherDeltas.forEach((d, k) => inputs.set(`node-${k + 1}`, quantizeVector(flatten(d), q)));
  const agg = await simulateSecAgg({ inputs, bits });
  const maskedTarget = agg.masked.get('target');
  if (!maskedTarget) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'secure aggregation returned no masked vector for the target node');

  const expectedSum = new Uint32Array(targetLevels.length);
  const modulus = 2 ** bits;
  for (const v of inputs.values()) for (let i = 0; i < v.length; i++) expectedSum[i] = (expectedSum[i] + v[i]) % modulus;
  const sumCorrect = agg.sum.length === expectedSum.length && expectedSum.every((v, i) => v === agg.sum[i]);

  const attempt = (levels: Uint32Array) => {
    const rec = reconstructFromDelta(unflatten(dequantize(levels, q), target.delta));
    return { ...rec, ...reconstructionError(target.input, rec.x), bytes: byteStats(packBits(levels, bits)) };
  };
  const result: InversionDemoResult = {
    index, label: target.label, seed, learningRate,
    parameters: targetLevels.length,
    input: target.input,
    plain,
    quantized: attempt(targetLevels),
    masked: attempt(maskedTarget),
    secagg: { nodes: inputs.size, survivors: agg.survivors.length, bits, levelBits, clip, clipped, sumCorrect },
  };
  if (o.outDir !== undefined) {
    const scale = o.scale ?? INVERSION_DEMO.scale;
    await mkdir(o.outDir, { recursive: true });
    const files = { original: join(o.outDir, 'original.png'), plain: join(o.outDir, 'reconstruction-plain.png'), masked: join(o.outDir, 'reconstruction-masked.png') };
    await writeFile(files.original, grayPng(target.input, SIDE, scale));
    await writeFile(files.plain, grayPng(plain.x, SIDE, scale));
    await writeFile(files.masked, grayPng(result.masked.x, SIDE, scale));
    result.files = files;
  }
  return result;
}
