import { describe, expect, it } from 'vitest';
import { ErrorCodes, type NamedTensor } from '@fedmq/protocol';
import { fillGaussian } from '@fedmq/privacy';
import { seededTestRandom } from './seeded.testutil.ts';
import * as edgeNode from './index.ts';
import { privatizeDelta } from './node.ts';

const coded = (code: string) => expect.objectContaining({ code });
const tensors = (...values: number[][]): NamedTensor[] => values.map((v, i) => ({ name: `t${i}`, shape: [v.length], data: Float32Array.from(v) }));
/** ‖Δ‖₂ over all tensors, in float64 (the float32 squares are exact). */
const norm = (d: readonly NamedTensor[]) => Math.sqrt(d.reduce((s, t) => s + t.data.reduce((u, x) => u + x * x, 0), 0));
const flat = (d: readonly NamedTensor[]) => d.flatMap((t) => Array.from(t.data));

describe('privatizeDelta', () => {
  it('is exported by @fedmq/edge-node (its index)', () => {
    expect(edgeNode.privatizeDelta).toBe(privatizeDelta);
  });

  it('central: a delta with ‖Δ‖ > C is scaled in place to norm ≤ C, same direction; unclipped false', () => {
    const d = tensors([3, 4, 0, -12], [0.5, 0]); // ‖Δ‖ = √(9 + 16 + 144 + 0.25) = 13.0096…
    const before = flat(d);
    const n0 = norm(d);
    const C = 2;
    expect(privatizeDelta(d, { mode: 'central', clipNorm: C })).toEqual({ unclipped: false });
    const after = flat(d);
    expect(norm(d)).toBeLessThanOrEqual(C);
    expect(norm(d)).toBeGreaterThan(C * (1 - 2 ** -20));
    // the same direction: every value is the original times C/‖Δ‖ (float32 rounding aside)
    for (let i = 0; i < before.length; i++) expect(Math.abs(after[i] - (before[i] * C) / n0)).toBeLessThanOrEqual(2 ** -22 * Math.abs(before[i]) + 1e-30);
    let dot = 0;
    for (let i = 0; i < before.length; i++) dot += before[i] * after[i];
    expect(dot / (n0 * norm(d))).toBeCloseTo(1, 6);
  });

  it('central: a delta with ‖Δ‖ < C is left unchanged; unclipped true; no randomness drawn', () => {
    const d = tensors([0.1, -0.2], [0.05, 0, 0.3]);
    const before = flat(d);
    const rng = seededTestRandom('untouched');
    expect(privatizeDelta(d, { mode: 'central', clipNorm: 1, noiseMultiplier: 3 }, rng)).toEqual({ unclipped: true });
    expect(flat(d)).toEqual(before);
    expect(rng.nextDouble()).toBe(seededTestRandom('untouched').nextDouble());
  });

  it('the bit is 1[‖Δ‖ ≤ C]: a delta with norm exactly C (or just below) reports unclipped true', () => {
    // ‖(3, 4)‖ = 5 exactly; clipL2 still scales it by 1 − 2^-21 (its safety margin), but it was within C
    const exact = tensors([3, 4]);
    expect(norm(exact)).toBe(5);
    expect(privatizeDelta(exact, { mode: 'central', clipNorm: 5 })).toEqual({ unclipped: true });
    expect(norm(exact)).toBeLessThanOrEqual(5);
    // inside the margin band (C(1 − 2^-21), C]
    const band = tensors([3, 4]);
    expect(privatizeDelta(band, { mode: 'central', clipNorm: 5 * (1 + 2 ** -23) })).toEqual({ unclipped: true });
    // just above C
    const above = tensors([3, 4]);
    expect(privatizeDelta(above, { mode: 'central', clipNorm: 5 * (1 - 2 ** -30) })).toEqual({ unclipped: false });
  });

  it('local: N(0, (σC)²) on top of the clipped values (empirical mean 0, std σC; and exactly the stream\'s Box–Muller draws)', () => {
    const n = 40_000;
    const x = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 0.01 : -0.01)); // ‖Δ‖ = 2
    const d = tensors(x.slice(0, 24_000), x.slice(24_000));
    const C = 1;
    const sigma = 0.5;
    const n0 = norm(d);
    expect(n0).toBeCloseTo(2, 6);
    const clipped = flat(d).map((v) => Math.fround(v * (C / n0)));
    const res = privatizeDelta(d, { mode: 'local', clipNorm: C, noiseMultiplier: sigma }, seededTestRandom('local-noise'));
    expect(res).toEqual({ unclipped: false }); // the bit is of the clipping, before the noise
    const y = flat(d);
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < n; i++) {
      const e = y[i] - clipped[i];
      sum += e;
      sumSq += e * e;
    }
    const mean = sum / n;
    const std = Math.sqrt(sumSq / n - mean * mean);
    expect(Math.abs(mean)).toBeLessThan((6 * sigma * C) / Math.sqrt(n));
    expect(Math.abs(std / (sigma * C) - 1)).toBeLessThan(6 / Math.sqrt(2 * n));
    // the values: fl32(clipped + σC·z) with z the stream's draws, tensor by tensor
    const twin = seededTestRandom('local-noise');
    const z = [...fillGaussian(new Float64Array(24_000), twin), ...fillGaussian(new Float64Array(16_000), twin)];
    let worst = 0; // error in units of the allowed float32 rounding (and of the clip margin, 2^-21 of 0.005)
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(y[i] - (clipped[i] + sigma * C * z[i])) / (2 ** -22 * (Math.abs(y[i]) + 0.01)));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('local: an unclipped delta gets the noise as well', () => {
    const d = tensors(new Array(1000).fill(0.001)); // ‖Δ‖ ≈ 0.0316 < C
    const res = privatizeDelta(d, { mode: 'local', clipNorm: 1, noiseMultiplier: 1 }, seededTestRandom('local-small'));
    expect(res).toEqual({ unclipped: true });
    expect(norm(d)).toBeGreaterThan(20); // ≈ √1000 · σC
  });

  it('refuses a NaN delta (FEDMQ_NON_FINITE) leaving it untouched, local mode without σ and a bad C (FEDMQ_BAD_CONFIG)', () => {
    const nan = tensors([1, 2], [Number.NaN, 100]);
    expect(() => privatizeDelta(nan, { mode: 'central', clipNorm: 1 })).toThrow(coded(ErrorCodes.NON_FINITE));
    expect(flat(nan).slice(0, 2)).toEqual([1, 2]);
    expect(() => privatizeDelta(tensors([Infinity]), { mode: 'local', clipNorm: 1, noiseMultiplier: 1 })).toThrow(coded(ErrorCodes.NON_FINITE));
    expect(() => privatizeDelta(tensors([0.1, 0.2]), { mode: 'local', clipNorm: 1 })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(() => privatizeDelta(tensors([0.1, 0.2]), { mode: 'central', clipNorm: 0 })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(() => privatizeDelta(tensors([0.1, 0.2]), { mode: 'local', clipNorm: 1, noiseMultiplier: -1 })).toThrow(coded(ErrorCodes.BAD_CONFIG));
  });
});
