import * as tf from '@tensorflow/tfjs';
import type { ModelDefinition } from './registry.ts';

/**
 * "2NN" of McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
 * Decentralized Data" (arXiv:1602.05629, §3): MLP 784 → 200 → 200 → 10, ReLU hidden layers,
 * softmax output; 199,210 parameters. Layers `fc1`, `fc2`, `fc3`; kernels Glorot-uniform seeded
 * from `seed + layerIndex`, biases zero, so equal seeds give equal initial weights everywhere.
 * Input: flattened 28×28 images in [0, 1] (`featureShape` `[784]`).
 */
export const mnist2nn: ModelDefinition = {
  name: 'mnist-2nn',
  description: 'MNIST 2NN of McMahan et al. 2017 (arXiv:1602.05629): MLP 784-200-200-10, ReLU, softmax',
  featureShape: [784],
  numClasses: 10,
  task: 'classification',
  build(seed: number): tf.LayersModel {
    const init = (i: number) => tf.initializers.glorotUniform({ seed: seed + i });
    return tf.sequential({
      name: 'mnist_2nn',
      layers: [
        tf.layers.dense({ name: 'fc1', inputShape: [784], units: 200, activation: 'relu', kernelInitializer: init(1) }),
        tf.layers.dense({ name: 'fc2', units: 200, activation: 'relu', kernelInitializer: init(2) }),
        tf.layers.dense({ name: 'fc3', units: 10, activation: 'softmax', kernelInitializer: init(3) }),
      ],
    });
  },
};
