/** Whether a dataset fits a model: what the coordinator checks its test set with, and a node its local data. */
import { featureSize, type LocalDataset } from './data.ts';
import { FedmqMlError } from './errors.ts';
import type { ModelInfo } from './models/registry.ts';

/**
 * Checks that `ds` fits the model `info` before anything trains or evaluates: the same number of
 * features per example (`prod(featureShape)`), and for a classification model no more classes
 * than it has (`ds.numClasses ≤ info.numClasses`: every label is one of the model's outputs; a
 * dataset may hold fewer classes, as a node's non-IID share does). A reconstruction model's
 * classes are not checked.
 * @param ds the dataset's shape (only `featureShape`, `numClasses` and `numExamples` are read).
 * @param info the model (e.g. `getModelDefinition(name)` or `FederatedModel.info`).
 * @param source what the data is, named first in the message (a file path; default `data`).
 * @throws FedmqMlError `ML_BAD_DATA` naming `source`, the data's shape and the model's, e.g.
 *   `test.csv: 2 examples of 5 features, 3 classes (labels 0..2); model mlp-4x3 takes 4 features and 3 classes`.
 */
export function checkDataFits(ds: Pick<LocalDataset, 'featureShape' | 'numClasses' | 'numExamples'>, info: ModelInfo, source = 'data'): void {
  const features = featureSize(ds.featureShape);
  const want = featureSize(info.featureShape);
  const classify = info.task === 'classification';
  if (features === want && (!classify || ds.numClasses <= info.numClasses)) return;
  const shape = (s: readonly number[], n: number) => (s.length > 1 ? `${n} features [${s.join('×')}]` : `${n} features`);
  const theirs = `${ds.numExamples} examples of ${shape(ds.featureShape, features)}${classify ? `, ${ds.numClasses} classes (labels 0..${ds.numClasses - 1})` : ''}`;
  const ours = `${shape(info.featureShape, want)}${classify ? ` and ${info.numClasses} classes` : ' (a reconstruction model)'}`;
  throw new FedmqMlError('ML_BAD_DATA', `${source}: ${theirs}; model ${info.name} takes ${ours}`);
}
