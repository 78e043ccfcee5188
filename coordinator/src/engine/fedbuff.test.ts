import { describe, expect, it } from 'vitest';
import { ErrorCodes, parseTopic, topics } from '@fedmq/protocol';
import { stalenessWeight } from './fedbuff.ts';
import { Harness, config, publishes, tinyModel } from './test-kit.ts';
import type { AsyncOptions } from './types.ts';

const ASYNC: AsyncOptions = { bufferSize: 2, concurrency: 3, staleness: { kind: 'polynomial', exponent: 0.5 }, maxStaleness: 1 };
const nodes = ['a', 'b', 'c', 'd', 'e'];

function started(o: Partial<AsyncOptions> = {}, extra: Parameters<typeof config>[0] = {}): Harness {
  const h = new Harness(config({ mode: 'async', rounds: 3, async: { ...ASYNC, ...o }, ...extra }));
  for (const n of nodes) h.status(n);
  h.feed({ type: 'start' });
  return h;
}

const open = (h: Harness) => [...h.machine.tasks.values()].filter((t) => !t.answered);
const values = (ts: { data: Float32Array }[]) => ts.map((t) => Array.from(t.data));

describe('round engine: asynchronous buffered aggregation (FedBuff)', () => {
  it('s(τ) = (1 + τ)^−A, or 1 for constant', () => {
    expect(stalenessWeight({ kind: 'polynomial', exponent: 0.5 }, 0)).toBe(1);
    expect(stalenessWeight({ kind: 'polynomial', exponent: 0.5 }, 3)).toBe(0.5);
    expect(stalenessWeight({ kind: 'polynomial', exponent: 1 }, 1)).toBe(0.5);
    expect(stalenessWeight({ kind: 'constant' }, 9)).toBe(1);
  });

  it('keeps C tasks in flight, each on the version current when it was sent, and refills a freed slot', () => {
    const h = started();
    expect(open(h)).toHaveLength(3);
    const first = h.fitTasks();
    expect(first.every((t) => t.modelVersion === 1)).toBe(true);
    expect(new Set(first.map((t) => t.nodeId)).size).toBe(3);
    h.answer(first[0], 10, 1);
    expect(open(h)).toHaveLength(3);
    const refill = h.fitTasks().at(-1)!;
    expect(first.map((t) => t.nodeId)).not.toContain(refill.nodeId); // a node without a task
  });

  it('takes a server step after K accepted updates: Σ n·s(τ)·Δ / Σ n, a new version, a record with staleness', () => {
    const h = started();
    const [t1, t2, t3] = h.fitTasks();
    h.answer(t1, 10, 1);
    h.answer(t2, 30, -1);
    const step1 = h.latestModel();
    expect(step1.version).toBe(2);
    expect(values(step1.weights)).toEqual(tinyModel().map((t) => Array.from(t.data, (x) => Math.fround(x + Math.fround((10 - 30) / 40)))));
    expect(h.machine.history[0]).toMatchObject({ round: 1, mode: 'async', reported: 2, accepted: true, staleness: { mean: 0, max: 0 } });
    // t3 was sent on v1 and arrives after v2: τ = 1, weight 2^−0.5
    const t4 = h.fitTasks().find((t) => t.modelVersion === 2)!;
    h.answer(t3, 10, 1);
    h.answer(t4, 10, 1);
    const w = 2 ** -0.5;
    const expected = values(step1.weights).map((xs) => xs.map((x) => Math.fround(x + Math.fround((10 * w * 1 + 10 * 1) / 20))));
    const step2 = h.latestModel();
    expect(step2.version).toBe(3);
    for (const [i, xs] of values(step2.weights).entries()) for (const [j, x] of xs.entries()) expect(x).toBeCloseTo(expected[i][j], 6);
    expect(h.machine.history[1].staleness).toEqual({ mean: 0.5, max: 1 });
  });

  it('rejects updates staler than maxStaleness with FEDMQ_TOO_STALE, never folding them in', () => {
    const h = started({ maxStaleness: 0 });
    const [t1, t2, t3] = h.fitTasks();
    h.answer(t1, 10, 1);
    h.answer(t2, 10, 1); // step 1: v2
    h.answer(t3, 10, 100); // trained on v1: τ = 1 > 0
    expect(h.rejections()).toEqual([ErrorCodes.TOO_STALE]);
    expect(h.machine.history).toHaveLength(1);
    expect(open(h)).toHaveLength(3); // its slot went to another node
  });

  it('a redelivered accepted update is a duplicate until the step is applied; a malformed one leaves its task open', () => {
    const h = started({ bufferSize: 3 });
    const [t1, t2] = h.fitTasks();
    h.answer(t1, 10, 1);
    h.answer(t1, 10, 1); // QoS 1 redelivery
    h.answer(t2, 10, Number.NaN); // refused for its content: the task stays open
    h.answer(t2, 10, 1); // the corrected answer is taken
    expect(h.rejections()).toEqual([ErrorCodes.DUPLICATE_UPDATE, ErrorCodes.NON_FINITE]);
    expect(open(h)).toHaveLength(3);
    const t3 = h.fitTasks().find((t) => ![t1.taskId, t2.taskId].includes(t.taskId))!;
    h.answer(t3, 10, 1); // the third: step 1 is applied
    expect(h.machine.history).toHaveLength(1);
    h.answer(t1, 10, 1);
    expect(h.rejections().at(-1)).toBe(ErrorCodes.STALE_UPDATE);
  });

  it('gives up a task at its deadline or when its node goes offline, and hands the slot on', () => {
    const h = started();
    const [t1, t2] = h.fitTasks();
    h.status(t1.nodeId, 'offline');
    expect(open(h).some((t) => t.taskId === t1.taskId)).toBe(false);
    expect(open(h)).toHaveLength(3);
    h.time = t2.deadline;
    h.feed({ type: 'timer', id: `task:${t2.taskId}` });
    expect(open(h).some((t) => t.taskId === t2.taskId)).toBe(false);
    h.answer(t2, 10, 1);
    expect(h.rejections()).toEqual([ErrorCodes.STALE_UPDATE]);
  });

  it('keeps a version retained while a task in flight names it, and clears it after', () => {
    const h = started();
    const [t1, t2, t3] = h.fitTasks();
    h.answer(t1, 10, 1);
    h.answer(t2, 10, 1); // v2 published; t3 still on v1
    const cleared = () => publishes(h.effects).filter((p) => p.topic === topics.model('engine-test', 1) && p.payload.length === 0);
    expect(cleared()).toHaveLength(0);
    h.answer(t3, 10, 1);
    const v1 = () => open(h).filter((t) => t.version === 1);
    expect(v1().length).toBeGreaterThan(0); // t1's slot was refilled on v1 before the step
    expect(cleared()).toHaveLength(0);
    for (const t of v1()) h.answer(h.fitTasks().find((x) => x.taskId === t.taskId)!, 10, 1);
    expect(cleared()).toHaveLength(1);
  });

  it('evaluates step s centrally before applying step s + 1, and ends after `rounds` steps', () => {
    const h = started({ bufferSize: 1 }, { centralEval: true, rounds: 2 });
    const [t1, t2] = h.fitTasks();
    h.answer(t1, 10, 1);
    expect(h.effects.filter((e) => e.type === 'evaluate')).toHaveLength(1);
    h.answer(t2, 10, 1); // buffered: step 2 waits for step 1's evaluation
    expect(h.latestModel().version).toBe(2);
    h.feed({ type: 'evaluated', version: 2, loss: 0.4, accuracy: 0.8 });
    expect(h.machine.history[0]).toMatchObject({ round: 1, testAccuracy: 0.8 });
    expect(h.latestModel().version).toBe(3);
    h.feed({ type: 'evaluated', version: 3, loss: 0.3, accuracy: 0.85 });
    expect(h.machine.history.map((r) => r.testAccuracy)).toEqual([0.8, 0.85]);
    expect(h.finished?.outcome).toBe('done');
  });

  it('checkpoints after each step and resumes from it with the same model and version', () => {
    const h = started({}, { rounds: 3 });
    const [t1, t2] = h.fitTasks();
    h.answer(t1, 10, 1);
    h.answer(t2, 10, 1);
    const cp = h.effects.filter((e) => e.type === 'persist').at(-1)!;
    if (cp.type !== 'persist') throw new Error('no checkpoint');
    expect(cp.checkpoint).toMatchObject({ mode: 'async', round: 1, modelVersion: 2 });
    const r = new Harness(config({ mode: 'async', rounds: 3, async: ASYNC }), tinyModel(), cp.checkpoint);
    for (const n of nodes) r.status(n);
    r.feed({ type: 'start' });
    expect(r.latestModel().version).toBe(2);
    expect(values(r.latestModel().weights)).toEqual(values(h.latestModel().weights));
    expect(r.fitTasks().every((t) => t.round === 2)).toBe(true);
    const kinds = publishes(r.effects).map((p) => parseTopic(p.topic).kind);
    expect(kinds).toContain('nodeTask');
  });

  it('refuses federated evaluation, over-selection and non-streaming aggregators in async mode', () => {
    expect(() => started({}, { evaluateFraction: 0.5, valFraction: 0.1 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => started({}, { overSelection: 0.2 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});
