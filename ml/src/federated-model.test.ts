import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { NamedTensor } from '@fedmq/protocol';
import { createModel, initBackend, listModels, loadIdx, loadLayersModelFromDir, loadMnist, mnistDataDir, permutation, createRng, registerModel, subset, type ByteDataset, type Dataset, type FitOptions } from './index.ts';
import { gatherFeatures } from './data.ts';

let small: Dataset;
let probe: Dataset;

beforeAll(async () => {
  await initBackend('wasm');
  const train = loadMnist('train');
  small = subset(train, Array.from({ length: 1000 }, (_, i) => i));
  probe = subset(train, Array.from({ length: 200 }, (_, i) => 1000 + i));
});

let mnistTrainBytes: ByteDataset | undefined;
/** The MNIST training examples at `indices`, as pixel bytes (the IDX file's own). */
function mnistBytes(indices: number[]): ByteDataset {
  mnistTrainBytes ??= loadIdx(join(mnistDataDir(), 'train-images-idx3-ubyte'), join(mnistDataDir(), 'train-labels-idx1-ubyte'), { keepBytes: true }) as ByteDataset;
  return subset(mnistTrainBytes, indices);
}

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
    expect(a.weightShapes()).toEqual(wa.map((w) => ({ name: w.name, shape: w.shape })));
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

  it('a mini-batch gathered by gatherFeatures is, bit for bit, what tf.gather and tf.oneHot make of the whole dataset (float32 and bytes)', () => {
    const bytes = mnistBytes([...Array(200).keys()].map((i) => 1000 + i));
    const order = permutation(200, createRng(11));
    const k = 10;
    for (const ds of [probe, bytes]) {
      const xBuf = new Float32Array(32 * 784);
      for (const [start, end] of [[0, 32], [160, 192], [192, 200]]) {
        gatherFeatures(ds, order, start, end, xBuf);
        const want = tf.tidy(() => tf.gather(tf.tensor2d(probe.x, [200, 784]), tf.tensor1d(order.subarray(start, end), 'int32')).dataSync());
        expect(Buffer.from(xBuf.buffer, 0, (end - start) * 784 * 4).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength))).toBe(true);
      }
    }
    // the one-hot rows the dense path builds (1 at the label, else 0) are tf.oneHot's
    const oneHot = tf.tidy(() => tf.oneHot(tf.tensor1d(probe.y, 'int32'), k).toFloat().dataSync());
    expect(oneHot.every((v, i) => v === (probe.y[Math.floor(i / k)] === i % k ? 1 : 0))).toBe(true);
  });

  it('trains, evaluates and predicts on pixel bytes (ByteDataset) exactly as on their float32 values (both engines)', async () => {
    const bytes = mnistBytes([...Array(200).keys()].map((i) => 1000 + i));
    for (const engine of ['auto', 'layers'] as const) {
      const a = createModel('mnist-2nn', 4);
      const b = createModel('mnist-2nn', 4);
      const opts: FitOptions = { epochs: 2, batchSize: 48, learningRate: 0.05, seed: 7, engine };
      const ra = await a.fit(probe, opts);
      const rb = await b.fit(bytes, opts);
      expect(rb.loss).toBe(ra.loss);
      expect(maxAbsDiff(a.getWeights(), b.getWeights())).toBe(0);
      expect(await b.evaluate(bytes, 64)).toEqual(await a.evaluate(probe, 64));
      expect(Array.from(await b.predict(bytes, 64))).toEqual(Array.from(await a.predict(probe, 64)));
      a.dispose();
      b.dispose();
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

describe('FedProx proximal term (FitOptions.proximalMu)', () => {
  /** n examples of a 3-class problem on 8 features (labels = argmax of a fixed linear map), seeded. */
  function synthetic(n: number, seed: number): Dataset {
    let s = seed;
    const u = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const x = new Float32Array(n * 8);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const f = Array.from({ length: 8 }, u);
      x.set(f, i * 8);
      const score = [f[0] + f[1] - f[2], f[3] - f[4] + 0.5 * f[5], f[6] - f[7] - f[0]];
      y[i] = score.indexOf(Math.max(...score));
    }
    return { x, y, featureShape: [8], numClasses: 3, numExamples: n };
  }
  const data = synthetic(64, 12345);

  /** ‖a − b‖₂ over all tensors (the full parameter vector), in float64. */
  function dist(a: NamedTensor[], b: NamedTensor[]): number {
    let s = 0;
    for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].data.length; j++) s += (a[i].data[j] - b[i].data[j]) ** 2;
    return Math.sqrt(s);
  }

  async function trained(opts: FitOptions, d: Dataset = data, model = 'mlp-8x3', seed = 2): Promise<{ w: NamedTensor[]; loss: number }> {
    const m = createModel(model, seed);
    const r = await m.fit(d, opts);
    const w = m.getWeights();
    m.dispose();
    return { w, loss: r.loss };
  }

  it('proximalMu: 0 is bitwise identical to leaving it out (both engines, sgd and momentum)', async () => {
    for (const engine of ['auto', 'layers'] as const) {
      for (const optimizer of ['sgd', 'momentum'] as const) {
        const base: FitOptions = { epochs: 2, batchSize: 8, learningRate: 0.05, seed: 3, optimizer, engine };
        const a = await trained(base);
        const b = await trained({ ...base, proximalMu: 0 });
        expect(maxAbsDiff(a.w, b.w)).toBe(0);
        expect(b.loss).toBe(a.loss);
      }
    }
  });

  it('keeps the trained weights closer to the start as μ grows: ‖w − w0‖ strictly decreasing over μ = 0, 0.1, 1, 10, 100', async () => {
    const w0 = createModel('mlp-8x3', 2).getWeights();
    const d: number[] = [];
    const mus = [0, 0.1, 1, 10, 100];
    // η·μ ≤ 1 for every μ, so the proximal contraction (1 − η·μ) is stable.
    for (const proximalMu of mus) d.push(dist((await trained({ epochs: 5, batchSize: 8, learningRate: 0.01, seed: 4, proximalMu })).w, w0));
    for (let i = 1; i < d.length; i++) expect(d[i], `μ=${mus[i]} vs μ=${mus[i - 1]}: ${d}`).toBeLessThan(d[i - 1]);
    expect(d[0]).toBeGreaterThan(0.05); // plain training moved the weights …
    expect(d[4]).toBeLessThan(0.2 * d[0]); // … and μ = 100 holds them much closer
    expect(d[4]).toBeGreaterThan(0);
  });

  it('the dense fast path and tfjs model.fit agree with μ > 0 (sgd and momentum), and μ changed the result', async () => {
    for (const optimizer of ['sgd', 'momentum'] as const) {
      const opts: FitOptions = { epochs: 2, batchSize: 8, learningRate: 0.05, seed: 5, optimizer, momentum: 0.9, proximalMu: 2 };
      const fast = await trained(opts);
      const ref = await trained({ ...opts, engine: 'layers' });
      expect(fast.loss).toBeCloseTo(ref.loss, 4);
      expect(maxAbsDiff(fast.w, ref.w)).toBeLessThan(1e-4);
      const plain = await trained({ ...opts, proximalMu: 0 });
      expect(maxAbsDiff(fast.w, plain.w)).toBeGreaterThan(1e-3);
    }
  });

  // A 2 → 2 softmax layer, one example, batch 1: step 1 is plain SGD (w = w0, the proximal
  // gradient is 0); step 2 must be w2 = w1 − η(∇L(w1) + μ(w1 − w0)), computed here in float64.
  registerModel({
    name: 'test-softmax-2x2',
    description: 'test only: Dense 2 → 2 softmax',
    featureShape: [2],
    numClasses: 2,
    task: 'classification',
    build: () => tf.sequential({ layers: [tf.layers.dense({ name: 'fc', inputShape: [2], units: 2, activation: 'softmax' })] }),
  });
  const W0 = [0.1, -0.2, 0.3, 0.05]; // kernel [in=2, out=2], row-major
  const B0 = [0.01, -0.02];
  const X = [1, 2];
  const one: Dataset = { x: new Float32Array(X), y: new Int32Array([0]), featureShape: [2], numClasses: 2, numExamples: 1 };
  const start: NamedTensor[] = [
    { name: 'fc/kernel', shape: [2, 2], data: new Float32Array(W0) },
    { name: 'fc/bias', shape: [2], data: new Float32Array(B0) },
  ];
  /** Softmax-CE gradient at (W, b) for the single example (label 0), and the loss. */
  function grad(W: number[], b: number[]): { gW: number[]; gb: number[]; loss: number } {
    const z = [0, 1].map((j) => X[0] * W[j] + X[1] * W[2 + j] + b[j]);
    const e = z.map((v) => Math.exp(v - Math.max(...z)));
    const p = e.map((v) => v / (e[0] + e[1]));
    const gb = [p[0] - 1, p[1]];
    return { gW: [X[0] * gb[0], X[0] * gb[1], X[1] * gb[0], X[1] * gb[1]], gb, loss: -Math.log(p[0]) };
  }

  it('two SGD steps on a 2 → 2 softmax layer match the hand-computed proximal update (both engines)', async () => {
    const eta = 0.5;
    const mu = 2;
    const s1 = grad(W0, B0);
    const W1 = W0.map((w, i) => w - eta * s1.gW[i]);
    const B1 = B0.map((b, i) => b - eta * s1.gb[i]);
    const s2 = grad(W1, B1);
    const W2 = W1.map((w, i) => w - eta * (s2.gW[i] + mu * (w - W0[i])));
    const B2 = B1.map((b, i) => b - eta * (s2.gb[i] + mu * (b - B0[i])));
    const W2plain = W1.map((w, i) => w - eta * s2.gW[i]);
    // the proximal term is not negligible here: it moves the kernel by η·μ·|w1 − w0| ≥ 0.01
    expect(Math.max(...W2.map((w, i) => Math.abs(w - W2plain[i])))).toBeGreaterThan(0.01);
    for (const engine of ['auto', 'layers'] as const) {
      const m = createModel('test-softmax-2x2');
      m.setWeights(start);
      const r = await m.fit(one, { epochs: 2, batchSize: 1, learningRate: eta, proximalMu: mu, engine });
      const [k, b] = m.getWeights();
      for (let i = 0; i < 4; i++) expect(k.data[i], `${engine} kernel[${i}]`).toBeCloseTo(W2[i], 6);
      for (let i = 0; i < 2; i++) expect(b.data[i], `${engine} bias[${i}]`).toBeCloseTo(B2[i], 6);
      // the reported loss is the data loss at w1 (last epoch, pre-update), without (μ/2)‖w1 − w0‖²
      const prox = (mu / 2) * [...W1.map((w, i) => w - W0[i]), ...B1.map((v, i) => v - B0[i])].reduce((s, v) => s + v * v, 0);
      expect(prox).toBeGreaterThan(0.01);
      expect(r.loss).toBeCloseTo(s2.loss, 5);
      // the proximal part alone: w2(μ) − w2(0) = −η·μ·(w1 − w0)
      m.setWeights(start);
      await m.fit(one, { epochs: 2, batchSize: 1, learningRate: eta, engine });
      const plain = m.getWeights()[0];
      for (let i = 0; i < 4; i++) expect(k.data[i] - plain.data[i]).toBeCloseTo(-eta * mu * (W1[i] - W0[i]), 6);
      m.dispose();
    }
  });

  it('anchors w_global at the start of every fit call, not at the first one', async () => {
    // Two 1-step fits: in the second, w = its own start, so the proximal gradient is exactly 0 and
    // the result equals plain SGD bitwise; a stale anchor from the first call would not.
    for (const engine of ['auto', 'layers'] as const) {
      const run = async (proximalMu: number) => {
        const m = createModel('test-softmax-2x2');
        m.setWeights(start);
        for (let i = 0; i < 2; i++) await m.fit(one, { epochs: 1, batchSize: 1, learningRate: 0.5, proximalMu, engine });
        const w = m.getWeights();
        m.dispose();
        return w;
      };
      expect(maxAbsDiff(await run(10), await run(0))).toBe(0);
    }
  });

  it('works on a generic-path-only model (tanh autoencoder) and does not leak tensors', async () => {
    const n = 48;
    let s = 99;
    const x = Float32Array.from({ length: n * 20 }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
    const windows: Dataset = { x, y: new Int32Array(n), featureShape: [20], numClasses: 2, numExamples: n };
    const init = createModel('telosb-ae', 1);
    const w0 = init.getWeights();
    init.dispose();
    const opts: FitOptions = { epochs: 3, batchSize: 8, learningRate: 0.05, seed: 1 };
    const leaked = async (o: FitOptions) => {
      const t = tf.memory().numTensors;
      const r = await trained(o, windows, 'telosb-ae', 1);
      return { ...r, leaked: tf.memory().numTensors - t };
    };
    const free = await leaked(opts);
    const held = await leaked({ ...opts, proximalMu: 10 });
    expect(free.leaked).toBe(0);
    expect(held.leaked).toBe(0);
    expect(Number.isFinite(held.loss)).toBe(true);
    expect(dist(held.w, w0)).toBeLessThan(0.5 * dist(free.w, w0));
    // Momentum: tfjs 4.22's MomentumOptimizer.dispose() leaves its −η scalar behind (1 tensor per
    // generic momentum fit, with or without μ); the proximal wrapper must add nothing to that.
    const momPlain = await leaked({ ...opts, optimizer: 'momentum' });
    const momProx = await leaked({ ...opts, optimizer: 'momentum', proximalMu: 10 });
    expect(momProx.leaked).toBe(momPlain.leaked);
    expect(momPlain.leaked).toBeLessThanOrEqual(1);
    // and on the dense path too
    const before = tf.memory().numTensors;
    await trained({ epochs: 1, batchSize: 8, learningRate: 0.05, proximalMu: 1, optimizer: 'momentum' });
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects a negative or non-finite proximalMu with ML_BAD_OPTIONS', async () => {
    const m = createModel('mlp-8x3', 1);
    const before = m.getWeights();
    for (const proximalMu of [-0.01, Number.NaN, Number.POSITIVE_INFINITY]) {
      for (const engine of ['auto', 'layers'] as const) {
        await expect(m.fit(data, { epochs: 1, batchSize: 8, learningRate: 0.1, proximalMu, engine })).rejects.toMatchObject({ code: 'ML_BAD_OPTIONS' });
      }
    }
    expect(maxAbsDiff(before, m.getWeights())).toBe(0);
    m.dispose();
  });
});
