import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createModel, initBackend, loadIdx, loadMnist, mnistDataDir, perExampleLoss, subset, type ByteDataset, type Dataset, type FederatedModel } from './index.ts';

let train: Dataset;
let heldOut: Dataset;
let trained: FederatedModel;

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

beforeAll(async () => {
  await initBackend('wasm');
  const all = loadMnist('train');
  train = subset(all, range(0, 300));
  heldOut = subset(all, range(5000, 700));
  trained = createModel('mnist-2nn', 3);
  // 5 epochs on 300 examples: it fits them better than unseen ones
  await trained.fit(train, { epochs: 5, batchSize: 32, learningRate: 0.1, seed: 1 });
});

const mean = (a: Float32Array): number => a.reduce((s, v) => s + v, 0) / a.length;

describe('perExampleLoss', () => {
  it('has the mean of evaluate()’s loss, for a fresh and a trained model and any batch size', async () => {
    const fresh = createModel('mnist-2nn', 9);
    for (const m of [fresh, trained]) {
      for (const b of [1000, 64, 7]) {
        const losses = await perExampleLoss(m, heldOut, b);
        expect(losses).toBeInstanceOf(Float32Array);
        expect(losses.length).toBe(700);
        const { loss } = await m.evaluate(heldOut, b);
        expect(Math.abs(mean(losses) - loss)).toBeLessThan(1e-6 * loss);
      }
    }
    // an untrained 10-class model is near −log(1/10) = 2.303 nats per example
    expect(Math.abs(mean(await perExampleLoss(fresh, heldOut)) - Math.log(10))).toBeLessThan(0.3);
    fresh.dispose();
  });

  it('is −log of the predicted probability of each example’s label (clipped at 1e-7)', async () => {
    const data = subset(heldOut, range(0, 50));
    const losses = await perExampleLoss(trained, data, 16);
    const p = await trained.predict(data);
    for (let i = 0; i < data.numExamples; i++) {
      const q = Math.min(Math.max(p[i * 10 + data.y[i]], 1e-7), 1 - 1e-7);
      expect(losses[i]).toBeCloseTo(-Math.log(q), 5);
      expect(losses[i]).toBeGreaterThanOrEqual(0);
    }
  });

  it('gives the same losses whatever the batch size, on pixel bytes as on float32 features, without leaking tensors', async () => {
    const bytesAll = loadIdx(join(mnistDataDir(), 'train-images-idx3-ubyte'), join(mnistDataDir(), 'train-labels-idx1-ubyte'), { keepBytes: true }) as ByteDataset;
    const bytes = subset(bytesAll, range(5000, 700));
    const tensors = tf.memory().numTensors;
    const a = await perExampleLoss(trained, heldOut, 1000);
    const b = await perExampleLoss(trained, heldOut, 33);
    const c = await perExampleLoss(trained, bytes, 1000);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(Array.from(c)).toEqual(Array.from(a));
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, a[i]));
  });

  it('is lower on the examples the model trained on than on held-out ones', async () => {
    const seen = mean(await perExampleLoss(trained, train));
    const unseen = mean(await perExampleLoss(trained, heldOut));
    expect(seen).toBeLessThan(unseen);
    expect(await trained.evaluate(train)).toMatchObject({ loss: expect.closeTo(seen, 5) });
  });

  it('returns an empty array for no examples and rejects bad input with coded errors', async () => {
    expect((await perExampleLoss(trained, subset(heldOut, []))).length).toBe(0);
    await expect(perExampleLoss(trained, heldOut, 0)).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
    await expect(perExampleLoss(trained, heldOut, 2.5)).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
    const wrong: Dataset = { ...heldOut, featureShape: [28], x: new Float32Array(28 * heldOut.numExamples) };
    await expect(perExampleLoss(trained, wrong)).rejects.toMatchObject({ code: 'ML_BAD_DATA' });
    const short: Dataset = { ...heldOut, y: heldOut.y.subarray(0, 10) };
    await expect(perExampleLoss(trained, short)).rejects.toMatchObject({ code: 'ML_BAD_DATA' });
    const ae = createModel('telosb-ae');
    await expect(perExampleLoss(ae, heldOut)).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
    ae.dispose();
    const gone = createModel('mnist-2nn', 1);
    gone.dispose();
    await expect(perExampleLoss(gone, heldOut)).rejects.toMatchObject({ code: 'ML_BACKEND_UNAVAILABLE' });
  });
});
