import { ErrorCodes, seededRng } from '@fedmq/protocol';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createComponent } from './descriptor.ts';
import { createStrategy } from './index.ts';
import { KrumAggregator, MultiKrumAggregator, krumDescriptor, krumSelect } from './krum.ts';
import { multiKrumDescriptor } from './multi-krum.ts';
import { ATTACKS, dist, fitResult, honestVectors, maliciousVectors, nextModel, randInt, shuffled, zeroModel } from './robust-fixtures.ts';
import { runAggregatorSuite } from './strategy-suite.ts';

const fitConfig = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const f32 = (xs: number[]) => Float32Array.from(xs);
/** 1-D points 0, 1, 2, 10, 11. */
const line = [0, 1, 2, 10, 11].map((x) => f32([x]));

describe('krumSelect', () => {
  it('scores by the squared distances to the n − f − 2 nearest', () => {
    // n = 5, f = 1 → 2 nearest. Scores: 0: 1 + 4 = 5; 1: 1 + 1 = 2; 2: 1 + 4 = 5; 10: 1 + 64 = 65; 11: 1 + 81 = 82
    expect(krumSelect(line, 1, 1)).toEqual([1]);
    expect(krumSelect(line, 1, 3)).toEqual([1, 0, 2]); // tie 0/2 broken by index
    expect(krumSelect(line, 1, 4)).toEqual([1, 0, 2, 3]);
    // f = 0 → 3 nearest: 0: 1+4+100 = 105; 1: 1+1+81 = 83; 2: 1+4+64 = 69; 10: 1+64+81 = 146; 11: 1+81+100 = 182
    expect(krumSelect(line, 0, 2)).toEqual([2, 1]);
  });

  it('refuses n < 2f + 3, and bad f or m', () => {
    expect(() => krumSelect(line.slice(0, 4), 1, 1)).toThrow(RangeError); // 4 < 5
    expect(() => krumSelect(line.slice(0, 2), 0, 1)).toThrow(RangeError); // 2 < 3
    expect(() => krumSelect(line, 2, 1)).toThrow(/2f \+ 3/); // 5 < 7
    expect(krumSelect([f32([0]), f32([2]), f32([3])], 0, 1)).toEqual([1]); // n = 3 = 2·0 + 3 is accepted; scores 4, 1, 1
    expect(() => krumSelect(line, -1, 1)).toThrow(RangeError);
    expect(() => krumSelect(line, 0.5, 1)).toThrow(RangeError);
    expect(() => krumSelect(line, 1, 0)).toThrow(RangeError);
    expect(() => krumSelect(line, 1, 5)).toThrow(RangeError); // m > n − f = 4
    expect(() => krumSelect([], 0, 1)).toThrow(RangeError);
  });

  // Property (Blanchard et al. 2017, Lemma 1 in spirit): with n ≥ 2f + 3 and m ≤ n − f, the m best
  // scores are ≤ the worst of the n − f honest scores ≤ (n − f − 2)·D², D the honest L2 diameter; so
  // every selected vector has one of its n − f − 2 ≥ f + 1 nearest vectors honest, within
  // √(n − f − 2)·D. Checked: each selected V has min_h ‖V − h‖ ≤ √(n − f − 2)·D (×(1 + 1e-9)).
  // For the ±1e9 attacks (scores ≥ 1e17 ≫ honest ones) every selected vector is honest.
  it('selects only vectors within √(n − f − 2)·D of an honest one, whatever the f malicious are (400 trials)', () => {
    const rng = seededRng(2017);
    for (let trial = 0; trial < 400; trial++) {
      const f = randInt(rng, 0, 5);
      const n = randInt(rng, 2 * f + 3, 2 * f + 10);
      const m = randInt(rng, 1, n - f);
      const d = randInt(rng, 1, 8);
      const honest = honestVectors(rng, n - f, d);
      const attack = ATTACKS[trial % ATTACKS.length];
      const all = shuffled(rng, [...honest, ...maliciousVectors(rng, honest, f, attack)]);
      let diam = 0;
      for (const a of honest) for (const b of honest) diam = Math.max(diam, dist(a, b));
      const picked = krumSelect(all.map((x) => x.item), f, m);
      expect(picked).toHaveLength(m);
      expect(new Set(picked).size).toBe(m);
      for (const k of picked) {
        const near = Math.min(...honest.map((h) => dist(all[k].item, h)));
        expect(near, `trial ${trial} ${attack} n=${n} f=${f} m=${m}`).toBeLessThanOrEqual(Math.sqrt(n - f - 2) * diam * (1 + 1e-9));
        if (attack.startsWith('huge')) expect(all[k].index, `trial ${trial} ${attack}`).toBeLessThan(n - f);
      }
    }
  });
});

describe('Krum and Multi-Krum aggregators (the krum / multi-krum presets: + sgd)', () => {
  it('Krum applies the single best delta; Multi-Krum the unweighted mean of the m best', () => {
    const global = [{ name: 'w', shape: [1], data: f32([100]) }];
    const krum = new KrumAggregator({ krumF: 1, minFitNodes: 5 });
    expect([krum.name, krum.streaming]).toEqual(['krum', false]);
    expect(Array.from(nextModel(krum, global, line.map((v, k) => fitResult(`n${k}`, v, 10 ** k)))![0].data)).toEqual([101]);

    const multi = new MultiKrumAggregator({ krumF: 1, minFitNodes: 5, multiKrumM: 3 });
    expect(multi.name).toBe('multi-krum');
    // mean of 1, 0, 2 = 1, not weighted by numExamples
    expect(Array.from(nextModel(multi, global, line.map((v, k) => fitResult(`n${k}`, v, 10 ** k)))![0].data)).toEqual([101]);

    // default m = n − f = 4: mean of 1, 0, 2, 10 = 3.25
    const dflt = new MultiKrumAggregator({ krumF: 1, minFitNodes: 5 });
    expect(dflt.multiKrumM).toBeUndefined();
    expect(Array.from(nextModel(dflt, global, line.map((v, k) => fitResult(`n${k}`, v)))![0].data)).toEqual([103.25]);
    expect((createComponent(multiKrumDescriptor, { krumF: 1 }, {}) as MultiKrumAggregator).multiKrumM).toBeUndefined();
  });

  it('samples at least minFitNodes = 2f + 3 nodes when available, as FedAvg (krum preset)', () => {
    const s = createStrategy({ strategy: 'krum', fraction: 0.1, minFitNodes: 7, fitConfig, params: { krumF: 2 } });
    const nodes = Array.from({ length: 20 }, (_, i) => `n${i}`);
    const selected = s.selector.select(1, nodes, seededRng(5));
    expect(new Set(selected).size).toBe(7);
    expect(s.fitConfig(1)).toEqual(fitConfig);
    expect(s.selector.select(1, nodes.slice(0, 4), seededRng(5))).toHaveLength(4); // all when fewer
  });

  it('caps m at n − f of the round', () => {
    const s = new MultiKrumAggregator({ krumF: 1, minFitNodes: 5, multiKrumM: 50 });
    expect(Array.from(nextModel(s, zeroModel(1), line.map((v, k) => fitResult(`n${k}`, v)))![0].data)).toEqual([3.25]);
  });

  it('refuses configurations with minFitNodes < 2f + 3 and bad f or m (RangeError; FEDMQ_BAD_CONFIG through the registry)', () => {
    expect(() => new KrumAggregator({ krumF: 1, minFitNodes: 4 })).toThrow(RangeError);
    expect(() => new MultiKrumAggregator({ krumF: 2, minFitNodes: 6, multiKrumM: 1 })).toThrow(/2f \+ 3/);
    expect(() => new KrumAggregator({ krumF: 0, minFitNodes: 2 })).toThrow(RangeError);
    expect(() => new KrumAggregator({ krumF: 0, minFitNodes: 3 })).not.toThrow();
    expect(() => new KrumAggregator({ krumF: 2, minFitNodes: 7 })).not.toThrow();
    expect(() => new KrumAggregator({ krumF: -1, minFitNodes: 9 })).toThrow(RangeError);
    expect(() => new KrumAggregator({ krumF: 1.5, minFitNodes: 9 })).toThrow(RangeError);
    for (const multiKrumM of [0, -1, 1.5, NaN]) expect(() => new MultiKrumAggregator({ krumF: 1, minFitNodes: 9, multiKrumM })).toThrow(RangeError);
    const bad = (fn: () => unknown, flag: string) => expect(fn).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, message: expect.stringContaining(flag) }));
    bad(() => createComponent(krumDescriptor, {}, {}), '--krum-f'); // required
    bad(() => createComponent(multiKrumDescriptor, {}, {}), '--krum-f');
    for (const krumF of [-1, 1.5, NaN]) bad(() => createComponent(krumDescriptor, { krumF }, {}), '--krum-f');
    for (const multiKrumM of [0, -1, 1.5]) bad(() => createComponent(multiKrumDescriptor, { krumF: 1, multiKrumM }, {}), '--multi-krum-m');
    bad(() => createStrategy({ strategy: 'krum', fraction: 1, minFitNodes: 4, fitConfig, params: { krumF: 1 } }), '2f + 3');
    bad(() => createStrategy({ strategy: 'krum', fraction: 0, minFitNodes: 9, fitConfig, params: { krumF: 1 } }), 'fraction');
  });

  it('keeps the model and logs the reason when fewer than 2f + 3 updates arrived', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
    const global = zeroModel(1);
    const s = new KrumAggregator({ krumF: 1, minFitNodes: 5, logger });
    expect(nextModel(s, global, line.slice(0, 4).map((v, k) => fitResult(`n${k}`, v)), { round: 3, failures: [{ nodeId: 'n4', reason: 'timeout' }] })).toBeNull();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ round: 3, received: 4, krumF: 1, required: 5 });
    expect(s.finish(3, global, s.begin(3, global), [])).toBeNull(); // empty round: null, no log
    expect(lines).toHaveLength(1);
    // through the registry, the strategy's logger reaches the aggregator
    const viaRegistry = createStrategy({ strategy: 'krum', fraction: 1, minFitNodes: 5, fitConfig, params: { krumF: 1 } }, { logger });
    expect(nextModel(viaRegistry.aggregator, global, line.slice(0, 4).map((v, k) => fitResult(`n${k}`, v)), { round: 4 })).toBeNull();
    expect(lines).toHaveLength(2);
  });

  // Property: the Multi-Krum step (mean of the selected) is within (1 + √(n − f − 2))·D of the
  // honest mean (each selected is within √(n − f − 2)·D of an honest vector, itself within D of
  // the honest mean), checked on the float32 model x_0 + step (x_0 = 0) with relative slack 1e-6.
  it('keeps the step within (1 + √(n − f − 2))·D of the honest mean (300 trials)', () => {
    const rng = seededRng(3);
    for (let trial = 0; trial < 300; trial++) {
      const f = randInt(rng, 0, 4);
      const n = randInt(rng, 2 * f + 3, 2 * f + 9);
      const d = randInt(rng, 1, 6);
      const honest = honestVectors(rng, n - f, d);
      const all = [...honest, ...maliciousVectors(rng, honest, f, ATTACKS[trial % ATTACKS.length])];
      const m = rng() < 0.3 ? undefined : randInt(rng, 1, n);
      const s = new MultiKrumAggregator({ krumF: f, minFitNodes: 2 * f + 3, multiKrumM: m });
      const results = shuffled(rng, all).map(({ item, index }) => fitResult(`n${index}`, item, 1 + randInt(rng, 0, 1e6)));
      const out = nextModel(s, zeroModel(d), results)![0].data;
      const mean = new Float64Array(d);
      for (const h of honest) for (let i = 0; i < d; i++) mean[i] += h[i] / honest.length;
      let diam = 0;
      for (const a of honest) for (const b of honest) diam = Math.max(diam, dist(a, b));
      expect(dist(out, mean), `trial ${trial}`).toBeLessThanOrEqual((1 + Math.sqrt(n - f - 2)) * diam * (1 + 1e-6) + 1e-6);
    }
  });
});

// Krum needs minFitNodes ≥ 2f + 3 = 5 with f = 1; the suite's rounds have 7 updates.
runAggregatorSuite(() => new KrumAggregator({ krumF: 1, minFitNodes: 5 }));
runAggregatorSuite(() => new MultiKrumAggregator({ krumF: 1, minFitNodes: 5, multiKrumM: 3 }));
