/**
 * Data and model contracts of the `@fedmq/ml` package, declared locally until the
 * sensors module is switched to import them from the package itself.
 *
 * @packageDocumentation
 */
import type * as tf from '@tensorflow/tfjs';

/** A dataset held by one federated node. */
export interface Dataset {
  /** `numExamples * prod(featureShape)` values, row-major. */
  x: Float32Array;
  /** One label per example. In the sensors module: evaluation only, never used for training. */
  y: Int32Array;
  /** Shape of one example, e.g. `[windowLength * 2]`. */
  featureShape: number[];
  /** Number of distinct label values in `y`. */
  numClasses: number;
  /** Number of examples (rows of `x`). */
  numExamples: number;
}

/** A model architecture that every node can build identically from a seed. */
export interface ModelDefinition {
  name: string;
  description: string;
  featureShape: number[];
  numClasses: number;
  /** `'reconstruction'`: the generic trainer fits x → x with MSE loss. */
  task: 'classification' | 'reconstruction';
  /** Builds a fresh, uncompiled model; equal seeds give equal initial weights. */
  build(seed: number): tf.LayersModel;
}
