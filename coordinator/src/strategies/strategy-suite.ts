import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { addable } from '../aggregate.ts';
import type { FitResult, Strategy } from '../strategy.ts';

/**
 * The sampling options every strategy under the suite must be built with (spread them into the
 * strategy's options): fraction C = 0.3, minFitNodes = 2, and a fixed fit config. The suite
 * checks `configureFit` against exactly these.
 */
export interface StrategySuiteBase {
  fractionFit: number;
  minFitNodes: number;
  fitConfig: FitConfig;
}

/** Tuning of {@link runStrategySuite}; every field is optional. */
export interface StrategySuiteOptions {
  /** Title of the `describe` block. Default `strategy contract: <name>`. */
  title?: string;
  /** Updates folded into each round (≥ 1; robust rules may need more than 2f + 2). Default 7. */
  updates?: number;
  /**
   * Allowed difference between the models of the same updates added in two orders, relative:
   * |a − b| ≤ tolerance · max(1, |a|). Default 1e-6 (float32 rounding of the result).
   */
  orderTolerance?: number;
  /** Overrides of the base options, e.g. a larger `minFitNodes` for Krum (needs ≥ 2f + 3). */
  base?: Partial<StrategySuiteBase>;
}

/** The options the suite passes to `make`. */
export const SUITE_BASE: Readonly<StrategySuiteBase> = Object.freeze({
  fractionFit: 0.3,
  minFitNodes: 2,
  fitConfig: { epochs: 2, batchSize: 16, learningRate: 0.05 },
});

/** Park–Miller minimal standard generator on [0, 1), seeded: the suite's reproducible rng. */
export function seededRng(seed: number): () => number {
  let s = seed % 2147483647;
  if (s <= 0) s += 2147483646;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

/** The suite's global model: a [2, 3] kernel, a [3] bias and a scalar, 10 parameters. */
function suiteGlobal(): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([0.5, -0.25, 1, 0, 2, -1.5]) },
    { name: 'dense/bias', shape: [3], data: new Float32Array([0.1, 0, -0.1]) },
    { name: 'scale', shape: [], data: new Float32Array([1]) },
  ];
}

/** Deterministic updates of varied numExamples and deltas for `global`; `salt` varies them per round. */
function suiteUpdates(global: readonly NamedTensor[], count: number, salt: number): { nodeId: string; numExamples: number; values: Float32Array[]; loss: number }[] {
  const rng = seededRng(1000 + salt);
  return Array.from({ length: count }, (_, k) => ({
    nodeId: `node-${k}`,
    numExamples: 1 + Math.floor(rng() * 500),
    values: global.map((t) => Float32Array.from(t.data, () => (rng() - 0.5) * 0.2)),
    loss: 0.5 + rng(),
  }));
}

/** Folds `updates` (plain float32 deltas, wrapped with {@link addable}) into a round of `s` and aggregates it. */
function runRound(s: Strategy, round: number, global: readonly NamedTensor[], updates: ReturnType<typeof suiteUpdates>): NamedTensor[] | null {
  const agg = s.beginRound(round, global);
  for (const u of updates) {
    const r: FitResult = { nodeId: u.nodeId, numExamples: u.numExamples, loss: u.loss, delta: u.values.map((data) => addable({ data })) };
    agg.add(r);
  }
  return s.aggregateFit(round, global, agg, []);
}

const values = (ts: readonly NamedTensor[] | null): number[][] => (ts ?? []).map((t) => Array.from(t.data));

/**
 * The shared contract tests of a {@link Strategy}, run by every strategy's test file:
 *
 * ```ts
 * runStrategySuite((base) => new FedAdam({ ...base, eta: 0.05 }));
 * ```
 *
 * `make` is called once per test for a fresh strategy, with {@link SUITE_BASE} (fractionFit 0.3,
 * minFitNodes 2, a fit config) that it must pass on. Registers a vitest `describe` block checking:
 * - `configureFit` selects max(⌈C·K⌉, minFitNodes) distinct available nodes (all K when fewer),
 *   the same ones again for the same seed, and returns the fit config;
 * - a round of several updates (float32 deltas through `addable`) gives `count`/`totalExamples`,
 *   and `aggregateFit` returns finite float32 tensors with the global model's names and shapes,
 *   without modifying the global model;
 * - a round with no update gives `null` and leaves the strategy as if it had not happened;
 * - the result does not depend on the order updates were added (within `orderTolerance`);
 * - with `getState`/`setState`: the state survives `JSON.stringify`/`JSON.parse`, is a copy, and a
 *   fresh strategy restored from it takes the same next step (bit for bit); `setState` refuses
 *   another strategy's state with a TypeError. Without them: the strategy must be stateless (a
 *   fresh instance takes the same round-2 step as one that ran round 1).
 */
export function runStrategySuite(make: (base: StrategySuiteBase) => Strategy, opts: StrategySuiteOptions = {}): void {
  const base: StrategySuiteBase = { ...SUITE_BASE, ...opts.base, fitConfig: { ...(opts.base?.fitConfig ?? SUITE_BASE.fitConfig) } };
  const fresh = (): Strategy => make({ ...base, fitConfig: { ...base.fitConfig } });
  const n = opts.updates ?? 7;
  const tol = opts.orderTolerance ?? 1e-6;
  const title = opts.title ?? `strategy contract: ${fresh().name}`;

  describe(title, () => {
    it('has a name for --strategy', () => {
      expect(fresh().name).toMatch(/^[a-z][a-z0-9-]*$/);
    });

    it('samples max(⌈C·K⌉, minFitNodes) distinct available nodes, reproducibly, with the fit config', () => {
      for (const k of [1, 2, 3, 7, 10, 20, 101]) {
        const nodes = Array.from({ length: k }, (_, i) => `n${String(i).padStart(3, '0')}`);
        const expected = Math.min(k, Math.max(base.minFitNodes, Math.ceil(base.fractionFit * k)));
        const s = fresh();
        const a = s.configureFit(1, nodes, seededRng(42));
        expect(a.selected).toHaveLength(expected);
        expect(new Set(a.selected).size).toBe(expected);
        for (const id of a.selected) expect(nodes).toContain(id);
        expect(a.config).toEqual(base.fitConfig);
        expect(s.configureFit(1, nodes, seededRng(42)).selected).toEqual(a.selected);
        expect(fresh().configureFit(1, nodes, seededRng(42)).selected).toEqual(a.selected);
      }
    });

    it('aggregates a round into finite tensors with the global names and shapes, leaving the global model alone', () => {
      const global = suiteGlobal();
      const before = values(global);
      const updates = suiteUpdates(global, n, 1);
      const s = fresh();
      const agg = s.beginRound(1, global);
      for (const u of updates) agg.add({ nodeId: u.nodeId, numExamples: u.numExamples, loss: u.loss, delta: u.values.map((data) => addable({ data })) });
      expect(agg.count).toBe(n);
      expect(agg.totalExamples).toBe(updates.reduce((x, u) => x + u.numExamples, 0));
      const next = s.aggregateFit(1, global, agg, [{ nodeId: 'late', reason: 'timeout' }]);
      expect(next).not.toBeNull();
      expect(next!.map((t) => t.name)).toEqual(global.map((t) => t.name));
      expect(next!.map((t) => t.shape)).toEqual(global.map((t) => t.shape));
      for (const [i, t] of next!.entries()) {
        expect(t.data).toBeInstanceOf(Float32Array);
        expect(t.data.length).toBe(global[i].data.length);
        expect(Array.from(t.data).every(Number.isFinite)).toBe(true);
        expect(t.data).not.toBe(global[i].data);
      }
      expect(values(global)).toEqual(before);
    });

    it('keeps the model (null) when no update was accepted, and the empty round leaves no trace', () => {
      const global = suiteGlobal();
      const updates = suiteUpdates(global, n, 2);
      const s = fresh();
      expect(s.aggregateFit(1, global, s.beginRound(1, global), [{ reason: 'timeout' }])).toBeNull();
      expect(values(runRound(s, 2, global, updates))).toEqual(values(runRound(fresh(), 2, global, updates)));
    });

    it('does not depend on the order updates were added', () => {
      const global = suiteGlobal();
      const updates = suiteUpdates(global, n, 3);
      const a = values(runRound(fresh(), 1, global, updates));
      const b = values(runRound(fresh(), 1, global, [...updates].reverse()));
      const rotated = [...updates.slice(2), ...updates.slice(0, 2)];
      const c = values(runRound(fresh(), 1, global, rotated));
      for (const other of [b, c]) {
        for (let t = 0; t < a.length; t++) {
          for (let i = 0; i < a[t].length; i++) expect(Math.abs(a[t][i] - other[t][i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(a[t][i])));
        }
      }
    });

    it('round-trips its state through getState/setState (JSON) to the same next step, or is stateless', () => {
      const global = suiteGlobal();
      const r1 = suiteUpdates(global, n, 4);
      const r2 = suiteUpdates(global, n, 5);
      const a = fresh();
      const x1 = runRound(a, 1, global, r1)!;
      const b = fresh();
      if (a.getState && b.setState) {
        const state = a.getState();
        const json = JSON.stringify(state);
        expect(JSON.parse(json)).toEqual(state);
        b.setState(JSON.parse(json));
        const x2a = runRound(a, 2, x1, r2);
        expect(JSON.stringify(state)).toBe(json); // a copy: round 2 did not change it
        expect(values(runRound(b, 2, x1, r2))).toEqual(values(x2a));
        expect(JSON.stringify(b.getState!())).toBe(JSON.stringify(a.getState()));
        expect(() => fresh().setState!({ strategy: 'not-a-strategy' })).toThrow(TypeError);
      } else {
        expect(a.getState).toBeUndefined();
        expect(a.setState).toBeUndefined();
        expect(values(runRound(b, 2, x1, r2))).toEqual(values(runRound(a, 2, x1, r2)));
      }
    });
  });
}
