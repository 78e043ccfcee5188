import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { createTelosbAutoencoder, telosbAutoencoder } from './model.ts';
import { slidingWindows } from './data.ts';
import { anomalyScores, windowScores } from './score.ts';
import type { Dataset } from './types.ts';

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

function syntheticDataset(W: number, n: number): Dataset {
  const t = Float32Array.from({ length: n }, (_, i) => Math.sin(i / 15));
  const h = Float32Array.from({ length: n }, (_, i) => 0.8 * Math.cos(i / 23));
  const { x, numWindows } = slidingWindows([t, h], W);
  return { x, y: new Int32Array(numWindows), featureShape: [2 * W], numClasses: 2, numExamples: numWindows };
}

describe('telosbAutoencoder', () => {
  it('has the advertised contract and seed-deterministic weights', () => {
    expect(telosbAutoencoder.name).toBe('telosb-ae');
    expect(telosbAutoencoder.task).toBe('reconstruction');
    expect(telosbAutoencoder.featureShape).toEqual([20]);
    const a = telosbAutoencoder.build(3);
    const b = telosbAutoencoder.build(3);
    expect(a.outputs[0].shape).toEqual([null, 20]);
    const wa = a.getWeights()[0].dataSync();
    const wb = b.getWeights()[0].dataSync();
    expect(Array.from(wa)).toEqual(Array.from(wb));
    a.dispose();
    b.dispose();
  });

  it('lowers its reconstruction MSE when trained a few epochs with plain SGD', async () => {
    const W = 10;
    const def = createTelosbAutoencoder({ windowLength: W });
    const ds = syntheticDataset(W, 600);
    const model = def.build(1);
    model.compile({ optimizer: tf.train.sgd(0.05), loss: 'meanSquaredError' });
    const mse = (): number => {
      const s = windowScores(model, ds);
      return s.reduce((a, b) => a + b, 0) / s.length;
    };
    const before = mse();
    const x = tf.tensor2d(ds.x, [ds.numExamples, 2 * W]);
    await model.fit(x, x, { epochs: 8, batchSize: 32, shuffle: true, verbose: 0 });
    x.dispose();
    const after = mse();
    expect(after).toBeLessThan(before * 0.5);
    // Per-reading scores cover every reading once.
    expect(anomalyScores(model, ds).length).toBe(600);
    model.dispose();
  });
});
