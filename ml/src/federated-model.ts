/**
 * `FederatedModel`: a TensorFlow.js layers model seen through the operations federated learning
 * needs — named weights in and out, local training, evaluation, saving.
 */
import * as tf from '@tensorflow/tfjs';
import type { NamedTensor } from '@fedmq/protocol';
import { assertBackendReady } from './backend.ts';
import { featureRange, featureSize, gatherFeatures, type LocalDataset } from './data.ts';
import { checkDataFits } from './check.ts';
import { FedmqMlError } from './errors.ts';
import { fileSystemHandler } from './io.ts';
import { getModelDefinition, type ModelDefinition, type ModelInfo } from './models/registry.ts';
import { createRng, permutation } from './rng.ts';

/**
 * Local training options (one node, one round).
 *
 * The optimizer state (momentum buffers) starts at zero on every `fit` call, as in FedAvg where a
 * node receives only the global weights.
 */
export interface FitOptions {
  /** Local epochs E (integer ≥ 1). */
  epochs: number;
  /** Mini-batch size B (integer ≥ 1); the last batch of an epoch may be smaller. */
  batchSize: number;
  /** Learning rate η (> 0). */
  learningRate: number;
  /** Seed for the per-epoch shuffle (default 0). Same seed + data + weights → same result on a backend. */
  seed?: number;
  /** `'sgd'` (default): w ← w − η·g. `'momentum'`: v ← μ·v + g; w ← w − η·v (tf.train.momentum semantics). */
  optimizer?: 'sgd' | 'momentum';
  /** Momentum μ for `optimizer: 'momentum'` (default 0.9, must be in [0, 1)). */
  momentum?: number;
  /**
   * Training engine. `'auto'` (default): the hand-written dense path when the model qualifies
   * (Sequential stack of biased Dense layers, ReLU/linear hidden, softmax output), else
   * tfjs `model.fit`. `'layers'`: always `model.fit` (for verification and benchmarks).
   */
  engine?: 'auto' | 'layers';
  /**
   * Proximal coefficient μ of FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous
   * Networks", MLSys, arXiv:1812.06127, eq. (2)): the node minimises
   * h(w) = F(w) + (μ/2)·‖w − w_global‖² instead of F(w), where w_global is a copy of the weights
   * at the start of this `fit` call (the global model the node just received) and ‖·‖ runs over
   * every trainable weight, biases included. Each step uses the gradient ∇F(w) + μ·(w − w_global)
   * in place of ∇F(w), on both engines, with SGD and momentum alike. Finite, ≥ 0; default 0, which
   * is plain FedAvg local training (the same code path as when the option is absent, bitwise).
   * With plain SGD the proximal part contracts w − w_global by (1 − η·μ) per step, so keep
   * η·μ < 2 or it diverges. Not to be confused with {@link FitOptions.momentum}.
   * Costs one extra copy of the trainable weights per call.
   */
  proximalMu?: number;
}

/**
 * Result of {@link FederatedModel.fit}: the local training run itself (loss, examples, time).
 * Not to be confused with `@fedmq/coordinator`'s `FitResult`, a node's accepted update.
 */
export interface LocalTrainingResult {
  /**
   * Mean training loss over the examples of the LAST epoch (each example's loss measured on the
   * batch's pre-update weights, as Keras reports it). Always the data loss F: the FedProx
   * proximal term (μ/2)·‖w − w_global‖² is not included.
   */
  loss: number;
  /** Number of local training examples (not multiplied by epochs). */
  numExamples: number;
  /** Wall time of the fit call in ms, including tensor upload. */
  durationMs: number;
}

/**
 * Result of {@link FederatedModel.evaluate}: loss and accuracy of the model on a dataset (a node's
 * held-out split or the coordinator's test set). Not the wire message `EvaluateResult` of `@fedmq/protocol`.
 */
export interface ModelEvaluation {
  /** Classification: mean softmax cross-entropy (nats). Reconstruction: mean squared error per value. */
  loss: number;
  /** Classification: fraction of examples whose argmax equals the label. Reconstruction: NaN. */
  accuracy: number;
  /** Number of evaluated examples. */
  numExamples: number;
}

/** A model being trained federatedly. Weights are exchanged as {@link NamedTensor}s with stable names. */
export interface FederatedModel {
  /** What the model is (name, input shape, classes, task). */
  readonly info: ModelInfo;
  /**
   * Copies of all weights (trainable and not) in a fixed order, named `${layerName}/${weight}`
   * (e.g. `fc1/kernel`, `fc1/bias`); identical names for every instance of the same model.
   */
  getWeights(): NamedTensor[];
  /** Names and shapes of {@link getWeights}'s tensors, in the same order, without copying any value. */
  weightShapes(): { name: string; shape: number[] }[];
  /**
   * Replaces all weights, matching by name (order does not matter). Validates everything before
   * changing anything.
   * @throws FedmqMlError `ML_WEIGHTS_MISMATCH` on a missing, extra or duplicate name, a wrong
   *   shape, or `data.length` ≠ product of shape; the model is left unchanged.
   */
  setWeights(weights: NamedTensor[]): void;
  /**
   * Trains on `data` for `opts.epochs` epochs of seeded-shuffled mini-batches.
   * Dense-only classifiers (like `mnist-2nn`) use a hand-written backward pass (same maths as
   * `model.fit`, ~1.7× faster at B=32 on wasm) that hands the backend one gathered mini-batch
   * at a time; other models use `model.fit`. `data` may keep its features as bytes (a
   * ByteDataset): the same results as on their float32 values. With
   * `opts.proximalMu` > 0 this is FedProx local training (see {@link FitOptions.proximalMu}).
   * @throws FedmqMlError `ML_BAD_DATA` if the data's feature size or classes do not fit the
   *   model; `ML_BAD_OPTIONS` on invalid options (including a negative or non-finite
   *   `proximalMu`).
   */
  fit(data: LocalDataset, opts: FitOptions): Promise<LocalTrainingResult>;
  /**
   * Evaluates on `data` in batches of `batchSize` (default 1000) without changing weights.
   * @throws FedmqMlError `ML_BAD_DATA` if the data does not fit the model.
   */
  evaluate(data: LocalDataset, batchSize?: number): Promise<ModelEvaluation>;
  /**
   * Model outputs for every example: `numExamples × outputSize` values, row-major (class
   * probabilities for classifiers, reconstructions for autoencoders).
   */
  predict(data: LocalDataset, batchSize?: number): Promise<Float32Array>;
  /** Writes `dir/model.json` + `dir/weights.bin` (TensorFlow.js layers format), creating `dir`. */
  save(dir: string): Promise<void>;
  /** Frees all tensors; the instance must not be used afterwards. Idempotent. */
  dispose(): void;
  /** The underlying tfjs model (advanced use; do not dispose it directly). */
  readonly layersModel: tf.LayersModel;
}

function badOptions(msg: string): never {
  throw new FedmqMlError('ML_BAD_OPTIONS', msg);
}

/**
 * Builds a fresh instance of the registered model `name`, initial weights a function of `seed`.
 * {@link initBackend} must have completed.
 * @param seed initialiser seed (default 0).
 * @throws FedmqMlError `ML_UNKNOWN_MODEL` if no such model is registered; `ML_BACKEND_UNAVAILABLE`
 *   if the backend is not initialised.
 */
export function createModel(name: string, seed = 0): FederatedModel {
  const def = getModelDefinition(name);
  assertBackendReady();
  return new TfFederatedModel(def, def.build(seed));
}

interface WeightSlot {
  name: string;
  variable: tf.LayerVariable;
  shape: number[];
}

function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toLowerCase();
}

/** `layer.name` unless it is a tfjs automatic name (`dense_Dense3`), else `layer{index}`. */
function stableLayerName(layer: tf.layers.Layer, index: number): string {
  const cls = layer.getClassName();
  const auto = new RegExp(`^${snake(cls)}_${cls}\\d+$`);
  return auto.test(layer.name) ? `layer${index}` : layer.name;
}

interface DenseSpec {
  kernel: tf.LayerVariable;
  bias: tf.LayerVariable;
  activation: 'relu' | 'linear' | 'softmax';
}

/** Returns the dense chain if the model is a Sequential stack of biased Dense layers (ReLU/linear, softmax last). */
function denseChain(model: tf.LayersModel, task: ModelInfo['task']): DenseSpec[] | null {
  if (task !== 'classification' || !(model instanceof tf.Sequential)) return null;
  if (model.inputs.length !== 1 || model.inputs[0].shape.length !== 2) return null;
  const out: DenseSpec[] = [];
  for (let i = 0; i < model.layers.length; i++) {
    const layer = model.layers[i];
    if (layer.getClassName() !== 'Dense') return null;
    const cfg = layer.getConfig();
    const act = cfg['activation'];
    const last = i === model.layers.length - 1;
    if (!cfg['useBias'] || layer.weights.length !== 2) return null;
    if (last ? act !== 'softmax' : act !== 'relu' && act !== 'linear') return null;
    const kernel = layer.weights.find((w) => w.originalName.endsWith('/kernel'));
    const bias = layer.weights.find((w) => w.originalName.endsWith('/bias'));
    if (!kernel || !bias) return null;
    out.push({ kernel, bias, activation: act as DenseSpec['activation'] });
  }
  return out.length > 0 ? out : null;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
/** Longest stretch of training between two turns of the event loop, ms: the thread's MQTT sockets are served at least this often. */
const YIELD_EVERY_MS = 10;

/**
 * FedProx for tfjs `model.fit`: wraps an optimizer and, before delegating each step, adds
 * μ·(w − w_anchor) to the gradient of every variable it was given, w_anchor being a copy of the
 * variable taken at construction. That is the exact gradient of F(w) + (μ/2)·‖w − w_anchor‖²
 * while the compiled loss, and so the loss Keras reports, stays F. Owns the inner optimizer and
 * the copies: `dispose()` frees them.
 */
class ProximalOptimizer extends tf.Optimizer {
  static readonly className = 'FedmqProximalOptimizer';
  private readonly muT: tf.Scalar;
  private readonly anchors = new Map<string, { variable: tf.Variable; anchor: tf.Tensor }>();

  constructor(
    private readonly inner: tf.Optimizer,
    private readonly mu: number,
    variables: readonly tf.Variable[],
  ) {
    super();
    this.muT = tf.scalar(mu);
    for (const variable of variables) this.anchors.set(variable.name, { variable, anchor: tf.clone(variable) });
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | { name: string; tensor: tf.Tensor }[]): void {
    const list = Array.isArray(variableGradients)
      ? variableGradients
      : Object.keys(variableGradients).map((name) => ({ name, tensor: variableGradients[name] }));
    const adjusted = tf.tidy(() =>
      list.map(({ name, tensor }) => {
        const a = this.anchors.get(name);
        if (!a) throw new FedmqMlError('ML_BAD_OPTIONS', `proximal term: no anchor for variable '${name}'`);
        return { name, tensor: tf.add(tensor, tf.mul(tf.sub(a.variable, a.anchor), this.muT)) };
      }),
    );
    try {
      this.inner.applyGradients(adjusted);
    } finally {
      tf.dispose(adjusted.map((g) => g.tensor));
    }
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...this.inner.getConfig(), proximalMu: this.mu };
  }

  override dispose(): void {
    this.inner.dispose();
    tf.dispose([this.muT, ...[...this.anchors.values()].map((a) => a.anchor)]);
    this.anchors.clear();
    super.dispose();
  }
}

class TfFederatedModel implements FederatedModel {
  readonly info: ModelInfo;
  readonly layersModel: tf.LayersModel;
  private readonly slots: WeightSlot[];
  private readonly dense: DenseSpec[] | null;
  private disposed = false;

  constructor(def: ModelDefinition, model: tf.LayersModel) {
    this.info = {
      name: def.name,
      description: def.description,
      featureShape: [...def.featureShape],
      numClasses: def.numClasses,
      task: def.task,
    };
    this.layersModel = model;
    this.slots = [];
    const seen = new Set<string>();
    model.layers.forEach((layer, i) => {
      const lname = stableLayerName(layer, i);
      for (const w of layer.weights) {
        const short = w.originalName.split('/').pop() ?? w.originalName;
        let name = `${lname}/${short}`;
        for (let k = 1; seen.has(name); k++) name = `${lname}/${short}_${k}`;
        seen.add(name);
        this.slots.push({ name, variable: w, shape: [...w.shape] as number[] });
      }
    });
    this.dense = denseChain(model, def.task);
  }

  private checkAlive(): void {
    if (this.disposed) throw new FedmqMlError('ML_BACKEND_UNAVAILABLE', 'model has been disposed');
  }

  getWeights(): NamedTensor[] {
    this.checkAlive();
    return this.slots.map((s) => ({
      name: s.name,
      shape: [...s.shape],
      data: Float32Array.from(s.variable.read().dataSync() as Float32Array),
    }));
  }

  weightShapes(): { name: string; shape: number[] }[] {
    this.checkAlive();
    return this.slots.map((s) => ({ name: s.name, shape: [...s.shape] }));
  }

  setWeights(weights: NamedTensor[]): void {
    this.checkAlive();
    const byName = new Map<string, NamedTensor>();
    for (const w of weights) {
      if (byName.has(w.name)) throw new FedmqMlError('ML_WEIGHTS_MISMATCH', `duplicate weight '${w.name}'`);
      byName.set(w.name, w);
    }
    for (const s of this.slots) {
      const w = byName.get(s.name);
      if (!w) throw new FedmqMlError('ML_WEIGHTS_MISMATCH', `missing weight '${s.name}'`);
      if (w.shape.length !== s.shape.length || w.shape.some((d, i) => d !== s.shape[i])) {
        throw new FedmqMlError('ML_WEIGHTS_MISMATCH', `weight '${s.name}' has shape [${w.shape}], model expects [${s.shape}]`);
      }
      const n = featureSize(s.shape);
      if (!w.data || w.data.length !== n) {
        throw new FedmqMlError('ML_WEIGHTS_MISMATCH', `weight '${s.name}' has ${w.data?.length} values, expected ${n}`);
      }
    }
    if (byName.size !== this.slots.length) {
      const known = new Set(this.slots.map((s) => s.name));
      const extra = [...byName.keys()].filter((k) => !known.has(k));
      throw new FedmqMlError('ML_WEIGHTS_MISMATCH', `unknown weight(s): ${extra.join(', ')}`);
    }
    for (const s of this.slots) {
      const w = byName.get(s.name)!;
      const t = tf.tensor(w.data, s.shape, 'float32');
      s.variable.write(t);
      t.dispose();
    }
  }

  private checkData(data: LocalDataset): void {
    checkDataFits(data, this.info);
    const f = featureSize(this.info.featureShape);
    if (data.x.length !== data.numExamples * f || data.y.length !== data.numExamples) {
      throw new FedmqMlError('ML_BAD_DATA', `dataset sizes disagree: x ${data.x.length}, y ${data.y.length}, numExamples ${data.numExamples}`);
    }
  }

  async fit(data: LocalDataset, opts: FitOptions): Promise<LocalTrainingResult> {
    this.checkAlive();
    const t0 = performance.now();
    const { epochs, batchSize, learningRate } = opts;
    if (!Number.isInteger(epochs) || epochs < 1) badOptions(`epochs must be an integer >= 1, got ${epochs}`);
    if (!Number.isInteger(batchSize) || batchSize < 1) badOptions(`batchSize must be an integer >= 1, got ${batchSize}`);
    if (!(learningRate > 0) || !Number.isFinite(learningRate)) badOptions(`learningRate must be > 0, got ${learningRate}`);
    const optimizer = opts.optimizer ?? 'sgd';
    if (optimizer !== 'sgd' && optimizer !== 'momentum') badOptions(`unknown optimizer '${String(optimizer)}'`);
    const momentum = optimizer === 'momentum' ? (opts.momentum ?? 0.9) : 0;
    if (!(momentum >= 0 && momentum < 1)) badOptions(`momentum must be in [0, 1), got ${momentum}`);
    const proximalMu = opts.proximalMu ?? 0;
    if (!(typeof proximalMu === 'number' && Number.isFinite(proximalMu) && proximalMu >= 0)) {
      badOptions(`proximalMu must be a finite number >= 0, got ${String(proximalMu)}`);
    }
    this.checkData(data);
    const n = data.numExamples;
    if (n === 0) return { loss: NaN, numExamples: 0, durationMs: performance.now() - t0 };
    const rng = createRng(opts.seed ?? 0);
    const loss = this.dense && opts.engine !== 'layers'
      ? await this.fitDense(this.dense, data, epochs, batchSize, learningRate, momentum, proximalMu, rng)
      : await this.fitGeneric(data, epochs, batchSize, learningRate, momentum, proximalMu, rng);
    return { loss, numExamples: n, durationMs: performance.now() - t0 };
  }

  /**
   * Hand-written forward/backward for a Dense chain; mathematically the same as model.fit with
   * SGD/momentum and softmax cross-entropy. With `proxMu` > 0 each gradient (kernels and biases)
   * gets + μ·(w − w_start) before the optimizer step (FedProx).
   */
  private async fitDense(
    layers: DenseSpec[],
    data: LocalDataset,
    epochs: number,
    batchSize: number,
    lr: number,
    momentum: number,
    proxMu: number,
    rng: () => number,
  ): Promise<number> {
    const n = data.numExamples;
    const f = featureSize(data.featureShape);
    const k = this.info.numClasses;
    // One mini-batch at a time goes to the backend: its rows and one-hot labels are gathered here
    // into two reused buffers (what tf.gather and tf.oneHot computed, bit for bit), so the backend
    // never holds a copy of the dataset (docs/scale.md, "Edge footprint"). Every tensor made from
    // them is disposed within its batch's tidy, before the buffers are refilled.
    const rows = Math.min(batchSize, n);
    const xBuf = new Float32Array(rows * f);
    const yBuf = new Float32Array(rows * k);
    const lrT = tf.scalar(lr);
    const muT = tf.scalar(momentum);
    const vars = layers.flatMap((l) => [l.kernel.read(), l.bias.read()]);
    const velocity = momentum > 0 ? vars.map((v) => tf.zerosLike(v)) : null;
    // FedProx anchor w_global: the weights at the start of this call (copies, O(model)).
    const anchors = proxMu > 0 ? vars.map((v) => tf.clone(v)) : null;
    const proxMuT = anchors ? tf.scalar(proxMu) : null;
    let lossSum: tf.Tensor | null = null;
    let lastYield = performance.now();
    try {
      for (let epoch = 0; epoch < epochs; epoch++) {
        const lastEpoch = epoch === epochs - 1;
        const order = permutation(n, rng);
        for (let start = 0, b = 0; start < n; start += batchSize, b++) {
          const end = Math.min(n, start + batchSize);
          const m = end - start;
          gatherFeatures(data, order, start, end, xBuf);
          yBuf.fill(0, 0, m * k);
          for (let i = 0; i < m; i++) {
            const c = data.y[order[start + i]];
            if (c >= 0 && c < k) yBuf[i * k + c] = 1; // as tf.oneHot: an out-of-range label is a row of zeros
          }
          const batchLoss = tf.tidy((): tf.Tensor | undefined => {
            const xb = tf.tensor2d(xBuf.subarray(0, m * f), [m, f], 'float32');
            const yb = tf.tensor2d(yBuf.subarray(0, m * k), [m, k], 'float32');
            // Forward.
            const acts: tf.Tensor2D[] = [xb as tf.Tensor2D];
            let z: tf.Tensor2D = xb as tf.Tensor2D;
            for (let l = 0; l < layers.length; l++) {
              z = tf.add(tf.matMul(acts[l], layers[l].kernel.read() as tf.Tensor2D), layers[l].bias.read()) as tf.Tensor2D;
              if (l < layers.length - 1) acts.push(layers[l].activation === 'relu' ? tf.relu(z) : z);
            }
            const logp = tf.logSoftmax(z);
            const bl = lastEpoch ? tf.neg(tf.sum(tf.mul(yb, logp))) : undefined;
            // Backward: dL/dz_L = (softmax − onehot) / m for the batch-mean loss.
            let d: tf.Tensor2D = tf.div(tf.sub(tf.exp(logp), yb), m) as tf.Tensor2D;
            const grads: tf.Tensor[] = new Array(layers.length * 2);
            for (let l = layers.length - 1; l >= 0; l--) {
              // Explicit transposes: see patchWasmKernels for why.
              grads[2 * l] = tf.matMul(tf.transpose(acts[l]), d);
              grads[2 * l + 1] = tf.sum(d, 0);
              if (l > 0) {
                const back = tf.matMul(d, tf.transpose(layers[l].kernel.read() as tf.Tensor2D)) as tf.Tensor2D;
                d = layers[l - 1].activation === 'relu' ? (tf.mul(back, tf.step(acts[l])) as tf.Tensor2D) : back;
              }
            }
            if (anchors) {
              // ∇[(μ/2)‖w − w_global‖²] = μ(w − w_global), at the same pre-update w as ∇F.
              for (let i = 0; i < vars.length; i++) grads[i] = tf.add(grads[i], tf.mul(tf.sub(vars[i], anchors[i]), proxMuT!));
            }
            for (let i = 0; i < vars.length; i++) {
              if (velocity) {
                const v = tf.add(tf.mul(velocity[i], muT), grads[i]);
                velocity[i].dispose();
                velocity[i] = tf.keep(v);
                (vars[i] as tf.Variable).assign(tf.sub(vars[i], tf.mul(v, lrT)));
              } else {
                (vars[i] as tf.Variable).assign(tf.sub(vars[i], tf.mul(grads[i], lrT)));
              }
            }
            return bl;
          }) as tf.Tensor | undefined;
          if (batchLoss) {
            const prev: tf.Tensor | null = lossSum;
            lossSum = prev ? tf.add(prev, batchLoss) : batchLoss;
            if (prev) {
              prev.dispose();
              batchLoss.dispose();
            }
          }
          if (performance.now() - lastYield >= YIELD_EVERY_MS) lastYield = await yieldToEventLoop().then(() => performance.now());
        }
      }
      const total = lossSum ? (await (lossSum as tf.Tensor).data())[0] : NaN;
      return total / n;
    } finally {
      tf.dispose([lrT, muT]);
      if (velocity) tf.dispose(velocity);
      if (anchors) tf.dispose([...anchors, proxMuT!]);
      if (lossSum) (lossSum as tf.Tensor).dispose();
    }
  }

  /**
   * tfjs `model.fit`, one call per epoch on a seeded permutation. With `proxMu` > 0 the optimizer
   * is wrapped in a {@link ProximalOptimizer}, so the compiled loss (and the reported loss) stays
   * the data loss while every step uses ∇F + μ·(w − w_start).
   */
  private async fitGeneric(
    data: LocalDataset,
    epochs: number,
    batchSize: number,
    lr: number,
    momentum: number,
    proxMu: number,
    rng: () => number,
  ): Promise<number> {
    const n = data.numExamples;
    const model = this.layersModel;
    const base = momentum > 0 ? tf.train.momentum(lr, momentum) : tf.train.sgd(lr);
    const optimizer = proxMu > 0
      ? new ProximalOptimizer(base, proxMu, model.trainableWeights.map((w) => w.read() as tf.Variable))
      : base;
    const reconstruction = this.info.task === 'reconstruction';
    model.compile({ optimizer, loss: reconstruction ? 'meanSquaredError' : 'categoricalCrossentropy' });
    const x = tf.tensor(featureRange(data, 0, n), [n, ...this.info.featureShape], 'float32');
    const y = reconstruction ? x : tf.tidy(() => tf.oneHot(tf.tensor1d(data.y, 'int32'), this.info.numClasses).toFloat());
    let loss = NaN;
    try {
      for (let epoch = 0; epoch < epochs; epoch++) {
        const idx = tf.tensor1d(permutation(n, rng), 'int32');
        const xs = tf.gather(x, idx);
        const ys = reconstruction ? xs : tf.gather(y, idx);
        idx.dispose();
        try {
          const h = await model.fit(xs, ys, { epochs: 1, batchSize, shuffle: false, verbose: 0 });
          loss = Number(h.history['loss'][0]);
        } finally {
          xs.dispose();
          if (ys !== xs) ys.dispose();
        }
      }
      return loss;
    } finally {
      x.dispose();
      if (y !== x) y.dispose();
      optimizer.dispose();
    }
  }

  async evaluate(data: LocalDataset, batchSize = 1000): Promise<ModelEvaluation> {
    this.checkAlive();
    this.checkData(data);
    const n = data.numExamples;
    if (n === 0) return { loss: NaN, accuracy: NaN, numExamples: 0 };
    const f = featureSize(data.featureShape);
    const reconstruction = this.info.task === 'reconstruction';
    let lossSum = 0;
    let correct = 0;
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const [l, c] = tf.tidy(() => {
        const xb = tf.tensor(featureRange(data, start, end), [end - start, ...this.info.featureShape], 'float32');
        const out = this.layersModel.predict(xb) as tf.Tensor;
        if (reconstruction) {
          return [tf.sum(tf.squaredDifference(out, xb)), tf.scalar(0)];
        }
        const labels = tf.tensor1d(data.y.subarray(start, end), 'int32');
        const p = tf.clipByValue(out, 1e-7, 1 - 1e-7);
        const ce = tf.neg(tf.sum(tf.mul(tf.oneHot(labels, this.info.numClasses), tf.log(p))));
        const acc = tf.sum(tf.cast(tf.equal(tf.argMax(out, 1), labels), 'float32'));
        return [ce, acc];
      });
      const [lv, cv] = await Promise.all([l.data(), c.data()]);
      l.dispose();
      c.dispose();
      lossSum += lv[0];
      correct += cv[0];
    }
    return reconstruction
      ? { loss: lossSum / (n * f), accuracy: NaN, numExamples: n }
      : { loss: lossSum / n, accuracy: correct / n, numExamples: n };
  }

  async predict(data: LocalDataset, batchSize = 1000): Promise<Float32Array> {
    this.checkAlive();
    this.checkData(data);
    const n = data.numExamples;
    const parts: Float32Array[] = [];
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const out = tf.tidy(() => {
        const xb = tf.tensor(featureRange(data, start, end), [end - start, ...this.info.featureShape], 'float32');
        return this.layersModel.predict(xb) as tf.Tensor;
      });
      parts.push((await out.data()) as Float32Array);
      out.dispose();
    }
    const total = parts.reduce((s, p) => s + p.length, 0);
    const res = new Float32Array(total);
    let o = 0;
    for (const p of parts) {
      res.set(p, o);
      o += p.length;
    }
    return res;
  }

  async save(dir: string): Promise<void> {
    this.checkAlive();
    await this.layersModel.save(fileSystemHandler(dir));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.layersModel.dispose();
  }
}
