import * as tf from '@tensorflow/tfjs';
import type { ModelDefinition } from './registry.ts';

/** Names of the generic tabular classifier: `mlp-<features>x<classes>`, e.g. `mlp-3x2`. */
export const MLP_PATTERN = /^mlp-([1-9][0-9]{0,5})x([1-9][0-9]{0,4})$/;

/**
 * A small classifier for tabular sensor data (a CSV row of readings → a class): MLP
 * features-64-32-classes with ReLU and softmax, Glorot-uniform initialisation seeded from
 * `seed`. Tensors: `fc1/kernel` [features, 64], `fc1/bias` [64], `fc2/kernel` [64, 32],
 * `fc2/bias` [32], `fc3/kernel` [32, classes], `fc3/bias` [classes].
 * @throws RangeError when features or classes is not a positive integer (classes ≥ 2).
 */
export function mlpDefinition(features: number, classes: number): ModelDefinition {
  if (!(Number.isInteger(features) && features >= 1)) throw new RangeError(`features must be a positive integer, got ${features}`);
  if (!(Number.isInteger(classes) && classes >= 2)) throw new RangeError(`classes must be an integer ≥ 2, got ${classes}`);
  return {
    name: `mlp-${features}x${classes}`,
    description: `tabular classifier: MLP ${features}-64-32-${classes}, ReLU, softmax`,
    featureShape: [features],
    numClasses: classes,
    task: 'classification',
    build(seed: number): tf.LayersModel {
      const init = (i: number) => tf.initializers.glorotUniform({ seed: seed + i });
      return tf.sequential({
        name: 'mlp',
        layers: [
          tf.layers.dense({ name: 'fc1', inputShape: [features], units: 64, activation: 'relu', kernelInitializer: init(1) }),
          tf.layers.dense({ name: 'fc2', units: 32, activation: 'relu', kernelInitializer: init(2) }),
          tf.layers.dense({ name: 'fc3', units: classes, activation: 'softmax', kernelInitializer: init(3) }),
        ],
      });
    },
  };
}
