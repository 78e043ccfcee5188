import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes, type NamedTensor } from '@fedmq/protocol';
import { AlieColluder, AlieCollusion, alieDelta, alieZ, inverseNormalCdf, type AlieRound } from './alie.ts';
import type { FromWorker, ToWorker } from './protocol.ts';

const t = (...v: number[]): NamedTensor[] => [{ name: 'w', shape: [v.length], data: Float32Array.from(v) }];

describe('inverse normal CDF (Acklam)', () => {
  it('matches known quantiles of N(0, 1) to 1e-8 (reference: Python statistics.NormalDist.inv_cdf)', () => {
    const known: [number, number][] = [
      [0.5, 0], [0.6, 0.2533471031357998], [0.75, 0.6744897501960817], [0.8, 0.8416212335729144],
      [0.8413447460685429, 1], [0.95, 1.6448536269514715], [0.975, 1.9599639845400536], [0.99, 2.3263478740408408],
      [0.001, -3.090232306167813], [1e-10, -6.361340902404056], [0.02425, -1.9729610513118845], [0.97575, 1.9729610513118847],
    ];
    for (const [p, q] of known) expect(Math.abs(inverseNormalCdf(p) - q)).toBeLessThan(1e-8 * Math.max(1, Math.abs(q)));
    expect(inverseNormalCdf(0.3)).toBeCloseTo(-inverseNormalCdf(0.7), 12);
    expect(inverseNormalCdf(0)).toBe(-Infinity);
    expect(inverseNormalCdf(1)).toBe(Infinity);
    expect(() => inverseNormalCdf(1.5)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => inverseNormalCdf(Number.NaN)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});

describe('ALIE z (Baruch et al. 2019, Algorithm 1)', () => {
  it('is Φ⁻¹((n − s)/n) with s = ⌊n/2 + 1⌋ − f', () => {
    // n = 10, f = 2: s = 6 − 2 = 4, Φ⁻¹(6/10)
    expect(alieZ(10, 2)).toBeCloseTo(0.2533471031357998, 8);
    // n = 10, f = 3: s = 3, Φ⁻¹(0.7)
    expect(alieZ(10, 3)).toBeCloseTo(inverseNormalCdf(0.7), 12);
    // n = 5, f = 2: s = ⌊3.5⌋ − 2 = 1, Φ⁻¹(4/5)
    expect(alieZ(5, 2)).toBeCloseTo(0.8416212335729144, 8);
    // n = 4, f = 2: s = 1, Φ⁻¹(3/4)
    expect(alieZ(4, 2)).toBeCloseTo(0.6744897501960817, 8);
    // n = 50, f = 12: s = 14, Φ⁻¹(36/50)
    expect(alieZ(50, 12)).toBeCloseTo(0.5828415072712162, 8);
    // n = 10, f = 1: s = 5, Φ⁻¹(1/2) = 0
    expect(alieZ(10, 1)).toBe(0);
  });

  it('stays finite when the colluders are a majority (outside the paper) and rejects bad n, f', () => {
    expect(alieZ(4, 3)).toBeCloseTo(0.6744897501960817, 8); // s clamped to 1
    expect(alieZ(1, 1)).toBe(0);
    for (const [n, f] of [[0, 0], [5, 0], [5, 6], [5.5, 2]]) expect(() => alieZ(n, f)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});

describe('ALIE delta: μ − z·σ per coordinate', () => {
  it('matches hand-computed values (sample standard deviation)', () => {
    // coordinate 0: 1, 2, 3 → μ 2, σ 1; coordinate 1: 0, 0, 6 → μ 2, σ √12; coordinate 2: −1 ×3 → μ −1, σ 0
    const honest = [t(1, 0, -1), t(2, 0, -1), t(3, 6, -1)];
    const out = alieDelta(honest, 0.5);
    expect(out[0]).toMatchObject({ name: 'w', shape: [3] });
    expect(out[0].data[0]).toBeCloseTo(1.5, 6);
    expect(out[0].data[1]).toBeCloseTo(2 - 0.5 * Math.sqrt(12), 6);
    expect(out[0].data[2]).toBeCloseTo(-1, 6);
    expect(Array.from(honest[0][0].data)).toEqual([1, 0, -1]); // the honest deltas are untouched
    // two colluders: 0 and 4 → μ 2, σ = √8; z = 1
    expect(alieDelta([t(0), t(4)], 1)[0].data[0]).toBeCloseTo(2 - Math.sqrt(8), 6);
  });

  it('sends the honest delta with a single colluder (σ = 0), whatever z', () => {
    expect(Array.from(alieDelta([t(0.25, -3)], 5)[0].data)).toEqual([0.25, -3]);
  });

  it('rejects no deltas, a non-finite z and deltas that do not match', () => {
    expect(() => alieDelta([], 1)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => alieDelta([t(1)], Infinity)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => alieDelta([t(1), t(1, 2)], 1)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});

describe('AlieCollusion', () => {
  afterEach(() => vi.useRealTimers());
  const malicious = new Set(['a', 'b', 'c']);
  const sub = (nodeId: string, delta: NamedTensor[], round = 1, deadline = Date.now() + 10_000) =>
    ({ nodeId, runId: 'run', round, cohort: 5, deadline, timeoutMs: 10_000, delta });

  it('answers every colluder that announced a fit task with μ − zσ once all have posted, then forgets the round', () => {
    const crafted: AlieRound[] = [];
    const c = new AlieCollusion({ malicious, settleMs: 0, onCrafted: (r) => crafted.push(r) });
    const got: Record<string, number[]> = {};
    // a and b received fit tasks of round 1 (c is malicious but was not given one); h1 is honest
    for (const nodeId of ['a', 'b', 'h1']) c.announce({ nodeId, runId: 'run', round: 1 });
    c.submit(sub('a', t(1, 2)), (d) => (got.a = Array.from(d[0].data)));
    expect(got).toEqual({});
    expect(c.pendingRounds).toBe(1);
    c.submit(sub('b', t(3, 2)), (d) => (got.b = Array.from(d[0].data)));
    // n = 5 (the cohort), f = 2: z = Φ⁻¹(0.8); coordinate 0: μ 2, σ √2
    const z = inverseNormalCdf(0.8);
    expect(got.a).toEqual(got.b);
    expect(got.a[0]).toBeCloseTo(2 - z * Math.SQRT2, 6);
    expect(got.a[1]).toBeCloseTo(2, 6);
    expect(crafted).toHaveLength(1);
    expect(crafted[0]).toMatchObject({ round: 1, n: 5, f: 2, nodeIds: ['a', 'b'] });
    expect(crafted[0].z).toBeCloseTo(z, 12);
    expect(c.pendingRounds).toBe(0);
  });

  it('takes z from the options', () => {
    const c = new AlieCollusion({ malicious, z: 2, settleMs: 0 });
    for (const nodeId of ['a', 'b']) c.announce({ nodeId, runId: 'run', round: 1 });
    let out: number[] = [];
    c.submit(sub('a', t(0)), () => undefined);
    c.submit(sub('b', t(4)), (d) => (out = Array.from(d[0].data)));
    expect(out[0]).toBeCloseTo(2 - 2 * Math.sqrt(8), 5);
  });

  it('answers those that posted when a colluder drops out, at deadline − 10 % of the round', () => {
    vi.useFakeTimers();
    const c = new AlieCollusion({ malicious, settleMs: 0 });
    for (const nodeId of ['a', 'b']) c.announce({ nodeId, runId: 'run', round: 1 });
    let out: number[] | undefined;
    c.submit(sub('a', t(1.5)), (d) => (out = Array.from(d[0].data)));
    vi.advanceTimersByTime(8_999);
    expect(out).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(out).toEqual([1.5]); // alone: σ = 0, the honest delta
    expect(c.pendingRounds).toBe(0);
    // b posts after its round was answered: it gets its own delta back at once
    let late: number[] | undefined;
    c.submit(sub('b', t(7)), (d) => (late = Array.from(d[0].data)));
    expect(late).toEqual([7]);
    expect(c.pendingRounds).toBe(0);
  });

  it('waits settleMs after the first delta for colluders whose task arrives later', () => {
    vi.useFakeTimers();
    const crafted: AlieRound[] = [];
    const c = new AlieCollusion({ malicious, settleMs: 1000, onCrafted: (r) => crafted.push(r) });
    c.announce({ nodeId: 'a', runId: 'run', round: 1 });
    const got: Record<string, number[]> = {};
    c.submit(sub('a', t(1, 2)), (d) => (got.a = Array.from(d[0].data)));
    vi.advanceTimersByTime(400);
    expect(got).toEqual({}); // a alone has posted, but b may still get a task of this round
    c.announce({ nodeId: 'b', runId: 'run', round: 1 });
    vi.advanceTimersByTime(2000);
    expect(got).toEqual({}); // b announced: wait for its delta
    c.submit(sub('b', t(3, 2)), (d) => (got.b = Array.from(d[0].data)));
    expect(got.a).toEqual(got.b);
    expect(crafted[0]).toMatchObject({ f: 2, nodeIds: ['a', 'b'] });
    // alone for the whole window: answered with its own delta when it ends
    c.announce({ nodeId: 'a', runId: 'run', round: 2 });
    let alone: number[] | undefined;
    c.submit(sub('a', t(5), 2), (d) => (alone = Array.from(d[0].data)));
    vi.advanceTimersByTime(999);
    expect(alone).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(alone).toEqual([5]);
  });

  it('keeps rounds (and runs) apart and drops open rounds on close', () => {
    vi.useFakeTimers();
    const c = new AlieCollusion({ malicious, settleMs: 0 });
    for (const round of [1, 2]) for (const nodeId of ['a', 'b']) c.announce({ nodeId, runId: 'run', round });
    c.announce({ nodeId: 'a', runId: 'other', round: 1 });
    c.announce({ nodeId: 'b', runId: 'other', round: 1 });
    const replies: string[] = [];
    c.submit(sub('a', t(1), 1), () => replies.push('a1'));
    c.submit(sub('a', t(1), 2), () => replies.push('a2'));
    c.submit({ ...sub('b', t(1), 1), runId: 'other' }, () => replies.push('b1-other'));
    expect(c.pendingRounds).toBe(3);
    c.submit(sub('b', t(1), 2), () => replies.push('b2'));
    expect(replies.sort()).toEqual(['a2', 'b2']);
    c.close();
    expect(c.pendingRounds).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(replies).toHaveLength(2);
  });
});

describe('AlieColluder (worker side)', () => {
  it('posts the honest delta with its buffers to transfer and resolves with the answer', async () => {
    const posted: { m: FromWorker; transfer: ArrayBuffer[] }[] = [];
    const w = new AlieColluder((m, transfer) => posted.push({ m, transfer }));
    const big = new Float32Array(8).fill(2);
    const view = [{ name: 'w', shape: [2], data: big.subarray(2, 4) }]; // a view: copied before transfer
    const p = w.transform('a', view, 3, { runId: 'run', cohort: 2, deadline: 1, timeoutMs: 2 });
    expect(posted).toHaveLength(1);
    const m = posted[0].m as Extract<FromWorker, { type: 'alie' }>;
    expect(m).toMatchObject({ type: 'alie', nodeId: 'a', runId: 'run', round: 3, cohort: 2, deadline: 1, timeoutMs: 2 });
    expect(posted[0].transfer).toEqual([m.tensors[0].data.buffer]);
    expect(m.tensors[0].data.buffer).not.toBe(big.buffer);
    const answer: ToWorker = { type: 'alie', nodeId: 'a', runId: 'run', round: 3, tensors: t(9, 9) };
    w.receive({ type: 'stop' });
    w.receive(answer);
    expect(Array.from((await p)[0].data)).toEqual([9, 9]);
  });

  it('fails pending transforms on close', async () => {
    const w = new AlieColluder(() => undefined);
    const p = w.transform('a', t(1), 1, { runId: 'run', cohort: 1, deadline: 1, timeoutMs: 1 });
    w.close();
    await expect(p).rejects.toMatchObject({ code: ErrorCodes.TRAINING_FAILED });
  });
});
