import { ErrorCodes, FedmqError, globalFromWire, weightsSha256, type FitConfig, type GlobalModelMessage, type NamedTensor } from '@fedmq/protocol';
import { createModel, type Dataset, type FederatedModel } from '@fedmq/ml';

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

/**
 * Runs local training for edge nodes. One trainer keeps one model instance per architecture and
 * runs one training at a time, so many simulated nodes in one thread share a single tfjs runtime
 * and memory stays O(model), not O(nodes × model).
 */
export interface LocalTrainer {
  /**
   * Checks that `weights` fit the architecture `modelName` and `data`.
   * @throws FedmqError FEDMQ_MODEL_MISMATCH (unknown model, tensor names/shapes differ, features differ).
   */
  check(modelName: string, weights: readonly NamedTensor[], data: Dataset): void;
  /**
   * Trains from `global` on `data` (McMahan et al. 2017, Algorithm 1, ClientUpdate) and returns the delta.
   * @throws FedmqError FEDMQ_MODEL_MISMATCH or FEDMQ_TRAINING_FAILED.
   */
  train(req: { modelName: string; global: readonly NamedTensor[]; data: Dataset; config: FitConfig; seed: number }): Promise<LocalResult>;
  /**
   * The weights of a global model message, after checking its sha256. Nodes sharing a trainer
   * share one verified copy per model hash, so N simulated nodes hold one model, not N.
   * @throws FedmqError FEDMQ_HASH_MISMATCH, FEDMQ_BAD_TENSOR.
   */
  globalWeights(msg: GlobalModelMessage): NamedTensor[];
  /** Frees the models. */
  dispose(): void;
}

/** Creates a {@link LocalTrainer} backed by `@fedmq/ml` models (the tfjs backend must be initialised). */
export function createTrainer(): LocalTrainer {
  const models = new Map<string, FederatedModel>();
  let queue: Promise<unknown> = Promise.resolve();
  const verified = new Map<string, NamedTensor[]>(); // sha256 → weights, the two latest

  function globalWeights(msg: GlobalModelMessage): NamedTensor[] {
    const hit = verified.get(msg.sha256);
    if (hit) return hit;
    if (weightsSha256(msg.tensors) !== msg.sha256) {
      throw new FedmqError(ErrorCodes.HASH_MISMATCH, `global model v${msg.version}: sha256 does not match its weights`);
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

  function check(modelName: string, weights: readonly NamedTensor[], data: Dataset): void {
    const m = model(modelName);
    const want = m.info.featureShape.join('x');
    if (data.featureShape.join('x') !== want) {
      throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `local data has features [${data.featureShape}], model ${modelName} expects [${m.info.featureShape}]`, { model: modelName });
    }
    const mine = m.getWeights();
    const byName = new Map(weights.map((w) => [w.name, w]));
    if (byName.size !== mine.length || weights.length !== mine.length) {
      throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `model has ${weights.length} tensors, ${modelName} has ${mine.length}`, { model: modelName });
    }
    for (const t of mine) {
      const w = byName.get(t.name);
      if (!w) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${t.name} missing`, { model: modelName, tensor: t.name });
      if (w.shape.join('x') !== t.shape.join('x') || w.data.length !== t.data.length) {
        throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${t.name} has shape [${w.shape}], expected [${t.shape}]`, { model: modelName, tensor: t.name });
      }
    }
  }

  async function trainNow(req: { modelName: string; global: readonly NamedTensor[]; data: Dataset; config: FitConfig; seed: number }): Promise<LocalResult> {
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
    const delta = req.global.map((g) => {
      const t = trained.get(g.name)!;
      const d = new Float32Array(g.data.length);
      for (let i = 0; i < d.length; i++) d[i] = t.data[i] - g.data[i];
      return { name: g.name, shape: [...g.shape], data: d };
    });
    return { delta, loss: fit.loss, trainMs: fit.durationMs, numExamples: fit.numExamples };
  }

  return {
    check,
    globalWeights,
    train(req) {
      const run = queue.then(() => trainNow(req));
      queue = run.catch(() => undefined);
      return run;
    },
    dispose() {
      for (const m of models.values()) m.dispose();
      models.clear();
      verified.clear();
    },
  };
}
