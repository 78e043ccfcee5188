import { ErrorCodes, FedmqError, globalFromWire, weightsSha256, type FitConfig, type GlobalModelMessage, type NamedTensor } from '@fedmq/protocol';
import { checkDataFits, createModel, type FederatedModel, type LocalDataset } from '@fedmq/ml';

/** What one local training run returns. */
export interface LocalResult {
  /** delta = trained − global, one tensor per global tensor, same names and shapes. */
  delta: NamedTensor[];
  /** Mean training loss over the last local epoch. */
  loss: number;
  /** Wall time of local training, ms. */
  trainMs: number;
  /** Examples trained on (n_k). */
  numExamples: number;
}

/** A training request: one node's ClientUpdate from `global` (McMahan et al. 2017, Algorithm 1). */
export interface TrainRequest {
  /** Model architecture, by registry name (e.g. `mlp-4x3`). */
  modelName: string;
  /** Weights to start from (the global model). Not modified. */
  global: readonly NamedTensor[];
  /** The node's training split. */
  data: LocalDataset;
  /** Local epochs, batch size, learning rate, FedProx μ. */
  config: FitConfig;
  /** Seed of the per-epoch shuffles. */
  seed: number;
}

/** An evaluation request: loss and accuracy of `weights` on `data`. */
export interface EvaluateRequest {
  /** Model architecture, by registry name. */
  modelName: string;
  /** Weights to evaluate (a global model or a node's local model). Not modified. */
  weights: readonly NamedTensor[];
  /** Examples to evaluate on (a node's held-out split). */
  data: LocalDataset;
  /** Examples per forward pass. */
  batchSize: number;
}

/** What {@link LocalTrainer.evaluate} returns. */
export interface LocalEvaluation {
  /** Mean loss per example (classification: softmax cross-entropy, nats). */
  loss: number;
  /** Fraction of examples classified correctly, [0, 1] (NaN for reconstruction models). */
  accuracy: number;
  /** Examples evaluated. */
  numExamples: number;
}

/**
 * Runs local training and evaluation for edge nodes. One trainer keeps one model instance per
 * architecture and runs one job (training or evaluation) at a time, so many simulated nodes in
 * one thread share a single tfjs runtime and memory stays O(model), not O(nodes × model).
 */
export interface LocalTrainer {
  /**
   * Checks that `weights` fit the architecture `modelName` and `data` (tensor names and shapes;
   * the data's feature count and classes, `checkDataFits` of @fedmq/ml). A successful check is
   * remembered per (`sha256` when given, else the identity of the `weights` array; `modelName`;
   * `data.featureShape`; `data.numClasses`), so the N nodes of one worker that share a verified
   * global model check it once. Weights must not be mutated after a check.
   * @throws FedmqError FEDMQ_MODEL_MISMATCH (unknown model, tensor names/shapes differ, features
   *   differ, more classes than the model has).
   */
  check(modelName: string, weights: readonly NamedTensor[], data: LocalDataset, sha256?: string): void;
  /**
   * Trains from `req.global` on `req.data` (McMahan et al. 2017, Algorithm 1, ClientUpdate) and
   * returns the delta. Queued behind the trainer's other jobs.
   * @throws FedmqError FEDMQ_MODEL_MISMATCH or FEDMQ_TRAINING_FAILED.
   */
  train(req: TrainRequest): Promise<LocalResult>;
  /**
   * Evaluates `req.weights` on `req.data` without training (federated evaluation, docs/protocol.md
   * §5.4). Queued behind the trainer's other jobs, like {@link train}.
   * @throws FedmqError FEDMQ_MODEL_MISMATCH, or FEDMQ_TRAINING_FAILED when the evaluation itself fails.
   */
  evaluate(req: EvaluateRequest): Promise<LocalEvaluation>;
  /**
   * The weights of a global model message, after checking its sha256. Nodes sharing a trainer
   * share one verified copy per model hash (the two latest), so N simulated nodes hold one model, not N.
   * The returned tensors are shared: do not modify them.
   * @throws FedmqError FEDMQ_HASH_MISMATCH, FEDMQ_BAD_TENSOR.
   */
  globalWeights(msg: GlobalModelMessage): NamedTensor[];
  /** Frees the models. */
  dispose(): void;
}

/** Successful checks remembered by sha256 (the most recent ones). */
const MAX_CHECKED_HASHES = 64;

/** Creates a {@link LocalTrainer} backed by `@fedmq/ml` models (the tfjs backend must be initialised). */
export function createTrainer(): LocalTrainer {
  const models = new Map<string, FederatedModel>();
  let queue: Promise<unknown> = Promise.resolve();
  const verified = new Map<string, NamedTensor[]>(); // sha256 → weights, the two latest
  const checkedByHash = new Set<string>(); // `${sha256}|${model}|${featureShape}`, oldest first
  const checkedByIdentity = new WeakMap<readonly NamedTensor[], Set<string>>(); // weights → `${model}|${featureShape}`

  function globalWeights(msg: GlobalModelMessage): NamedTensor[] {
    const hit = verified.get(msg.sha256);
    if (hit) return hit;
    if (weightsSha256(msg.tensors) !== msg.sha256) {
      throw new FedmqError(ErrorCodes.HASH_MISMATCH, `global model v${msg.version}: sha256 does not match its weights`, { version: msg.version });
    }
    const weights = globalFromWire(msg.tensors).map((t) => ({ ...t, data: t.data.slice() })); // own the bytes, not the payload
    verified.set(msg.sha256, weights);
    if (verified.size > 2) verified.delete(verified.keys().next().value!);
    return weights;
  }

  function model(name: string): FederatedModel {
    let m = models.get(name);
    if (!m) {
      try {
        m = createModel(name, 0);
      } catch (err) {
        throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `unknown model ${JSON.stringify(name)}`, { model: name }, { cause: err });
      }
      models.set(name, m);
    }
    return m;
  }

  function checkNow(modelName: string, weights: readonly NamedTensor[], data: LocalDataset): void {
    const m = model(modelName);
    try {
      checkDataFits(data, m.info, 'local data');
    } catch (err) {
      throw new FedmqError(ErrorCodes.MODEL_MISMATCH, (err as Error).message, { model: modelName }, { cause: err });
    }
    const mine = m.weightShapes();
    const byName = new Map(weights.map((w) => [w.name, w]));
    if (byName.size !== mine.length || weights.length !== mine.length) {
      throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `model has ${weights.length} tensors, ${modelName} has ${mine.length}`, { model: modelName });
    }
    for (const t of mine) {
      const w = byName.get(t.name);
      if (!w) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${t.name} missing`, { model: modelName, tensor: t.name });
      if (w.shape.join('x') !== t.shape.join('x') || w.data.length !== t.shape.reduce((a, b) => a * b, 1)) {
        throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${t.name} has shape [${w.shape}], expected [${t.shape}]`, { model: modelName, tensor: t.name });
      }
    }
  }

  function check(modelName: string, weights: readonly NamedTensor[], data: LocalDataset, sha256?: string): void {
    const what = `${modelName}|${data.featureShape.join('x')}|${data.numClasses}`;
    if (sha256 !== undefined && checkedByHash.has(`${sha256}|${what}`)) return;
    const byIdentity = checkedByIdentity.get(weights);
    if (byIdentity?.has(what)) return;
    checkNow(modelName, weights, data);
    if (sha256 !== undefined) {
      checkedByHash.add(`${sha256}|${what}`);
      if (checkedByHash.size > MAX_CHECKED_HASHES) checkedByHash.delete(checkedByHash.values().next().value!);
    }
    if (byIdentity) byIdentity.add(what);
    else checkedByIdentity.set(weights, new Set([what]));
  }

  async function trainNow(req: TrainRequest): Promise<LocalResult> {
    check(req.modelName, req.global, req.data);
    const m = model(req.modelName);
    m.setWeights([...req.global]);
    let fit: { loss: number; numExamples: number; durationMs: number };
    try {
      fit = await m.fit(req.data, { ...req.config, seed: req.seed });
    } catch (err) {
      throw new FedmqError(ErrorCodes.TRAINING_FAILED, `local training failed: ${(err as Error).message}`, {}, { cause: err });
    }
    const trained = new Map(m.getWeights().map((w) => [w.name, w]));
    // trained − global, in place in getWeights's copies (the same float32 subtraction, one model-sized array fewer per round)
    const delta = req.global.map((g) => {
      const d = trained.get(g.name)!.data;
      for (let i = 0; i < d.length; i++) d[i] -= g.data[i];
      return { name: g.name, shape: [...g.shape], data: d };
    });
    return { delta, loss: fit.loss, trainMs: fit.durationMs, numExamples: fit.numExamples };
  }

  async function evaluateNow(req: EvaluateRequest): Promise<LocalEvaluation> {
    check(req.modelName, req.weights, req.data);
    const m = model(req.modelName);
    m.setWeights([...req.weights]);
    try {
      const r = await m.evaluate(req.data, req.batchSize);
      return { loss: r.loss, accuracy: r.accuracy, numExamples: r.numExamples };
    } catch (err) {
      throw new FedmqError(ErrorCodes.TRAINING_FAILED, `local evaluation failed: ${(err as Error).message}`, {}, { cause: err });
    }
  }

  /** Runs `job` after every job queued before it (one tfjs model per architecture is shared). */
  function enqueue<T>(job: () => Promise<T>): Promise<T> {
    // a turn of the event loop before each job: a thread training many nodes back to back still serves their sockets
    const run = queue.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(job);
    queue = run.catch(() => undefined);
    return run;
  }

  return {
    check,
    globalWeights,
    train: (req) => enqueue(() => trainNow(req)),
    evaluate: (req) => enqueue(() => evaluateNow(req)),
    dispose() {
      for (const m of models.values()) m.dispose();
      models.clear();
      verified.clear();
      checkedByHash.clear();
    },
  };
}
