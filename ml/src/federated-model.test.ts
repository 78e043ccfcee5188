import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NamedTensor } from '@fedmq/protocol';
import { createModel, initBackend, listModels, loadLayersModelFromDir, loadMnist, subset, type Dataset } from './index.ts';

let small: Dataset;
let probe: Dataset;

beforeAll(async () => {
  await initBackend('wasm');
  const train = loadMnist('train');
  small = subset(train, Array.from({ length: 1000 }, (_, i) => i));
  probe = subset(train, Array.from({ length: 200 }, (_, i) => 1000 + i));
});

function maxAbsDiff(a: NamedTensor[], b: NamedTensor[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    expect(b[i].name).toBe(a[i].name);
    for (let j = 0; j < a[i].data.length; j++) m = Math.max(m, Math.abs(a[i].data[j] - b[i].data[j]));
  }
  return m;
}

describe('model registry', () => {
  it('lists mnist-2nn and rejects unknown names with ML_UNKNOWN_MODEL', () => {
    expect(listModels().map((m) => m.name)).toContain('mnist-2nn');
    expect(() => createModel('no-such-model')).toThrow(expect.objectContaining({ code: 'ML_UNKNOWN_MODEL' }));
  });
});

describe('FederatedModel weights', () => {
  it('has stable names/shapes, and the same seed gives the same weights in another instance', () => {
    const a = createModel('mnist-2nn', 5);
    const b = createModel('mnist-2nn', 5);
    const c = createModel('mnist-2nn', 6);
    const wa = a.getWeights();
    expect(wa.map((w) => `${w.name}:${w.shape}`)).toEqual([
      'fc1/kernel:784,200',
      'fc1/bias:200',
      'fc2/kernel:200,200',
      'fc2/bias:200',
      'fc3/kernel:200,10',
      'fc3/bias:10',
    ]);
    expect(wa.reduce((s, w) => s + w.data.length, 0)).toBe(199210);
    expect(maxAbsDiff(wa, b.getWeights())).toBe(0);
    expect(maxAbsDiff(wa, c.getWeights())).toBeGreaterThan(0);
    // glorot uniform limit for fc1: sqrt(6 / (784 + 200))
    const lim = Math.sqrt(6 / 984);
    expect(wa[0].data.every((v) => Math.abs(v) <= lim)).toBe(true);
    for (const m of [a, b, c]) m.dispose();
  });

  it('round-trips through getWeights/setWeights (in any order) and getWeights returns copies', () => {
    const a = createModel('mnist-2nn', 1);
    const b = createModel('mnist-2nn', 2);
    const wa = a.getWeights();
    b.setWeights([...wa].reverse());
    expect(maxAbsDiff(wa, b.getWeights())).toBe(0);
    wa[0].data[0] = 123;
    expect(b.getWeights()[0].data[0]).not.toBe(123);
    expect(a.getWeights()[0].data[0]).not.toBe(123);
    a.dispose();
    b.dispose();
  });

  it('setWeights rejects mismatches with ML_WEIGHTS_MISMATCH and leaves the model unchanged', () => {
    const m = createModel('mnist-2nn', 1);
    const before = m.getWeights();
    const other = createModel('mnist-2nn', 9).getWeights();
    const cases: NamedTensor[][] = [
      // wrong shape on the LAST weight: earlier ones must not have been written
      other.map((w, i) => (i === 5 ? { ...w, shape: [5, 2] } : w)),
      other.map((w, i) => (i === 5 ? { ...w, data: new Float32Array(9) } : w)),
      other.slice(0, 5),
      [...other, { name: 'fc4/kernel', shape: [1], data: new Float32Array(1) }],
      [...other, other[0]],
    ];
    for (const ws of cases) {
      expect(() => m.setWeights(ws)).toThrow(expect.objectContaining({ code: 'ML_WEIGHTS_MISMATCH' }));
      expect(maxAbsDiff(before, m.getWeights())).toBe(0);
    }
    m.dispose();
  });
});

describe('FederatedModel training', () => {
  it('fit lowers the loss on a small MNIST slice and does not leak tensors', async () => {
    const m = createModel('mnist-2nn', 3);
    const e0 = await m.evaluate(probe);
    const tensors = tf.memory().numTensors;
    const r1 = await m.fit(small, { epochs: 1, batchSize: 32, learningRate: 0.1, seed: 1 });
    const r2 = await m.fit(small, { epochs: 2, batchSize: 32, learningRate: 0.1, seed: 2 });
    const e1 = await m.evaluate(probe);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(r1.numExamples).toBe(1000);
    expect(r1.durationMs).toBeGreaterThan(0);
    expect(r2.loss).toBeLessThan(r1.loss);
    expect(e1.loss).toBeLessThan(e0.loss * 0.5);
    expect(e1.accuracy).toBeGreaterThan(0.75);
    expect(e0.accuracy).toBeLessThan(0.3);
    m.dispose();
  });

  it('the dense fast path matches tfjs model.fit (sgd and momentum)', async () => {
    for (const optimizer of ['sgd', 'momentum'] as const) {
      const fast = createModel('mnist-2nn', 4);
      const ref = createModel('mnist-2nn', 4);
      const opts = { epochs: 2, batchSize: 50, learningRate: 0.05, seed: 7, optimizer, momentum: 0.9 };
      const rf = await fast.fit(probe, opts);
      const rr = await ref.fit(probe, { ...opts, engine: 'layers' });
      expect(rf.loss).toBeCloseTo(rr.loss, 4);
      expect(maxAbsDiff(fast.getWeights(), ref.getWeights())).toBeLessThan(1e-4);
      // and training actually moved the weights
      expect(maxAbsDiff(fast.getWeights(), createModel('mnist-2nn', 4).getWeights())).toBeGreaterThan(1e-3);
      fast.dispose();
      ref.dispose();
    }
  });

  it('fit is deterministic for a seed', async () => {
    const a = createModel('mnist-2nn', 1);
    const b = createModel('mnist-2nn', 1);
    await a.fit(probe, { epochs: 1, batchSize: 16, learningRate: 0.05, seed: 3 });
    await b.fit(probe, { epochs: 1, batchSize: 16, learningRate: 0.05, seed: 3 });
    expect(maxAbsDiff(a.getWeights(), b.getWeights())).toBe(0);
    a.dispose();
    b.dispose();
  });

  it('rejects bad options and mismatched data with coded errors', async () => {
    const m = createModel('mnist-2nn', 1);
    await expect(m.fit(probe, { epochs: 0, batchSize: 32, learningRate: 0.1 })).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
    await expect(m.fit(probe, { epochs: 1, batchSize: 32, learningRate: -1 })).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
    const wrong: Dataset = { ...probe, featureShape: [28], x: new Float32Array(28 * probe.numExamples) };
    await expect(m.evaluate(wrong)).rejects.toMatchObject({ code: 'ML_BAD_DATA' });
    m.dispose();
  });
});

describe('FederatedModel.save', () => {
  it('writes model.json + weights.bin that tfjs loads back with equal weights', async () => {
    const m = createModel('mnist-2nn', 11);
    await m.fit(probe, { epochs: 1, batchSize: 32, learningRate: 0.1 });
    const dir = mkdtempSync(join(tmpdir(), 'fedmq-ml-save-'));
    await m.save(dir);
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
    expect(json.format).toBe('layers-model');
    expect(json.weightsManifest).toHaveLength(1);
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    const manifestBytes = json.weightsManifest[0].weights.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * 4, 0);
    expect(statSync(join(dir, 'weights.bin')).size).toBe(manifestBytes);
    expect(manifestBytes).toBe(199210 * 4);

    const loaded = await loadLayersModelFromDir(dir);
    const ours = m.getWeights();
    const theirs = loaded.getWeights();
    expect(theirs).toHaveLength(ours.length);
    for (let i = 0; i < ours.length; i++) {
      expect(theirs[i].shape).toEqual(ours[i].shape);
      expect(Array.from(theirs[i].dataSync())).toEqual(Array.from(ours[i].data));
    }
    // the reloaded model computes the same outputs
    const p1 = await m.predict(subset(probe, [0, 1, 2]));
    const p2 = tf.tidy(() => (loaded.predict(tf.tensor2d(subset(probe, [0, 1, 2]).x, [3, 784])) as tf.Tensor).dataSync());
    expect(Array.from(p2)).toEqual(Array.from(p1));
    loaded.dispose();
    m.dispose();
  });
});
