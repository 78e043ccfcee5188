import { describe, expect, it } from 'vitest';
import { ErrorCodes, RoundMetricsSchema, parseTopic, type FitTask, type UpdateMessage } from '@fedmq/protocol';
import { RdpAccountant } from '@fedmq/privacy';
import { seededTestRandom } from './seeded.testutil.ts';
import { Harness, config, fedavg, publishes, tinyModel } from '../engine/test-kit.ts';
import type { CoordinatorCheckpoint, Effect, EngineConfig } from '../engine/types.ts';
import { withDp } from './dp-fedavg.ts';
import { PrivacyLedger } from './ledger.ts';
import type { DpOptions } from './options.ts';

const coded = (code: string) => expect.objectContaining({ code });
const NODES = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];
const Q = 0.5;
const eps = (q: number, sigma: number, k: number, delta = 1e-5) => new RdpAccountant().compose(q, sigma, k).epsilon(delta);
const close = (a: number, b: number, rel = 1e-12) => expect(Math.abs(a - b)).toBeLessThanOrEqual(rel * Math.abs(b));

const FIXED: DpOptions = { mode: 'central', noiseMultiplier: 1, clipNorm: 1 };
const ADAPTIVE: DpOptions = { mode: 'central', noiseMultiplier: 1, clipNorm: { targetQuantile: 0.5, initialClipNorm: 0.5, learningRate: 0.2, countNoiseStd: 2 } };

/** A DP engine config: the ledger (seeded stream) shared by withDp's selector and aggregator and the machine. */
function dpConfig(dp: DpOptions, seed: string, o: Partial<EngineConfig> = {}): { cfg: EngineConfig; ledger: PrivacyLedger } {
  const rounds = o.rounds ?? 3;
  const ledger = new PrivacyLedger(dp, { fraction: Q, rounds, expectedCohort: Q * NODES.length }, seededTestRandom(seed));
  return { cfg: config({ strategy: withDp(fedavg(Q), ledger), privacy: ledger, minAvailableNodes: NODES.length, rounds, ...o }), ledger };
}

function started(h: Harness): Harness {
  for (const n of NODES) h.status(n);
  h.feed({ type: 'start' });
  return h;
}

/** Answers every fit task of `round` (delta 0.1 everywhere: ‖Δ‖ = 0.1·√6 ≈ 0.245), with the clipping bit when asked. */
function answerRound(h: Harness, round: number, patch: (t: FitTask) => Partial<UpdateMessage> = (t) => (t.dp?.clipBit ? { dp: { unclipped: true } } : {})): FitTask[] {
  const tasks = h.fitTasks().filter((t) => t.round === round);
  expect(tasks.length).toBeGreaterThan(0); // the Poisson cohort of this seed is not empty
  for (const t of tasks) h.answer(t, 10, 0.1, patch(t));
  return tasks;
}

const persists = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'persist' ? [e.checkpoint] : []));

describe('engine with DP: fit tasks', () => {
  it('central, fixed C: dp = {mode, clipNorm} only', () => {
    const { cfg } = dpConfig(FIXED, 'tasks-central');
    const h = started(new Harness(cfg));
    const tasks = h.fitTasks();
    expect(tasks.length).toBeGreaterThan(0);
    for (const t of tasks) {
      expect(t.dp).toEqual({ mode: 'central', clipNorm: 1 });
      expect(Object.keys(t.dp!).sort()).toEqual(['clipNorm', 'mode']);
    }
  });

  it('local: dp carries σ', () => {
    const { cfg } = dpConfig({ mode: 'local', noiseMultiplier: 2.5, clipNorm: 0.7 }, 'tasks-local');
    const h = started(new Harness(cfg));
    for (const t of h.fitTasks()) {
      expect(t.dp).toEqual({ mode: 'local', clipNorm: 0.7, noiseMultiplier: 2.5 });
      expect(Object.keys(t.dp!).sort()).toEqual(['clipNorm', 'mode', 'noiseMultiplier']);
    }
  });

  it('adaptive: dp asks for the bit, and round 2 carries the C that round 1 moved to', () => {
    const { cfg, ledger } = dpConfig(ADAPTIVE, 'tasks-adaptive');
    const h = started(new Harness(cfg));
    for (const t of h.fitTasks()) {
      expect(t.dp).toEqual({ mode: 'central', clipNorm: 0.5, clipBit: true });
      expect(Object.keys(t.dp!).sort()).toEqual(['clipBit', 'clipNorm', 'mode']);
    }
    answerRound(h, 1); // every update within C: C shrinks
    const rec = h.machine.history[0].privacy!;
    expect(rec.clipNorm).toBe(0.5);
    expect(rec.nextClipNorm).toBe(ledger.clipNorm);
    expect(rec.nextClipNorm).toBeLessThan(0.5);
    expect(rec.unclippedFraction).not.toBeNull();
    const r2 = h.fitTasks().filter((t) => t.round === 2);
    expect(r2.length).toBeGreaterThan(0);
    for (const t of r2) expect(t.dp).toEqual({ mode: 'central', clipNorm: rec.nextClipNorm, clipBit: true });
  });
});

describe('engine with DP: round records', () => {
  it("every record's privacy.epsilon is the accountant's after the released rounds; a failed round spends nothing", () => {
    const { cfg } = dpConfig(FIXED, 'records', { rounds: 3 });
    const h = started(new Harness(cfg));
    answerRound(h, 1);
    // round 2: nobody answers before the deadline, nothing is released
    expect(h.fitTasks().filter((t) => t.round === 2).length).toBeGreaterThan(0);
    h.fireNextTimer();
    answerRound(h, 3);
    answerRound(h, 4);
    const hist = h.machine.history;
    expect(hist.map((r) => [r.round, r.accepted])).toEqual([[1, true], [2, false], [3, true], [4, true]]);
    expect(hist.map((r) => r.privacy!.steps)).toEqual([1, 1, 2, 3]);
    const expected = [eps(Q, 1, 1), eps(Q, 1, 1), eps(Q, 1, 2), eps(Q, 1, 3)];
    hist.forEach((r, i) => {
      close(r.privacy!.epsilon!, expected[i]);
      expect(r.privacy).toMatchObject({ mode: 'central', sampling: 'poisson', q: Q, noiseMultiplier: 1, accountedNoiseMultiplier: 1, clipNorm: 1, delta: 1e-5, maxEpsilon: null });
    });
    expect(hist[1].privacy!.epsilon).toBe(hist[0].privacy!.epsilon);
    expect(hist.map((r) => r.trainLoss)).toEqual([null, null, null, null]); // the nodes' losses are not noised: not published
    // the published metrics carry the same record
    const metrics = publishes(h.effects).filter((p) => parseTopic(p.topic).kind === 'roundMetrics').map((p) => RoundMetricsSchema.parse(JSON.parse(p.payload.toString())));
    expect(metrics.map((m) => m.privacy!.epsilon)).toEqual(hist.map((r) => r.privacy!.epsilon));
    expect(h.finished?.outcome).toBe('done');
  });
});

describe('engine with DP: the budget', () => {
  it('stops with FEDMQ_PRIVACY_BUDGET after exactly the rounds that fit, checkpointed, without sending the next round', () => {
    const max = (eps(Q, 1, 2) + eps(Q, 1, 3)) / 2;
    const { cfg } = dpConfig({ ...FIXED, maxEpsilon: max }, 'budget', { rounds: 10 });
    const h = started(new Harness(cfg));
    answerRound(h, 1);
    expect(h.finished).toBeUndefined();
    answerRound(h, 2);
    expect(h.finished?.outcome).toBe('stopped');
    expect(h.finished?.error?.code).toBe(ErrorCodes.PRIVACY_BUDGET);
    expect(h.finished?.error?.details).toMatchObject({ round: 3, maxEpsilon: max });
    close(h.finished!.error!.details.epsilon as number, eps(Q, 1, 2));
    close(h.finished!.error!.details.nextEpsilon as number, eps(Q, 1, 3));
    expect(h.machine.history.map((r) => [r.round, r.accepted])).toEqual([[1, true], [2, true]]);
    expect(h.fitTasks().some((t) => t.round === 3)).toBe(false);
    const cp = persists(h.effects).at(-1)!;
    expect(cp.round).toBe(2);
    expect(cp.privacy!.accountant.steps).toBe(2);
    // the checkpoint went out before the finish
    const i = h.effects.findIndex((e) => e.type === 'persist' && e.checkpoint === cp);
    expect(i).toBeLessThan(h.effects.findIndex((e) => e.type === 'finish'));
    // nothing more happens
    expect(h.feed({ type: 'start' })).toEqual([]);
  });

  it('a budget below one round stops before any task is sent', () => {
    const { cfg } = dpConfig({ ...FIXED, maxEpsilon: eps(Q, 1, 1) / 2 }, 'budget0');
    const h = started(new Harness(cfg));
    expect(h.finished?.outcome).toBe('stopped');
    expect(h.finished?.error?.code).toBe(ErrorCodes.PRIVACY_BUDGET);
    expect(h.fitTasks()).toEqual([]);
    expect(h.machine.history).toEqual([]);
  });
});

describe('engine with DP: resume', () => {
  it('a run resumed from round 1 with a fresh ledger reaches the uninterrupted ε and C of round 2', () => {
    const whole = started(new Harness(dpConfig(ADAPTIVE, 'resume-a', { rounds: 2 }).cfg));
    answerRound(whole, 1);
    answerRound(whole, 2);
    const first = started(new Harness(dpConfig(ADAPTIVE, 'resume-a', { rounds: 2 }).cfg));
    answerRound(first, 1);
    const cp = persists(first.effects).at(-1)!;
    expect(cp.round).toBe(1);
    expect(cp.privacy!.clipNorm).toBe(whole.machine.history[0].privacy!.nextClipNorm);

    const fresh = dpConfig(ADAPTIVE, 'resume-b', { rounds: 2 });
    const resumed = started(new Harness(fresh.cfg, tinyModel(), cp));
    expect(fresh.ledger.steps).toBe(1);
    const r2 = resumed.fitTasks();
    expect(r2.every((t) => t.round === 2 && t.dp?.clipNorm === cp.privacy!.clipNorm)).toBe(true);
    answerRound(resumed, 2);
    const rec = resumed.machine.history[1].privacy!;
    expect(resumed.machine.history.map((r) => r.round)).toEqual([1, 2]);
    expect(rec.steps).toBe(2);
    expect(rec.epsilon).toBe(whole.machine.history[1].privacy!.epsilon);
    close(rec.epsilon!, eps(Q, 1, 2));
    expect(rec.clipNorm).toBe(whole.machine.history[1].privacy!.clipNorm);
  });

  it('refuses a non-DP checkpoint into a DP run, a DP checkpoint into a non-DP run, and other DP settings (FEDMQ_CHECKPOINT)', () => {
    const plain = started(new Harness(config({ strategy: fedavg(Q), minAvailableNodes: NODES.length })));
    answerRound(plain, 1);
    const plainCp: CoordinatorCheckpoint = persists(plain.effects).at(-1)!;
    expect(plainCp.privacy).toBeUndefined();
    expect(() => new Harness(dpConfig(FIXED, 'cp1').cfg, tinyModel(), plainCp)).toThrow(coded(ErrorCodes.CHECKPOINT));
    expect(() => new Harness(dpConfig(FIXED, 'cp1').cfg, tinyModel(), plainCp)).toThrow(/without differential privacy/);

    const dp = started(new Harness(dpConfig(FIXED, 'cp2').cfg));
    answerRound(dp, 1);
    const dpCp = persists(dp.effects).at(-1)!;
    expect(dpCp.privacy).toBeDefined();
    expect(() => new Harness(config({ strategy: fedavg(Q), minAvailableNodes: NODES.length }), tinyModel(), dpCp)).toThrow(coded(ErrorCodes.CHECKPOINT));
    expect(() => new Harness(config({ strategy: fedavg(Q), minAvailableNodes: NODES.length }), tinyModel(), dpCp)).toThrow(/with differential privacy/);
    expect(() => new Harness(dpConfig({ ...FIXED, noiseMultiplier: 1.5 }, 'cp3').cfg, tinyModel(), dpCp)).toThrow(coded(ErrorCodes.CHECKPOINT));
    expect(() => new Harness(dpConfig({ ...FIXED, delta: 1e-6 }, 'cp3').cfg, tinyModel(), dpCp)).toThrow(coded(ErrorCodes.CHECKPOINT));
    // the same settings resume
    expect(() => new Harness(dpConfig(FIXED, 'cp3').cfg, tinyModel(), dpCp)).not.toThrow();
  });
});

describe('engine with DP: validateConfig', () => {
  it('refuses DP in async mode, with over-selection, and without the withDp strategy (FEDMQ_BAD_CONFIG)', () => {
    const asyncOpts = { bufferSize: 2, concurrency: 3, staleness: { kind: 'polynomial', exponent: 0.5 }, maxStaleness: 1 } as const;
    const { cfg } = dpConfig(FIXED, 'validate');
    expect(() => new Harness({ ...cfg, mode: 'async', async: asyncOpts })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(() => new Harness({ ...cfg, mode: 'async', async: asyncOpts })).toThrow(/synchronous rounds/);
    expect(() => new Harness({ ...cfg, overSelection: 0.5 })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(() => new Harness({ ...cfg, overSelection: 0.5 })).toThrow(/over-selection/);
    expect(() => new Harness({ ...cfg, strategy: fedavg(Q) })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(() => new Harness({ ...cfg, strategy: fedavg(Q) })).toThrow(/withDp/);
    expect(() => new Harness({ ...cfg, evaluateFraction: 0.5, valFraction: 0.2 })).toThrow(/federated evaluation/);
    // the same async options without DP are accepted
    expect(() => new Harness({ ...cfg, privacy: undefined, strategy: fedavg(Q), mode: 'async', async: asyncOpts })).not.toThrow();
  });
});

describe('engine with DP: the clipping bit', () => {
  it('an update without dp.unclipped is rejected (FEDMQ_DP_VIOLATION); the task stays open and a valid re-send is accepted', () => {
    const { cfg } = dpConfig(ADAPTIVE, 'bit');
    const h = started(new Harness(cfg));
    const tasks = h.fitTasks();
    expect(tasks.length).toBeGreaterThan(1);
    const [t0, ...rest] = tasks;
    h.answer(t0, 10, 0.1); // no dp field
    expect(h.rejections()).toEqual([ErrorCodes.DP_VIOLATION]);
    const rejected = h.notices('rejected')[0];
    expect(rejected).toMatchObject({ nodeId: t0.nodeId, round: 1 });
    expect(h.notices('accepted')).toEqual([]);
    expect(h.machine.expectsUpdate(t0.nodeId)).toBe(true); // not marked answered
    // the same node sends it again, with the bit: accepted
    h.answer(t0, 10, 0.1, { dp: { unclipped: true } });
    expect(h.notices('accepted').map((n) => (n.type === 'accepted' ? n.nodeId : ''))).toEqual([t0.nodeId]);
    expect(h.machine.expectsUpdate(t0.nodeId)).toBe(false);
    // and a third copy is a duplicate
    h.answer(t0, 10, 0.1, { dp: { unclipped: true } });
    expect(h.rejections()).toEqual([ErrorCodes.DP_VIOLATION, ErrorCodes.DUPLICATE_UPDATE]);
    for (const t of rest) h.answer(t, 10, 0.1, { dp: { unclipped: true } });
    const [rec] = h.machine.history;
    expect(rec.accepted).toBe(true);
    expect(rec.reported).toBe(tasks.length);
    // the refused copy and the duplicate are counted as failures of the round although the node's update was folded
    expect(rec.failures).toEqual({ [ErrorCodes.DP_VIOLATION]: 1, [ErrorCodes.DUPLICATE_UPDATE]: 1 });
    expect(rec.privacy!.steps).toBe(1);
  });
});
