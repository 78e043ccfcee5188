import type { NamedTensor } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { addable } from '../aggregate.ts';
import type { Aggregator, FitResult, ServerOptimizer, StepTensor } from '../strategy.ts';

/**
 * The shared contract suites of the strategy parts (Hono's habit: one interface, one suite that
 * every implementation runs): {@link runAggregatorSuite} and {@link runOptimizerSuite}. The
 * selector has its own test (fedavg-selector.test.ts) and composed strategies are checked in
 * index.test.ts and reference.test.ts.
 */

/** Park–Miller minimal standard generator on [0, 1), seeded: the suites' reproducible rng. */
export function seededRng(seed: number): () => number {
  let s = seed % 2147483647;
  if (s <= 0) s += 2147483646;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

/** The suites' global model: a [2, 3] kernel, a [3] bias and a scalar, 10 parameters. */
export function suiteGlobal(): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2, 3], data: new Float32Array([0.5, -0.25, 1, 0, 2, -1.5]) },
    { name: 'dense/bias', shape: [3], data: new Float32Array([0.1, 0, -0.1]) },
    { name: 'scale', shape: [], data: new Float32Array([1]) },
  ];
}

/** One deterministic update of {@link suiteUpdates}. */
export interface SuiteUpdate { nodeId: string; numExamples: number; values: Float32Array[]; loss: number }

/** Deterministic updates of varied numExamples and deltas for `global`; `salt` varies them per round. */
export function suiteUpdates(global: readonly NamedTensor[], count: number, salt: number): SuiteUpdate[] {
  const rng = seededRng(1000 + salt);
  return Array.from({ length: count }, (_, k) => ({
    nodeId: `node-${k}`,
    numExamples: 1 + Math.floor(rng() * 500),
    values: global.map((t) => Float32Array.from(t.data, () => (rng() - 0.5) * 0.2)),
    loss: 0.5 + rng(),
  }));
}

/** `u` as a {@link FitResult} (plain float32 deltas wrapped with {@link addable}). */
export const fitResultOf = (u: SuiteUpdate): FitResult => ({ nodeId: u.nodeId, numExamples: u.numExamples, loss: u.loss, delta: u.values.map((data) => addable({ data })) });

/** Folds `updates` (each with its scale, if any) into a round of `a` and finishes it. */
export function aggregateRound(a: Aggregator, round: number, global: readonly NamedTensor[], updates: readonly SuiteUpdate[], scales?: readonly number[]): StepTensor[] | null {
  const agg = a.begin(round, global);
  updates.forEach((u, k) => agg.add(fitResultOf(u), scales?.[k]));
  return a.finish(round, global, agg, []);
}

const values = (ts: readonly { data: ArrayLike<number> }[] | null): number[][] => (ts ?? []).map((t) => Array.from(t.data));

/** |a − b| ≤ tol · max(1, |a|) element-wise, with a message naming the position. */
function expectClose(a: number[][], b: number[][], tol: number, what: string): void {
  expect(b.length, what).toBe(a.length);
  for (let t = 0; t < a.length; t++) {
    expect(b[t].length, what).toBe(a[t].length);
    for (let i = 0; i < a[t].length; i++) {
      expect(Math.abs(a[t][i] - b[t][i]), `${what}: tensor ${t} value ${i}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(a[t][i])));
    }
  }
}

/** Tuning of {@link runAggregatorSuite}; every field is optional. */
export interface AggregatorSuiteOptions {
  /** Title of the `describe` block. Default `aggregator contract: <name>`. */
  title?: string;
  /** Updates folded into each round (≥ 1; Krum needs ≥ 2f + 3). Default 7. */
  updates?: number;
  /**
   * Allowed difference between the steps of the same updates added in two orders, relative:
   * |a − b| ≤ tolerance · max(1, |a|). Default 1e-6 (float32 rounding of the result).
   */
  orderTolerance?: number;
}

/**
 * The shared contract tests of an {@link Aggregator}, run by every aggregator's test file:
 *
 * ```ts
 * runAggregatorSuite(() => new TrimmedMeanAggregator({ trimBeta: 0.2 }));
 * ```
 *
 * `make` is called for a fresh aggregator whenever one is needed. Registers a vitest `describe`
 * block checking:
 * - a round of several updates (float32 deltas through `addable`) gives `count`, `totalExamples`
 *   and the numExamples-weighted `trainLoss`, and `finish` returns a finite step with the global
 *   model's names and shapes (float32 or float64 values), without modifying the global model;
 * - an empty round gives `null` (trainLoss NaN) and leaves no trace on the next round;
 * - the step does not depend on the order updates were added (within `orderTolerance`);
 * - `scale`: absent and 1 give the same step bit for bit; the same scale s on every update gives
 *   s × the step; a negative or non-finite scale is refused with a RangeError and nothing folded;
 * - bad updates (numExamples ≤ 0 or not finite, wrong tensor count) are refused with a RangeError
 *   and not counted;
 * - `finish` refuses an aggregate made by another aggregator (even of the same kind) with a TypeError;
 * - `streaming` is a boolean and the name is a valid `--aggregator` name.
 */
export function runAggregatorSuite(make: () => Aggregator, opts: AggregatorSuiteOptions = {}): void {
  const n = opts.updates ?? 7;
  const tol = opts.orderTolerance ?? 1e-6;
  const title = opts.title ?? `aggregator contract: ${make().name}`;

  describe(title, () => {
    it('has a name for --aggregator and says whether it streams', () => {
      const a = make();
      expect(a.name).toMatch(/^[a-z][a-z0-9-]*$/);
      expect(typeof a.streaming).toBe('boolean');
    });

    it('aggregates a round into a finite step with the global names and shapes, leaving the global model alone', () => {
      const global = suiteGlobal();
      const before = values(global);
      const updates = suiteUpdates(global, n, 1);
      const a = make();
      const agg = a.begin(1, global);
      for (const u of updates) agg.add(fitResultOf(u));
      expect(agg.count).toBe(n);
      const total = updates.reduce((x, u) => x + u.numExamples, 0);
      expect(agg.totalExamples).toBe(total);
      expect(agg.trainLoss).toBeCloseTo(updates.reduce((x, u) => x + u.numExamples * u.loss, 0) / total, 12);
      const step = a.finish(1, global, agg, [{ nodeId: 'late', reason: 'timeout' }]);
      expect(step).not.toBeNull();
      expect(step!.map((t) => t.name)).toEqual(global.map((t) => t.name));
      expect(step!.map((t) => t.shape)).toEqual(global.map((t) => t.shape));
      for (const [i, t] of step!.entries()) {
        expect(t.data instanceof Float32Array || t.data instanceof Float64Array).toBe(true);
        expect(t.data.length).toBe(global[i].data.length);
        expect(Array.from(t.data).every(Number.isFinite)).toBe(true);
        expect(t.data).not.toBe(global[i].data);
      }
      expect(values(global)).toEqual(before);
    });

    it('keeps the model (null) when no update was accepted, and the empty round leaves no trace', () => {
      const global = suiteGlobal();
      const updates = suiteUpdates(global, n, 2);
      const a = make();
      const empty = a.begin(1, global);
      expect(empty.count).toBe(0);
      expect(empty.totalExamples).toBe(0);
      expect(empty.trainLoss).toBeNaN();
      expect(a.finish(1, global, empty, [{ reason: 'timeout' }])).toBeNull();
      expect(values(aggregateRound(a, 2, global, updates))).toEqual(values(aggregateRound(make(), 2, global, updates)));
    });

    it('does not depend on the order updates were added', () => {
      const global = suiteGlobal();
      const updates = suiteUpdates(global, n, 3);
      const a = values(aggregateRound(make(), 1, global, updates));
      const b = values(aggregateRound(make(), 1, global, [...updates].reverse()));
      const c = values(aggregateRound(make(), 1, global, [...updates.slice(2), ...updates.slice(0, 2)]));
      expectClose(a, b, tol, 'reversed');
      expectClose(a, c, tol, 'rotated');
    });

    it('applies a scale: absent = 1 bit for bit; the same s everywhere gives s × the step', () => {
      const global = suiteGlobal();
      const updates = suiteUpdates(global, n, 6);
      const plain = values(aggregateRound(make(), 1, global, updates));
      expect(values(aggregateRound(make(), 1, global, updates, updates.map(() => 1)))).toEqual(plain);
      for (const s of [0.5, 0.25, 2, 0.3]) {
        const scaled = values(aggregateRound(make(), 1, global, updates, updates.map(() => s)));
        // float32 rounding of the step (or of the scaled collected vectors), relative ~1e-7
        expectClose(plain.map((t) => t.map((x) => s * x)), scaled, 1e-6, `scale ${s}`);
      }
    });

    it('refuses a bad scale or a bad update with a RangeError, recording nothing', () => {
      const global = suiteGlobal();
      const [u] = suiteUpdates(global, 1, 7);
      const agg = make().begin(1, global);
      for (const s of [-0.5, NaN, Infinity]) expect(() => agg.add(fitResultOf(u), s)).toThrow(RangeError);
      for (const numExamples of [0, -3, NaN, Infinity]) expect(() => agg.add({ ...fitResultOf(u), numExamples })).toThrow(RangeError);
      expect(() => agg.add({ ...fitResultOf(u), delta: fitResultOf(u).delta.slice(1) })).toThrow(RangeError);
      expect(agg.count).toBe(0);
      expect(agg.totalExamples).toBe(0);
      agg.add(fitResultOf(u));
      expect(agg.count).toBe(1);
    });

    it('refuses to finish an aggregate it did not begin (TypeError)', () => {
      const global = suiteGlobal();
      const a = make();
      const other = make().begin(1, global);
      expect(() => a.finish(1, global, other, [])).toThrow(TypeError);
      const foreign = { add() {}, count: 0, totalExamples: 0, trainLoss: NaN };
      expect(() => a.finish(1, global, foreign, [])).toThrow(TypeError);
    });
  });
}

/** Tuning of {@link runOptimizerSuite}. */
export interface OptimizerSuiteOptions {
  /** Title of the `describe` block. Default `optimizer contract: <name>`. */
  title?: string;
}

/** A deterministic step for {@link suiteGlobal}: float32 (the mean's) or float64 (the robust rules') values. */
function suiteStep(salt: number, kind: 'f32' | 'f64'): StepTensor[] {
  const rng = seededRng(2000 + salt);
  return suiteGlobal().map((t) => {
    const v = Array.from(t.data, () => (rng() - 0.5) * 0.2);
    return { name: t.name, shape: [...t.shape], data: kind === 'f32' ? Float32Array.from(v) : Float64Array.from(v) };
  });
}

/**
 * The shared contract tests of a {@link ServerOptimizer}, run by every optimizer's test file:
 *
 * ```ts
 * runOptimizerSuite(() => new AdamOptimizer({ serverLr: 0.05 }));
 * ```
 *
 * Registers a vitest `describe` block checking:
 * - `step` returns new finite float32 tensors with the global model's names and shapes, for
 *   float32 and float64 steps (any aggregator's), modifying neither input;
 * - a step that does not fit the model is refused with a RangeError;
 * - with `getState`/`setState`: the state survives `JSON.stringify`/`JSON.parse`, is a copy, names
 *   the optimizer in `strategy`, and a fresh optimizer restored from it takes the same next step
 *   (bit for bit, and ends in the same state); `setState` refuses another optimizer's state with
 *   a TypeError. Without them: the optimizer is stateless (a fresh instance takes the same second
 *   step as one that took a first).
 */
export function runOptimizerSuite(make: () => ServerOptimizer, opts: OptimizerSuiteOptions = {}): void {
  const title = opts.title ?? `optimizer contract: ${make().name}`;

  describe(title, () => {
    it('has a name for --server-optimizer', () => {
      expect(make().name).toMatch(/^[a-z][a-z0-9-]*$/);
    });

    it('steps to new finite float32 tensors named and shaped like the model, for float32 and float64 steps', () => {
      for (const kind of ['f32', 'f64'] as const) {
        const global = suiteGlobal();
        const before = values(global);
        const step = suiteStep(1, kind);
        const stepBefore = values(step);
        const next = make().step(global, step);
        expect(next.map((t) => t.name)).toEqual(global.map((t) => t.name));
        expect(next.map((t) => t.shape)).toEqual(global.map((t) => t.shape));
        for (const [i, t] of next.entries()) {
          expect(t.data).toBeInstanceOf(Float32Array);
          expect(t.data.length).toBe(global[i].data.length);
          expect(Array.from(t.data).every(Number.isFinite)).toBe(true);
          expect(t.data).not.toBe(global[i].data);
        }
        expect(values(global)).toEqual(before);
        expect(values(step)).toEqual(stepBefore);
      }
    });

    it('refuses a step that does not fit the model (RangeError)', () => {
      const step = suiteStep(2, 'f32');
      expect(() => make().step(suiteGlobal(), step.slice(1))).toThrow(RangeError);
      expect(() => make().step(suiteGlobal(), [{ ...step[0], data: new Float32Array(2) }, step[1], step[2]])).toThrow(RangeError);
    });

    it('round-trips its state through getState/setState (JSON) to the same next step, or is stateless', () => {
      const global = suiteGlobal();
      const a = make();
      const x1 = a.step(global, suiteStep(4, 'f32'));
      const b = make();
      const d2 = suiteStep(5, 'f64');
      if (a.getState && a.setState) {
        expect(b.getState && b.setState).toBeTruthy();
        const state = a.getState();
        expect(state.strategy).toBe(a.name);
        const json = JSON.stringify(state);
        expect(JSON.parse(json)).toEqual(state);
        b.setState!(JSON.parse(json));
        const x2a = a.step(x1, d2);
        expect(JSON.stringify(state)).toBe(json); // a copy: the second step did not change it
        expect(values(b.step(x1, d2))).toEqual(values(x2a));
        expect(JSON.stringify(b.getState!())).toBe(JSON.stringify(a.getState()));
        expect(() => make().setState!({ strategy: 'not-an-optimizer' })).toThrow(TypeError);
        expect(() => make().setState!({ ...state, strategy: a.name === 'momentum' ? 'adam' : 'momentum' })).toThrow(TypeError);
      } else {
        expect(a.getState).toBeUndefined();
        expect(a.setState).toBeUndefined();
        expect(values(b.step(x1, d2))).toEqual(values(a.step(x1, d2)));
      }
    });
  });
}
