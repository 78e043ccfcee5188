import { beforeAll, describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import { initBackend, loadMnist, type Dataset } from '@fedmq/ml';
import {
  byteStats, chiSquarePValue, dequantize, grayPng, oneStepUpdate, reconstructFromDelta, reconstructInput, reconstructionError,
  runInversionDemo,
} from './inversion.ts';

describe('the chi-square p-value (@stdlib\'s regularized upper incomplete gamma)', () => {
  // reference values: scipy 1.17.1, scipy.stats.chi2.sf
  it('matches the chi-square tables at 255 degrees of freedom', () => {
    expect(chiSquarePValue(293.2478350807012, 255)).toBeCloseTo(0.05, 12); // scipy chi2.isf(0.05, 255)
    expect(chiSquarePValue(310.45738821990585, 255)).toBeCloseTo(0.01, 12);
    expect(chiSquarePValue(255, 255)).toBeCloseTo(0.48822252177040637, 12);
    expect(Math.abs(chiSquarePValue(1000, 255) / 9.37847734365788e-89 - 1)).toBeLessThan(1e-9);
    expect(chiSquarePValue(3.841459, 1)).toBeCloseTo(0.04999999465319563, 12);
    expect(chiSquarePValue(0, 255)).toBe(1);
  });

  it('refuses a negative statistic and df ≤ 0', () => {
    expect(() => chiSquarePValue(-1, 255)).toThrow(/statistic ≥ 0/);
    expect(() => chiSquarePValue(1, 0)).toThrow(/df > 0/);
  });
});

describe('byteStats', () => {
  it('a flat histogram has chi-square 0, p 1, entropy 8; one value has entropy 0 and p ≈ 0', () => {
    const flat = Uint8Array.from({ length: 256 * 40 }, (_, i) => i % 256);
    expect(byteStats(flat)).toEqual({ bytes: 10240, chiSquare: 0, df: 255, pValue: 1, entropyBits: 8 });
    const one = byteStats(new Uint8Array(10240).fill(7));
    expect(one.entropyBits).toBe(0);
    expect(one.chiSquare).toBeCloseTo(10240 * 255, 6);
    expect(one.pValue).toBe(0);
  });
});

describe('reconstructInput', () => {
  it('recovers x from ΔW = x·Δbᵀ, skipping units whose bias did not move', () => {
    const x = [0, 0.25, 1, 0.5];
    const db = [0.3, 0, -0.02, 1e-4, 0];
    const dw = x.flatMap((xi) => db.map((b) => xi * b));
    const r = reconstructInput(dw, db);
    expect(r.bestUnit).toBe(0);
    expect(r.unitsUsed).toBe(3);
    [...r.x].forEach((v, i) => expect(v).toBeCloseTo(x[i], 6));
    expect(() => reconstructInput(dw, [0, 0, 0, 0, 0])).toThrow(/no unit/);
    expect(() => reconstructInput([1, 2, 3], [1, 2])).toThrow(/does not fit/);
  });

  it('reconstructionError: exact is Infinity dB and correlation 1', () => {
    expect(reconstructionError([0, 1, 0.5], [0, 1, 0.5])).toEqual({ maxAbsError: 0, psnr: Infinity, correlation: 1 });
    const e = reconstructionError([0, 1], [0.1, 0.9]);
    expect(e.maxAbsError).toBeCloseTo(0.1, 12);
    expect(e.psnr).toBeCloseTo(20, 10);
  });

  it('dequantize inverts the level grid of quantizeVector: 0 → −clip, L → clip', () => {
    expect([...dequantize([0, 65535, 32767.5], { clip: 0.25, levelBits: 16 })].map((v) => +v.toFixed(12))).toEqual([-0.25, 0.25, 0]);
  });
});

describe('the gradient inversion attack on mnist-2nn', () => {
  let train: Dataset;
  beforeAll(async () => {
    await initBackend();
    train = loadMnist('train');
  });

  it('one SGD step on one example gives the example back from the plain delta', async () => {
    for (const index of [3, 1234]) {
      const u = await oneStepUpdate({ index, seed: 5, learningRate: 0.1, train });
      expect(u.input).toEqual(Float32Array.from(train.x.subarray(index * 784, (index + 1) * 784)));
      const r = reconstructFromDelta(u.delta);
      const e = reconstructionError(u.input, r.x);
      expect(r.unitsUsed).toBeGreaterThan(0);
      expect(e.maxAbsError).toBeLessThan(1e-3);
      expect(e.correlation).toBeGreaterThan(0.9999);
    }
  });

  it('with secure aggregation the coordinator holds uniform-looking bytes and reconstructs garbage', async () => {
    const r = await runInversionDemo({ index: 10, seed: 7, others: 2, train });
    expect(r.parameters).toBe(784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10);
    expect(r.secagg).toMatchObject({ nodes: 3, survivors: 3, bits: 32, clipped: 0, sumCorrect: true });
    // without it: exact
    expect(r.plain.maxAbsError).toBeLessThan(1e-3);
    expect(r.plain.psnr).toBeGreaterThan(60);
    // quantisation alone does not hide the input
    expect(r.quantized.maxAbsError).toBeLessThan(0.05);
    expect(r.quantized.correlation).toBeGreaterThan(0.99);
    expect(r.quantized.bytes.pValue).toBeLessThan(1e-100);
    expect(r.quantized.bytes.entropyBits).toBeLessThan(6);
    // masked: uniform bytes (p below 1e-6 happens with probability 1e-6 for truly uniform bytes)
    expect(r.masked.bytes.bytes).toBe(4 * r.parameters);
    expect(r.masked.bytes.pValue).toBeGreaterThan(1e-6);
    expect(r.masked.bytes.entropyBits).toBeGreaterThan(7.999);
    expect(r.masked.maxAbsError).toBeGreaterThan(0.2);
    expect(r.masked.psnr).toBeLessThan(15);
    expect(Math.abs(r.masked.correlation)).toBeLessThan(0.25); // null sd ≈ 1/√784 ≈ 0.036
  });

  it('writes the three pictures as 224×224 PNGs of the right pixels', async () => {
    const x = Float32Array.from({ length: 784 }, (_, i) => (i % 28) / 27);
    const png = PNG.sync.read(grayPng(x));
    expect([png.width, png.height]).toEqual([224, 224]);
    const at = (px: number, py: number) => png.data[(py * 224 + px) * 4];
    expect(at(0, 0)).toBe(0);
    expect(at(223, 5)).toBe(255);
    expect(at(8 * 27 - 1, 100)).toBe(Math.round((255 * 26) / 27));
    expect(() => grayPng(new Float32Array(10))).toThrow(/784 values/);
  });
});
