/**
 * Bit-identity with the strategies before the Selector / Aggregator / ServerOptimizer split:
 * fixtures/reference.json holds what the old one-class-per-algorithm code (commit in its `note`)
 * produced on the inputs generated below; the presets must reproduce it exactly (model bytes,
 * optimizer state, selections and fit configs), also when the state goes through JSON into a
 * fresh strategy after round 1.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { seededRng, type NamedTensor } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { addable } from '../aggregate.ts';
import type { Strategy, StrategyState } from '../strategy.ts';
import { STRATEGY_NAMES, createStrategy } from './index.ts';

// ---- the input generator, the same as the script that produced the fixture: mulberry32 (@fedmq/protocol's seededRng) ----
const mulberry32 = seededRng;
const SHAPES: [string, number[]][] = [['dense/kernel', [10, 20]], ['dense/bias', [20]], ['out/kernel', [20, 3]]];
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
function refGlobal(): NamedTensor[] {
  const rng = mulberry32(20260101);
  return SHAPES.map(([name, shape]) => ({ name, shape: [...shape], data: Float32Array.from({ length: size(shape) }, () => (rng() - 0.5) * 2) }));
}
interface RefUpdate { nodeId: string; numExamples: number; loss: number; delta: Float32Array[] }
/** 7 updates of round `round`: varied numExamples in rounds 1–2, all 100 in round 3; delta scales 0.25…2.25 (some clipped at maxNorm 0.4). */
function refUpdates(round: number): RefUpdate[] {
  const rng = mulberry32(777 + round * 1000);
  return Array.from({ length: 7 }, (_, k) => {
    const numExamples = round === 3 ? 100 : 1 + Math.floor(rng() * 1000);
    const scale = 0.25 + 2 * rng();
    const loss = 0.1 + 2 * rng();
    const delta = SHAPES.map(([, shape]) => Float32Array.from({ length: size(shape) }, () => (rng() - 0.5) * 0.1 * scale));
    return { nodeId: `node-${k}`, numExamples, loss, delta };
  });
}
const NODES = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, '0')}`);
const sha = (ts: readonly { data: Float32Array | Float64Array }[]) => {
  const h = createHash('sha256');
  for (const t of ts) h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return h.digest('hex');
};
// ---- end of the shared part ----

/** Hash of the state's tensors (momentum or m/v, float64 bytes) and steps, without the name. */
function stateDigest(state: StrategyState | null): string | null {
  if (!state) return null;
  const h = createHash('sha256');
  for (const key of ['momentum', 'm', 'v']) {
    const ts = state[key] as { name: string; data: number[] }[] | null | undefined;
    if (ts === undefined) continue;
    h.update(`${key}:`);
    if (ts === null) h.update('null');
    else for (const t of ts) { h.update(t.name); h.update(new Uint8Array(Float64Array.from(t.data).buffer)); }
  }
  if (state.steps !== undefined) h.update(`steps:${String(state.steps)}`);
  return h.digest('hex');
}

interface Case {
  id: string; strategy: string; params: Record<string, number>; minFitNodes: number;
  selections: string[][]; config: unknown; rounds: string[]; states: (string | null)[];
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/reference.json', import.meta.url), 'utf8')) as { note: string; cases: Case[] };
const FIT = { epochs: 2, batchSize: 16, learningRate: 0.05 };
const STATEFUL = new Set(['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad']);

const build = (c: Case): Strategy => createStrategy({ strategy: c.strategy, fraction: 0.3, minFitNodes: c.minFitNodes, fitConfig: { ...FIT }, params: c.params });
function round(s: Strategy, r: number, global: NamedTensor[]): NamedTensor[] {
  const agg = s.aggregator.begin(r, global);
  for (const u of refUpdates(r)) agg.add({ nodeId: u.nodeId, numExamples: u.numExamples, loss: u.loss, delta: u.delta.map((data) => addable({ data })) });
  const step = s.aggregator.finish(r, global, agg, [{ nodeId: 'late', reason: 'timeout' }]);
  if (step === null) throw new Error(`${s.name} kept the model in round ${r}`);
  return s.optimizer.step(global, step);
}

describe('bit-identity with the pre-split strategies (fixtures/reference.json)', () => {
  it('covers all 11 presets', () => {
    expect(fixture.note).toMatch(/commit [0-9a-f]{40}/);
    expect(new Set(fixture.cases.map((c) => c.strategy))).toEqual(new Set(STRATEGY_NAMES));
    expect(STRATEGY_NAMES).toHaveLength(11);
  });

  for (const c of fixture.cases) {
    it(`${c.id}: same selections, fit config, models and optimizer state, round by round`, () => {
      const s = build(c);
      expect(s.name).toBe(c.strategy);
      const rng = mulberry32(4242);
      const selections = [1, 2, 3].map((r) => s.selector.select(r, NODES, rng));
      expect(selections).toEqual(c.selections);
      expect(s.fitConfig(3)).toEqual(c.config);
      let g = refGlobal();
      for (let r = 1; r <= 3; r++) {
        g = round(s, r, g);
        expect(sha(g), `round ${r}`).toBe(c.rounds[r - 1]);
        expect(stateDigest(s.getState()), `state after round ${r}`).toBe(c.states[r - 1]);
      }
    });

    if (STATEFUL.has(c.strategy)) {
      it(`${c.id}: state through JSON after round 1 into a fresh strategy gives the same rounds 2 and 3`, () => {
        const a = build(c);
        let x = round(a, 1, refGlobal());
        const b = build(c);
        b.setState(JSON.parse(JSON.stringify(a.getState())));
        for (let r = 2; r <= 3; r++) {
          x = round(b, r, x);
          expect(sha(x), `round ${r}`).toBe(c.rounds[r - 1]);
        }
      });
    }
  }
});
