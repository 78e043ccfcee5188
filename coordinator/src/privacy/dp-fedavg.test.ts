import { describe, expect, it } from 'vitest';
import { ErrorCodes, type NamedTensor } from '@fedmq/protocol';
import { fillGaussian, gaussian } from '@fedmq/privacy';
import { seededTestRandom } from './seeded.testutil.ts';
import { addable } from '../aggregate.ts';
import { createStrategy } from '../strategies/index.ts';
import type { FitResult } from '../strategy.ts';
import { FIT, fedavg } from '../engine/test-kit.ts';
import { DpFedAvgAggregator, DpRoundAggregate, PoissonSelector, withDp } from './dp-fedavg.ts';
import { PrivacyLedger } from './ledger.ts';
import type { DpOptions } from './options.ts';

const coded = (code: string) => expect.objectContaining({ code });

/** A model of two tensors of the given sizes (values do not matter to the aggregator). */
function model(sizes: readonly number[]): NamedTensor[] {
  return sizes.map((n, i) => ({ name: `t${i}`, shape: [n], data: new Float32Array(n) }));
}

/** A FitResult whose delta is `values` split over the model's tensors. */
function fit(global: readonly NamedTensor[], nodeId: string, values: ArrayLike<number>, o: { numExamples?: number; loss?: number; unclipped?: boolean } = {}): FitResult {
  let off = 0;
  const delta = global.map((t) => {
    const d = Float32Array.from(Array.prototype.slice.call(values, off, off + t.data.length) as number[]);
    off += t.data.length;
    return addable({ data: d });
  });
  return { nodeId, numExamples: o.numExamples ?? 10, delta, loss: o.loss ?? 0.5, unclipped: o.unclipped };
}

const flat = (step: { data: ArrayLike<number> }[]) => step.flatMap((t) => Array.from(t.data));

function ledger(opts: Partial<DpOptions>, q: number, seed: string, expectedCohort = 10): PrivacyLedger {
  return new PrivacyLedger({ mode: 'central', noiseMultiplier: 1, clipNorm: 1, ...opts } as DpOptions, { fraction: q, rounds: 10, expectedCohort }, seededTestRandom(seed));
}

describe('PoissonSelector', () => {
  it('includes each node independently with probability q: cohort mean qN, variance Nq(1 − q), each node ≈ q', () => {
    const q = 0.3;
    const N = 50;
    const R = 4000;
    const l = ledger({}, q, 'poisson');
    const sel = new PoissonSelector(l);
    const nodes = Array.from({ length: N }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const sizes: number[] = [];
    const hits = new Map(nodes.map((n) => [n, 0]));
    const twin = seededTestRandom('poisson');
    const unusedRng = () => {
      throw new Error('the run rng must not be used');
    };
    for (let r = 1; r <= R; r++) {
      const cohort = sel.select(r, nodes, unusedRng);
      // one CSPRNG double per node, in order: the same cohort from an identical stream
      if (r <= 50) expect(cohort).toEqual(nodes.filter(() => twin.nextDouble() < q));
      sizes.push(cohort.length);
      for (const n of cohort) hits.set(n, hits.get(n)! + 1);
      expect(new Set(cohort).size).toBe(cohort.length);
    }
    const mean = sizes.reduce((s, x) => s + x, 0) / R;
    const variance = sizes.reduce((s, x) => s + (x - mean) ** 2, 0) / (R - 1);
    const v = N * q * (1 - q);
    // SE of the mean √(v/R); of the sample variance √((μ₄ − v²)/R), μ₄ of the binomial = v(1 + 3(N − 2)q(1 − q))
    const mu4 = v * (1 + 3 * (N - 2) * q * (1 - q));
    expect(Math.abs(mean - q * N)).toBeLessThan(6 * Math.sqrt(v / R));
    expect(Math.abs(variance - v)).toBeLessThan(6 * Math.sqrt((mu4 - v * v) / R));
    // a fixed-size cohort would have variance 0
    expect(new Set(sizes).size).toBeGreaterThan(8);
    expect(Math.min(...sizes)).toBeLessThan(q * N - 4);
    expect(Math.max(...sizes)).toBeGreaterThan(q * N + 4);
    const seP = Math.sqrt((q * (1 - q)) / R);
    for (const n of nodes) expect(Math.abs(hits.get(n)! / R - q)).toBeLessThan(6 * seP);
  });

  it('records N of each round with the ledger: expectedCohort = qN', () => {
    const l = ledger({}, 0.25, 'begin');
    const sel = new PoissonSelector(l);
    sel.select(1, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], Math.random);
    expect(l.round().expectedCohort).toBe(0.25 * 8);
    sel.select(2, ['a', 'b', 'c'], Math.random);
    expect(l.round().expectedCohort).toBe(0.25 * 3);
    expect(sel.select(3, [], Math.random)).toEqual([]);
    expect(l.round().expectedCohort).toBe(0);
  });
});

describe('DpFedAvgAggregator: central mode', () => {
  it('step = Σ clip_C(Δ_k) / (qN): clipped again by the coordinator, numExamples does not weigh, loss unweighted', () => {
    const q = 0.5;
    const N = 8;
    const C = 1;
    // σ = 1e-9: the noise (std 1e-9·C/(qN)) is far below float32's resolution of these steps
    const l = ledger({ noiseMultiplier: 1e-9, clipNorm: C }, q, 'central-clip');
    const agg = new DpFedAvgAggregator(l);
    const global = model([3, 2]);
    const updates = [
      { v: [3, 4, 0, 0, 0], n: 1, loss: 0.2, unclipped: true }, // ‖Δ‖ = 5 > C, a node that did not clip (and claims it was within C)
      { v: [0.1, -0.2, 0.3, 0, 0.1], n: 1000, loss: 0.8 }, // ‖Δ‖ < C
      { v: [0, 0, 0, 2, -2], n: 7, loss: 2.0 }, // ‖Δ‖ = 2√2 > C
      { v: [0.5, 0.5, 0.5, 0.5, 0], n: 3, loss: 1.0 }, // ‖Δ‖ = 1 = C: kept as is
    ];
    l.beginRound(N);
    const a = agg.begin(1, global);
    for (const [i, u] of updates.entries()) a.add(fit(global, `n${i}`, u.v, { numExamples: u.n, loss: u.loss, unclipped: u.unclipped }));
    expect(a.count).toBe(4);
    expect(a.totalExamples).toBe(1011);
    expect(a.trainLoss).toBeCloseTo((0.2 + 0.8 + 2.0 + 1.0) / 4, 14);
    const step = agg.finish(1, global, a, [])!;
    expect(step.map((t) => [t.name, t.shape])).toEqual([['t0', [3]], ['t1', [2]]]);
    expect(step.every((t) => t.data instanceof Float32Array)).toBe(true);
    // independently: clip each float32 delta to C in float64, sum with weight 1, divide by q·N
    const expected = new Float64Array(5);
    for (const u of updates) {
      const x = Float32Array.from(u.v);
      const norm = Math.hypot(...x);
      const s = Math.min(1, C / norm);
      for (let i = 0; i < 5; i++) expected[i] += s * x[i];
    }
    const got = flat(step);
    for (let i = 0; i < 5; i++) expect(Math.abs(got[i] - expected[i] / (q * N))).toBeLessThanOrEqual(1e-7 * Math.max(Math.abs(expected[i] / (q * N)), 1e-3));
    // hand values: (0.6, 0.8, 0, 0, 0) + (0.1, −0.2, 0.3, 0, 0.1) + (0, 0, 0, 1/√2, −1/√2) + (0.5, 0.5, 0.5, 0.5, 0), over 4
    const hand = [1.2 / 4, 1.1 / 4, 0.8 / 4, (Math.SQRT1_2 + 0.5) / 4, (0.1 - Math.SQRT1_2) / 4];
    for (let i = 0; i < 5; i++) expect(got[i]).toBeCloseTo(hand[i], 6);
    // a weighted mean (by numExamples) would be dominated by the second update
    expect(got[1]).toBeGreaterThan(0);
    expect(l.steps).toBe(1);
  });

  it('the noise: N(0, (z_Δ·C)²) on the sum, so step − noise-free step has mean 0 and std z_Δ·C/(qN)', () => {
    const n = 20_000;
    const global = model([12_000, 8_000]);
    for (const [name, opts] of [
      ['fixed C', { noiseMultiplier: 1, clipNorm: 2 }],
      ['adaptive', { noiseMultiplier: 1, clipNorm: { targetQuantile: 0.5, initialClipNorm: 2, countNoiseStd: 1 } }],
    ] as const) {
      const q = 0.25;
      const N = 20; // q·N = 5
      const l = ledger(opts as Partial<DpOptions>, q, `noise-${name}`);
      const agg = new DpFedAvgAggregator(l);
      l.beginRound(N);
      const a = agg.begin(1, global);
      const big = new Float32Array(n).map((_, i) => (i % 2 === 0 ? 0.03 : -0.01)); // ‖Δ‖ ≈ 3.16 > C = 2
      a.add(fit(global, 'one', big, { unclipped: false }));
      for (let k = 0; k < 3; k++) a.add(fit(global, `zero${k}`, new Float32Array(n), { unclipped: true }));
      const step = flat(agg.finish(1, global, a, [])!);
      const norm = Math.sqrt(big.reduce((s, x) => s + x * x, 0));
      const scale = 2 / norm;
      let sum = 0;
      let sumSq = 0;
      for (let i = 0; i < n; i++) {
        const e = step[i] - (scale * big[i]) / (q * N);
        sum += e;
        sumSq += e * e;
      }
      const mean = sum / n;
      const std = Math.sqrt(sumSq / n - mean * mean);
      const expectedStd = (l.deltaNoiseMultiplier * 2) / (q * N);
      expect(Math.abs(mean)).toBeLessThan((6 * expectedStd) / Math.sqrt(n));
      // the sample std of n normals has relative SE 1/√(2n) (0.5% here)
      expect(Math.abs(std / expectedStd - 1)).toBeLessThan(6 / Math.sqrt(2 * n));
      if (name === 'adaptive') {
        // z_Δ = (1 − (2σ_b)⁻²)^(−½) = 2/√3: the deltas carry more noise than z = 1 alone
        expect(l.deltaNoiseMultiplier).toBeCloseTo(2 / Math.sqrt(3), 12);
        expect(Math.abs(std / (2 / (q * N)) - 1)).toBeGreaterThan(20 / Math.sqrt(2 * n));
      }
    }
  });

  it('the noise is the ledger stream\'s Box–Muller draws: reproduced exactly from an identical stream', () => {
    const q = 0.5;
    const l = ledger({ noiseMultiplier: 1.3, clipNorm: 0.5 }, q, 'exact-noise');
    const agg = new DpFedAvgAggregator(l);
    const global = model([3, 4]);
    l.beginRound(6);
    const a = agg.begin(1, global);
    const u = [0.1, 0.2, -0.1, 0.05, 0, 0, 0.3];
    a.add(fit(global, 'a', u));
    const step = flat(agg.finish(1, global, a, [])!);
    const z = fillGaussian(new Float64Array(7), seededTestRandom('exact-noise'));
    const norm = Math.hypot(...Float32Array.from(u));
    const s = Math.min(1, 0.5 / norm);
    const expected = Float32Array.from(u, (x, i) => (s * Math.fround(x) + 1.3 * 0.5 * z[i]) / 3);
    expect(step).toEqual(Array.from(expected));
  });
});

describe('DpFedAvgAggregator: local mode', () => {
  it('step = plain mean over the reported updates: no coordinator clipping, no coordinator noise', () => {
    const l = ledger({ mode: 'local', noiseMultiplier: 2, clipNorm: 1 }, 0.1, 'local');
    const agg = new DpFedAvgAggregator(l);
    const global = model([2, 2]);
    const updates = [[3, 4, 0, 12], [-1, 0.5, 0.25, 0], [0, 0, 7, -7]]; // norms 13, ≈1.1, ≈9.9: the nodes' noise makes them large
    l.beginRound(100); // q·N = 10, not the denominator in local mode
    const a = agg.begin(1, global);
    for (const [i, v] of updates.entries()) a.add(fit(global, `n${i}`, v, { numExamples: 1 + 100 * i }));
    const step = flat(agg.finish(1, global, a, [])!);
    const expected = [0, 1, 2, 3].map((i) => Math.fround((updates[0][i] + updates[1][i] + updates[2][i]) / 3));
    expect(step).toEqual(expected);
    // the ledger's stream was not drawn from: its next double is the first of an identical stream
    expect(l.random.nextDouble()).toBe(seededTestRandom('local').nextDouble());
    expect(l.steps).toBe(1);
  });
});

describe('DpFedAvgAggregator: adaptive clipping', () => {
  const adaptiveOpts = (c0 = 1): Partial<DpOptions> => ({ noiseMultiplier: 0.5, clipNorm: { targetQuantile: 0.5, initialClipNorm: c0, learningRate: 0.2, countNoiseStd: 0.5 } });

  it('refuses an update without the bit (FEDMQ_DP_VIOLATION) and folds nothing of it', () => {
    const l = ledger(adaptiveOpts(), 0.5, 'violation');
    const agg = new DpFedAvgAggregator(l);
    const global = model([2, 1]);
    l.beginRound(4);
    const a = agg.begin(1, global) as DpRoundAggregate;
    expect(() => a.add(fit(global, 'nobit', [0.5, 0.5, 0.5], { loss: 9 }))).toThrow(coded(ErrorCodes.DP_VIOLATION));
    expect(a.count).toBe(0);
    expect(a.totalExamples).toBe(0);
    expect(Array.from(a.sum)).toEqual([0, 0, 0]);
    expect(Number.isNaN(a.trainLoss)).toBe(true);
    a.add(fit(global, 'ok', [0.1, 0.2, 0.2], { unclipped: true, loss: 1 }));
    expect(() => a.add(fit(global, 'nobit2', [1, 1, 1]))).toThrow(coded(ErrorCodes.DP_VIOLATION));
    expect(a.count).toBe(1);
    expect(a.unclipped).toBe(1);
    expect(a.trainLoss).toBe(1);
    expect(Array.from(a.sum)).toEqual(Array.from(Float32Array.from([0.1, 0.2, 0.2])));
  });

  it('the unclipped count reaches ledger.release: all within C shrinks C, all clipped grows it, as C·exp(−η(b̄ − γ))', () => {
    const q = 0.5;
    const N = 20; // q·N = 10
    for (const within of [true, false]) {
      const seed = `release-${within}`;
      const l = ledger(adaptiveOpts(1), q, seed);
      const agg = new DpFedAvgAggregator(l);
      const global = model([3]);
      l.beginRound(N);
      const a = agg.begin(1, global) as DpRoundAggregate;
      for (let k = 0; k < 10; k++) a.add(fit(global, `n${k}`, within ? [0.1, 0, 0] : [5, 0, 0], { unclipped: within }));
      expect(a.unclipped).toBe(within ? 10 : 0);
      agg.finish(1, global, a, []);
      // the stream: first the sum's noise (3 values: 2 pairs = 4 doubles), then the count's gaussian
      const twin = seededTestRandom(seed);
      fillGaussian(new Float64Array(3), twin);
      const g = gaussian(twin);
      const bBar = ((within ? 10 : 0) - 10 / 2 + 0.5 * g) / 10 + 0.5;
      expect(l.record().unclippedFraction).toBeCloseTo(bBar, 12);
      expect(l.clipNorm).toBeCloseTo(Math.exp(-0.2 * (bBar - 0.5)), 12);
      if (within) expect(l.clipNorm).toBeLessThan(1);
      else expect(l.clipNorm).toBeGreaterThan(1);
      // the round's step used C₀ = 1, the next round's tasks get the new C
      expect(l.record().clipNorm).toBe(1);
      l.beginRound(N);
      expect(l.fitDp().clipNorm).toBe(l.clipNorm);
    }
  });
});

describe('DpFedAvgAggregator: edge cases', () => {
  it('finish with no update returns null and spends nothing', () => {
    const l = ledger({ clipNorm: { targetQuantile: 0.5, countNoiseStd: 1 } }, 0.5, 'empty');
    const agg = new DpFedAvgAggregator(l);
    const global = model([4]);
    l.beginRound(10);
    expect(agg.finish(1, global, agg.begin(1, global), [{ nodeId: 'x', reason: 'timeout' }])).toBeNull();
    expect(l.steps).toBe(0);
    expect(l.epsilon()).toBe(0);
    expect(l.clipNorm).toBe(0.1);
    expect(l.random.nextDouble()).toBe(seededTestRandom('empty').nextDouble());
  });

  it('refuses a staleness scale, another aggregator\'s aggregate, and a wrong-sized delta', () => {
    const l = ledger({}, 0.5, 'edge');
    const agg = new DpFedAvgAggregator(l);
    const global = model([2]);
    l.beginRound(4);
    const a = agg.begin(1, global);
    expect(() => a.add(fit(global, 'a', [1, 1]), 0.5)).toThrow(RangeError);
    a.add(fit(global, 'b', [1, 1]), 1);
    expect(() => a.add({ nodeId: 'c', numExamples: 1, loss: 0, delta: [addable({ data: new Float32Array(3) })] })).toThrow(RangeError);
    expect(a.count).toBe(1);
    expect(() => new DpFedAvgAggregator(l).finish(1, global, a, [])).toThrow(TypeError);
  });
});

describe('withDp', () => {
  it('replaces the selector and the aggregator, keeps name, optimizer and fit config', () => {
    const l = ledger({}, 0.5, 'with');
    const base = fedavg(0.5);
    const s = withDp(base, l);
    expect(s.selector).toBeInstanceOf(PoissonSelector);
    expect(s.aggregator).toBeInstanceOf(DpFedAvgAggregator);
    expect(s.aggregator.name).toBe('dp-fedavg');
    expect(s.name).toBe(base.name);
    expect(s.optimizer).toBe(base.optimizer);
    expect(s.fitConfig(3)).toEqual(base.fitConfig(3));
  });

  it('refuses a robust aggregator (FEDMQ_BAD_CONFIG)', () => {
    const l = ledger({}, 0.5, 'robust');
    const robust = [['median', {}], ['trimmed-mean', {}], ['norm-bounding', { maxNorm: 1 }], ['krum', { krumF: 1 }]] as const;
    for (const [aggregator, params] of robust) {
      const base = createStrategy({ strategy: 'fedavg', fraction: 0.5, minFitNodes: 5, fitConfig: FIT, aggregator, params });
      expect(base.aggregator.name).toBe(aggregator);
      expect(() => withDp(base, l)).toThrow(coded(ErrorCodes.BAD_CONFIG));
    }
    expect(() => withDp(createStrategy({ strategy: 'fedavg', fraction: 0.5, minFitNodes: 1, fitConfig: FIT, serverOptimizer: 'adam' }), l)).not.toThrow();
  });
});
