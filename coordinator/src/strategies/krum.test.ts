import { seededRng } from '@fedmq/protocol';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Krum, MultiKrum, krumSelect, type MultiKrumOptions } from './krum.ts';
import { ATTACKS, dist, fitResult, honestVectors, maliciousVectors, randInt, shuffled, zeroModel } from './robust-fixtures.ts';
import { runStrategySuite } from './strategy-suite.ts';

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

describe('Krum and MultiKrum strategies', () => {
  it('Krum applies the single best delta; MultiKrum the unweighted mean of the m best', () => {
    const global = [{ name: 'w', shape: [1], data: f32([100]) }];
    const krum = new Krum({ fractionFit: 1, minFitNodes: 5, fitConfig, byzantine: 1 });
    expect(krum.name).toBe('krum');
    let agg = krum.beginRound(1, global);
    line.forEach((v, k) => agg.add(fitResult(`n${k}`, v, 10 ** k)));
    expect(Array.from(krum.aggregateFit(1, global, agg, [])![0].data)).toEqual([101]);

    const multi = new MultiKrum({ fractionFit: 1, minFitNodes: 5, fitConfig, byzantine: 1, m: 3 });
    expect(multi.name).toBe('multi-krum');
    agg = multi.beginRound(1, global);
    line.forEach((v, k) => agg.add(fitResult(`n${k}`, v, 10 ** k)));
    // mean of 1, 0, 2 = 1, not weighted by numExamples
    expect(Array.from(multi.aggregateFit(1, global, agg, [])![0].data)).toEqual([101]);

    // default m = n − f = 4: mean of 1, 0, 2, 10 = 3.25
    const dflt = new MultiKrum({ fractionFit: 1, minFitNodes: 5, fitConfig, byzantine: 1 });
    agg = dflt.beginRound(1, global);
    line.forEach((v, k) => agg.add(fitResult(`n${k}`, v)));
    expect(Array.from(dflt.aggregateFit(1, global, agg, [])![0].data)).toEqual([103.25]);
  });

  it('samples at least minFitNodes = 2f + 3 nodes when available, as FedAvg', () => {
    const s = new Krum({ fractionFit: 0.1, minFitNodes: 7, fitConfig, byzantine: 2 });
    const nodes = Array.from({ length: 20 }, (_, i) => `n${i}`);
    const { selected, config } = s.configureFit(1, nodes, seededRng(5));
    expect(new Set(selected).size).toBe(7);
    expect(config).toEqual(fitConfig);
    expect(s.configureFit(1, nodes.slice(0, 4), seededRng(5)).selected).toHaveLength(4); // all when fewer
  });

  it('caps m at n − f of the round', () => {
    const global = zeroModel(1);
    const s = new MultiKrum({ fractionFit: 1, minFitNodes: 5, fitConfig, byzantine: 1, m: 50 });
    const agg = s.beginRound(1, global);
    line.forEach((v, k) => agg.add(fitResult(`n${k}`, v)));
    expect(Array.from(s.aggregateFit(1, global, agg, [])![0].data)).toEqual([3.25]);
  });

  it('refuses configurations with n < 2f + 3 in the constructor', () => {
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 4, fitConfig, byzantine: 1 })).toThrow(RangeError);
    expect(() => new MultiKrum({ fractionFit: 1, minFitNodes: 6, fitConfig, byzantine: 2, m: 1 })).toThrow(/2f \+ 3/);
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 2, fitConfig, byzantine: 0 })).toThrow(RangeError);
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 3, fitConfig, byzantine: 0 })).not.toThrow();
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 7, fitConfig, byzantine: 2 })).not.toThrow();
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 9, fitConfig, byzantine: -1 })).toThrow(RangeError);
    expect(() => new Krum({ fractionFit: 1, minFitNodes: 9, fitConfig, byzantine: 1.5 })).toThrow(RangeError);
    for (const m of [0, -1, 1.5, NaN]) expect(() => new MultiKrum({ fractionFit: 1, minFitNodes: 9, fitConfig, byzantine: 1, m })).toThrow(RangeError);
    expect(() => new Krum({ fractionFit: 0, minFitNodes: 9, fitConfig, byzantine: 1 })).toThrow(RangeError);
  });

  it('keeps the model and logs the reason when fewer than 2f + 3 updates arrived', () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
    const global = zeroModel(1);
    const s = new Krum({ fractionFit: 1, minFitNodes: 5, fitConfig, byzantine: 1, logger });
    const agg = s.beginRound(3, global);
    line.slice(0, 4).forEach((v, k) => agg.add(fitResult(`n${k}`, v)));
    expect(s.aggregateFit(3, global, agg, [{ nodeId: 'n4', reason: 'timeout' }])).toBeNull();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ round: 3, received: 4, byzantine: 1, required: 5 });
    expect(s.aggregateFit(3, global, s.beginRound(3, global), [])).toBeNull(); // empty round: null, no log
    expect(lines).toHaveLength(1);
  });

  // Property: the Multi-Krum step (mean of the selected) is within (1 + √(n − f − 2))·D of the
  // honest mean (each selected is within √(n − f − 2)·D of an honest vector, itself within D of
  // the honest mean), checked on the strategy's float32 output with relative slack 1e-6.
  it('keeps the step within (1 + √(n − f − 2))·D of the honest mean (300 trials)', () => {
    const rng = seededRng(3);
    for (let trial = 0; trial < 300; trial++) {
      const f = randInt(rng, 0, 4);
      const n = randInt(rng, 2 * f + 3, 2 * f + 9);
      const d = randInt(rng, 1, 6);
      const honest = honestVectors(rng, n - f, d);
      const all = [...honest, ...maliciousVectors(rng, honest, f, ATTACKS[trial % ATTACKS.length])];
      const m = rng() < 0.3 ? undefined : randInt(rng, 1, n);
      const s = new MultiKrum({ fractionFit: 1, minFitNodes: 2 * f + 3, fitConfig, byzantine: f, m });
      const global = zeroModel(d);
      const agg = s.beginRound(1, global);
      shuffled(rng, all).forEach(({ item, index }) => agg.add(fitResult(`n${index}`, item, 1 + randInt(rng, 0, 1e6))));
      const out = s.aggregateFit(1, global, agg, [])![0].data;
      const mean = new Float64Array(d);
      for (const h of honest) for (let i = 0; i < d; i++) mean[i] += h[i] / honest.length;
      let diam = 0;
      for (const a of honest) for (const b of honest) diam = Math.max(diam, dist(a, b));
      expect(dist(out, mean), `trial ${trial}`).toBeLessThanOrEqual((1 + Math.sqrt(n - f - 2)) * diam * (1 + 1e-6) + 1e-6);
    }
  });
});

// Krum needs minFitNodes ≥ 2f + 3 = 5 with f = 1; the suite's rounds have 7 updates.
runStrategySuite((base) => new Krum({ ...base, byzantine: 1 }), { base: { minFitNodes: 5 } });
runStrategySuite((base) => new MultiKrum({ ...base, byzantine: 1, m: 3 }), { base: { minFitNodes: 5 } });
