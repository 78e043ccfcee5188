import { ErrorCodes, seededRng } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { createComponent } from './descriptor.ts';
import { DEFAULT_TRIM_BETA, TrimmedMeanAggregator, trimmedMean, trimmedMeanDescriptor } from './trimmed-mean.ts';
import { ATTACKS, fitResult, honestVectors, maliciousVectors, nextModel, randInt, shuffled, zeroModel } from './robust-fixtures.ts';
import { runAggregatorSuite } from './strategy-suite.ts';

const f32 = (xs: number[]) => Float32Array.from(xs);

describe('trimmedMean', () => {
  it('drops ⌊βn⌋ values at each end per coordinate', () => {
    // n = 5, β = 0.2 → k = 1: {1, 2, 3, 4, 100} → (2 + 3 + 4)/3 = 3; {−50, 0, 0, 6, 9} → (0 + 0 + 6)/3 = 2
    const v = [f32([1, 0]), f32([100, -50]), f32([3, 6]), f32([2, 9]), f32([4, 0])];
    expect(Array.from(trimmedMean(v, 0.2))).toEqual([3, 2]);
    // β = 0.19 → k = ⌊0.95⌋ = 0: the plain mean (110/5, −35/5)
    expect(Array.from(trimmedMean(v, 0.19))).toEqual([22, -7]);
    // β = 0.49 with n = 5 → k = 2: the median
    expect(Array.from(trimmedMean(v, 0.49))).toEqual([3, 0]);
  });

  it('refuses β outside [0, 0.5), no vector and mismatched lengths', () => {
    for (const b of [-0.1, 0.5, 0.7, NaN]) expect(() => trimmedMean([f32([1])], b)).toThrow(RangeError);
    expect(() => trimmedMean([], 0.1)).toThrow(RangeError);
    expect(() => trimmedMean([f32([1]), f32([1, 2])], 0.1)).toThrow(RangeError);
  });

  // Property (Yin et al. 2018): with f ≤ ⌊βn⌋ malicious vectors, each coordinate of the trimmed
  // mean lies in [min, max] of the honest values at that coordinate (up to float64 summation
  // rounding: 1e-12 × (1 + |bound|)).
  it('stays within the honest per-coordinate range whatever f ≤ ⌊βn⌋ malicious vectors are (400 trials)', () => {
    const rng = seededRng(2018);
    for (let trial = 0; trial < 400; trial++) {
      const n = randInt(rng, 1, 20);
      const beta = 0.499 * rng();
      const f = randInt(rng, 0, Math.floor(beta * n));
      const d = randInt(rng, 1, 8);
      const honest = honestVectors(rng, n - f, d);
      const attack = ATTACKS[trial % ATTACKS.length];
      const all = shuffled(rng, [...honest, ...maliciousVectors(rng, honest, f, attack)]).map((x) => x.item);
      const out = trimmedMean(all, beta);
      for (let i = 0; i < d; i++) {
        const col = honest.map((h) => h[i]);
        const lo = Math.min(...col);
        const hi = Math.max(...col);
        const msg = `trial ${trial} ${attack} n=${n} β=${beta} f=${f} i=${i}`;
        expect(out[i], msg).toBeGreaterThanOrEqual(lo - 1e-12 * (1 + Math.abs(lo)));
        expect(out[i], msg).toBeLessThanOrEqual(hi + 1e-12 * (1 + Math.abs(hi)));
      }
    }
  });
});

describe('trimmed-mean aggregator (the trimmed-mean preset: trimmed-mean + sgd)', () => {
  it('moves the global model by the unweighted trimmed mean; β defaults to 0.1', () => {
    const a = new TrimmedMeanAggregator({ trimBeta: 0.25 });
    expect([a.name, a.streaming]).toEqual(['trimmed-mean', false]);
    expect(new TrimmedMeanAggregator().trimBeta).toBe(0.1);
    expect(DEFAULT_TRIM_BETA).toBe(0.1);
    expect((createComponent(trimmedMeanDescriptor, {}, {}) as TrimmedMeanAggregator).trimBeta).toBe(0.1);
    const global = [{ name: 'w', shape: [1], data: f32([10]) }];
    // n = 4, k = 1: {1, 4, 2, 1e9} → (2 + 4)/2 = 3, whatever the numExamples
    const results = [1, 4, 2, 1e9].map((x, k) => fitResult(`n${k}`, f32([x]), k === 3 ? 1e9 : 1));
    expect(Array.from(nextModel(a, global, results)![0].data)).toEqual([13]);
  });

  it('keeps the model when nothing arrived', () => {
    const a = new TrimmedMeanAggregator();
    expect(a.finish(1, zeroModel(1), a.begin(1, zeroModel(1)), [])).toBeNull();
  });

  it('stays within the honest range through the aggregator and sgd too (200 trials)', () => {
    const rng = seededRng(11);
    for (let trial = 0; trial < 200; trial++) {
      const n = randInt(rng, 2, 16);
      const beta = 0.499 * rng();
      const f = randInt(rng, 0, Math.floor(beta * n));
      const d = randInt(rng, 1, 6);
      const honest = honestVectors(rng, n - f, d);
      const all = [...honest, ...maliciousVectors(rng, honest, f, ATTACKS[trial % ATTACKS.length])];
      const results = shuffled(rng, all).map(({ item, index }) => fitResult(`n${index}`, item, 1 + randInt(rng, 0, 1e6)));
      const out = nextModel(new TrimmedMeanAggregator({ trimBeta: beta }), zeroModel(d), results)![0].data;
      for (let i = 0; i < d; i++) {
        const col = honest.map((h) => h[i]);
        // float32 rounding of a float64 value within 1e-12 of a float32 bound lands on the bound
        expect(out[i]).toBeGreaterThanOrEqual(Math.min(...col));
        expect(out[i]).toBeLessThanOrEqual(Math.max(...col));
      }
    }
  });

  it('validates its options: RangeError from the class, FEDMQ_BAD_CONFIG naming --trim-beta from the descriptor', () => {
    for (const trimBeta of [-0.01, 0.5, 1, NaN]) {
      expect(() => new TrimmedMeanAggregator({ trimBeta })).toThrow(RangeError);
      expect(() => createComponent(trimmedMeanDescriptor, { trimBeta }, {})).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining('--trim-beta') }));
    }
  });
});

runAggregatorSuite(() => new TrimmedMeanAggregator({ trimBeta: 0.2 }));
