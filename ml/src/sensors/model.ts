/**
 * Dense autoencoder over windows of normalised (temperature, humidity) readings.
 *
 * @packageDocumentation
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelDefinition } from './types.ts';
import { DEFAULT_WINDOW_LENGTH } from './data.ts';

/** Options of {@link createTelosbAutoencoder}. */
export interface TelosbAutoencoderOptions {
  /** Readings per window; input/output size is `windowLength * 2` (default 10). */
  windowLength?: number;
  /** Units of the hidden layers around the bottleneck (default 16). */
  hidden?: number;
  /** Units of the linear bottleneck (default 3). */
  bottleneck?: number;
}

/**
 * Builds a {@link ModelDefinition} of a dense autoencoder
 * `2W → hidden (tanh) → bottleneck (linear) → hidden (tanh) → 2W (linear)`.
 * Dense layers only (the wasm backend lacks Conv backprop kernels). Trains with plain SGD
 * (inputs are robust z-scores, so O(1); see docs/sensors.md for the learning rate).
 * Initial weights are Glorot-uniform seeded from `seed`, so all nodes can build an identical
 * starting model.
 *
 * @throws RangeError if an option is not a positive integer.
 */
export function createTelosbAutoencoder(opts: TelosbAutoencoderOptions = {}): ModelDefinition {
  const windowLength = opts.windowLength ?? DEFAULT_WINDOW_LENGTH;
  const hidden = opts.hidden ?? 16;
  const bottleneck = opts.bottleneck ?? 3;
  for (const [k, v] of Object.entries({ windowLength, hidden, bottleneck })) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  const inputSize = windowLength * 2;
  return {
    name: 'telosb-ae',
    description:
      `Dense autoencoder ${inputSize}→${hidden}→${bottleneck}→${hidden}→${inputSize} over ` +
      `${windowLength}-reading windows of per-mote robust-normalised (temperature, humidity); ` +
      'anomaly score = reconstruction error (TelosB single-hop data, Suthaharan et al. 2010)',
    featureShape: [inputSize],
    numClasses: 2,
    task: 'reconstruction',
    build(seed: number): tf.LayersModel {
      const init = (i: number) => tf.initializers.glorotUniform({ seed: seed * 7919 + i });
      const model = tf.sequential({ name: 'telosb_ae' });
      const sizes: Array<[number, 'tanh' | 'linear']> = [
        [hidden, 'tanh'],
        [bottleneck, 'linear'],
        [hidden, 'tanh'],
        [inputSize, 'linear'],
      ];
      sizes.forEach(([units, activation], i) => {
        model.add(
          tf.layers.dense({
            units,
            activation,
            kernelInitializer: init(i),
            biasInitializer: 'zeros',
            ...(i === 0 ? { inputShape: [inputSize] } : {}),
          }),
        );
      });
      return model;
    },
  };
}

/** The default TelosB autoencoder: window 10, `20→16→3→16→20`, name `'telosb-ae'`. */
export const telosbAutoencoder: ModelDefinition = createTelosbAutoencoder();
