/**
 * Per-example losses of a classifier: what a membership-inference attack reads (Yeom et al. 2018,
 * `lossThresholdAuc` in @fedmq/privacy).
 */
import * as tf from '@tensorflow/tfjs';
import { checkDataFits } from './check.ts';
import { featureRange, featureSize, type LocalDataset } from './data.ts';
import { FedmqMlError } from './errors.ts';
import type { FederatedModel } from './federated-model.ts';

/**
 * The categorical cross-entropy of `model` on each example of `data`, in nats:
 * loss_i = −log p_i[y_i], p_i the model's softmax output clipped to [1e-7, 1 − 1e-7], exactly as
 * {@link FederatedModel.evaluate} computes its loss, whose value is the mean of these (up to
 * float32 rounding: evaluate sums each batch in float32). An out-of-range label gives 0, as in
 * evaluate. The examples go through the model `batchSize` at a time, each batch inside
 * `tf.tidy`, so the memory used is O(batchSize · model width) besides the result; the weights are
 * not changed.
 *
 * @param model a classification model, e.g. `createModel('mnist-2nn')` after `setWeights(globalWeights)`.
 * @param data N examples that fit the model (float32 features or pixel bytes).
 * @param batchSize examples per forward pass, an integer ≥ 1 (default 1000).
 * @returns N losses (float32), `result[i]` that of example i.
 * @throws FedmqMlError `ML_BAD_OPTIONS` for a reconstruction model (its per-example errors are
 *   `anomalyScores`) or a bad `batchSize`; `ML_BAD_DATA` if the data does not fit the model or its
 *   sizes disagree; `ML_BACKEND_UNAVAILABLE` if the model was disposed.
 */
export async function perExampleLoss(model: FederatedModel, data: LocalDataset, batchSize = 1000): Promise<Float32Array> {
  if (model.info.task !== 'classification') {
    throw new FedmqMlError('ML_BAD_OPTIONS', `perExampleLoss needs a classification model; ${model.info.name} is a ${model.info.task} model`);
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new FedmqMlError('ML_BAD_OPTIONS', `batchSize must be an integer >= 1, got ${batchSize}`);
  model.weightShapes(); // throws ML_BACKEND_UNAVAILABLE once disposed
  checkDataFits(data, model.info);
  const n = data.numExamples;
  const f = featureSize(model.info.featureShape);
  if (data.x.length !== n * f || data.y.length !== n) {
    throw new FedmqMlError('ML_BAD_DATA', `dataset sizes disagree: x ${data.x.length}, y ${data.y.length}, numExamples ${n}`);
  }
  const out = new Float32Array(n);
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const losses = tf.tidy(() => {
      const xb = tf.tensor(featureRange(data, start, end), [end - start, ...model.info.featureShape], 'float32');
      const p = tf.clipByValue(model.layersModel.predict(xb) as tf.Tensor, 1e-7, 1 - 1e-7);
      const labels = tf.tensor1d(data.y.subarray(start, end), 'int32');
      return tf.neg(tf.sum(tf.mul(tf.oneHot(labels, model.info.numClasses), tf.log(p)), 1));
    });
    try {
      out.set((await losses.data()) as Float32Array, start);
    } finally {
      losses.dispose();
    }
  }
  return out;
}
