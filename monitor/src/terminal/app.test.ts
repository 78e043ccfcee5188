import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { createElement as h } from 'react';
import { render, type Instance } from 'ink';
import { afterEach, describe, expect, it } from 'vitest';
import { topics, type CoordinatorStatus, type FederatedEval, type NodeStatus, type PrivacyRecord, type RoundMetrics } from '@fedmq/protocol';
import { FleetState } from '../state.ts';
import type { MonitorEmitterEvents } from '../monitor.ts';
import { MonitorApp } from './app.ts';

const NOW = 1_795_322_713_159;
const J = 'fleet';
const json = (x: unknown) => Buffer.from(JSON.stringify(x));
const strip = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

/** A terminal of `columns` × `rows` that keeps every frame ink writes (debug mode writes whole frames). */
class FakeTerminal extends Writable {
  frames: string[] = [];
  isTTY = true;
  constructor(readonly columns: number, readonly rows: number) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.frames.push(strip(chunk.toString()));
    this.emit('frame');
    done();
  }
  get last(): string {
    return this.frames.at(-1) ?? '';
  }
  /** Resolves with the first frame (already written or next) that satisfies `ok`. */
  until(ok: (frame: string) => boolean): Promise<string> {
    if (ok(this.last)) return Promise.resolve(this.last);
    return new Promise((resolve) => {
      const check = () => {
        if (!ok(this.last)) return;
        this.off('frame', check);
        resolve(this.last);
      };
      this.on('frame', check);
    });
  }
}

const node = (nodeId: string, state: NodeStatus['state'], extra: Partial<NodeStatus> = {}): NodeStatus => ({
  v: 2, job: J, nodeId, state, ts: NOW - 3000, numExamples: 600, device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3793, backend: 'wasm' }, ...extra,
});
const fedEval = (accuracy: number): FederatedEval => ({
  loss: 0.35, accuracy, numExamples: 180, nodes: 3, worstDecileAccuracy: 0.8, localBetterFraction: 0.5,
  accuracySpread: { min: 0.78, p10: 0.85, median: accuracy, p90: 0.96, max: 0.97 },
});
const metrics = (round: number, testAccuracy: number | null, extra: Partial<RoundMetrics> = {}): RoundMetrics => ({
  v: 2, job: J, runId: 'run-1', round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 3, reported: 3, failures: {}, trainLoss: 1 / round,
  testLoss: testAccuracy === null ? null : 0.8 / round, testAccuracy, federatedEval: null, bytesDown: 2_400_000, bytesUp: 2_391_891, durationMs: 4300,
  phases: { trainMs: 3700, aggregateMs: 12, evalMs: 590 }, ts: NOW - 60_000 + round, ...extra,
});

interface FleetOptions {
  /** Test accuracy of each finished round (null: the job has no central test set). */
  test?: (number | null)[];
  /** Federated accuracy of each finished round (null: no federated evaluation that round). */
  fed?: (number | null)[];
  /** Rounds (1-based) that failed (accepted: false). */
  failed?: number[];
  /** Coordinator state (default running). */
  state?: CoordinatorStatus['state'];
  /** Differential privacy of each finished round (none: a run without it). */
  privacy?: (PrivacyRecord | undefined)[];
}

const privacy = (epsilon: number | null, extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps: 1, epsilon, delta: 1e-5, maxEpsilon: 3, ...extra,
});

type Monitor = { state: FleetState; events: EventEmitter<MonitorEmitterEvents>; connected: boolean };

/** A fleet in the round after `rounds` finished rounds: pi-1 training, pi-2 done with the round, pi-3 offline; the engine in the fit stage. */
function fleet(rounds: number, o: FleetOptions = {}): { monitor: Monitor; feed: (topic: string, msg: unknown) => void } {
  const state = new FleetState();
  const events = new EventEmitter<MonitorEmitterEvents>();
  const feed = (topic: string, msg: unknown) => {
    for (const e of state.apply(topic, json(msg), { now: NOW - 3000 })) events.emit('event', e);
  };
  const total = Math.max(3, rounds + 1);
  feed(topics.coordinatorStatus(J), { v: 2, job: J, runId: 'run-1', state: 'running', mode: 'sync', round: 0, rounds: total, ts: NOW - 100_000 });
  for (let r = 1; r <= rounds; r++) {
    const failed = o.failed?.includes(r) ?? false;
    const fed = o.fed?.[r - 1] ?? null;
    feed(topics.roundMetrics(J, r), metrics(r, o.test ? o.test[r - 1] : [0.71, 0.85, 0.9][r - 1], {
      federatedEval: fed === null ? null : fedEval(fed),
      ...(o.privacy?.[r - 1] ? { privacy: o.privacy[r - 1] } : {}),
      ...(failed ? { accepted: false, reported: 1, failures: { timeout: 2 } } : {}),
    }));
  }
  feed(topics.stage(J), { v: 2, job: J, runId: 'run-1', round: rounds + 1, stage: 'fit', cohort: 3, online: 2, deadline: NOW + 42_000, ts: NOW - 1000 });
  feed(topics.nodeStatus(J, 'pi-1'), node('pi-1', 'training', { lastRound: { round: rounds, loss: 0.4583, trainMs: 2954.2 } }));
  feed(topics.nodeStatus(J, 'pi-2'), node('pi-2', 'idle', { lastRound: { round: rounds + 1, loss: 0.3121, trainMs: 3100 } }));
  feed(topics.nodeStatus(J, 'pi-3'), node('pi-3', 'offline'));
  if (o.state && o.state !== 'running') {
    feed(topics.coordinatorStatus(J), { v: 2, job: J, runId: 'run-1', state: o.state, mode: 'sync', round: rounds - (o.failed?.length ?? 0), rounds: total, ts: NOW - 500 });
  }
  return { monitor: { state, events, connected: true }, feed };
}

/** Renders the app for `monitor` in a `columns` × `rows` fake terminal. */
function draw(monitor: Monitor, columns: number, rows: number, job: string | undefined = J): FakeTerminal {
  const term = new FakeTerminal(columns, rows);
  const stdin = Object.assign(new PassThrough(), { isTTY: false });
  app = render(h(MonitorApp, { monitor, brokerUrl: 'mqtt://broker.local:1883', job, now: () => NOW }), {
    stdout: term as unknown as NodeJS.WriteStream, stdin: stdin as unknown as NodeJS.ReadStream, debug: true, patchConsole: false,
  });
  return term;
}

/** Every line of `frame` fits the terminal. */
function fits(frame: string, columns: number, rows: number): void {
  const lines = frame.replace(/\n$/, '').split('\n');
  expect(lines.length).toBeLessThan(rows);
  for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(columns);
}

let app: Instance | undefined;
afterEach(() => {
  app?.unmount();
  app = undefined;
});

describe('MonitorApp (ink)', () => {
  it('draws the header with the stage, the node table and the rounds in an 80×24 terminal, and follows new events', async () => {
    const { monitor, feed } = fleet(1);
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('pi-3'));
    for (const s of [
      'mqtt://broker.local:1883', `job ${J}`, 'run run-1', 'running', 'round 2 · fit · cohort 3 · 2 online · deadline in 42 s', '1/3 rounds done',
      'pi-1', 'pi-2', 'pi-3', 'offline', '0.4583', '3s ago', 'wasm',
    ]) {
      expect(frame, s).toContain(s);
    }
    expect(frame).toMatch(/pi-1\s+training/);
    expect(frame).toMatch(/pi-2\s+idle/);
    expect(frame).toMatch(/pi-3\s+offline/);
    expect(frame).toMatch(/ROUND\s+NODES\s+TRAIN\s+TEST ACC/);
    expect(frame).toMatch(/^\s+1\s+3\/3\s+1\.0000\s+0\.710\s*$/m);
    expect(frame).toContain('last round 1: 3/3 reported, up 2.4 MB, down 2.4 MB');
    expect(frame).not.toContain('FED ACC'); // no federated evaluation in this job
    fits(frame, 80, 24);

    feed(topics.nodeStatus(J, 'pi-1'), node('pi-1', 'evaluating'));
    expect(await term.until((f) => /pi-1\s+evaluating/.test(f))).toMatch(/pi-1\s+evaluating/);
    feed(topics.stage(J), { v: 2, job: J, runId: 'run-1', round: 2, stage: 'evaluate', cohort: 2, online: 2, deadline: NOW + 5000, ts: NOW - 10 });
    expect(await term.until((f) => f.includes('round 2 · evaluate'))).toContain('round 2 · evaluate · cohort 2 · 2 online · deadline in 5 s');
  });

  it('plots accuracy and loss over rounds in a larger terminal', async () => {
    const { monitor } = fleet(3);
    const term = draw(monitor, 120, 40, undefined);
    const frame = await term.until((f) => f.includes('accuracy over 3 rounds'));
    expect(frame).toContain('accuracy over 3 rounds: test 0.900');
    expect(frame).toContain('round 4 · fit');
    expect(frame).toContain('3/4 rounds done');
    expect(frame).toContain('0.900'); // the y axis reaches the last accuracy
    expect(frame).toContain('┤');
    expect(frame).toContain('test loss over 3 rounds');
    fits(frame, 120, 40);
  });

  it('shows federated accuracy and the nodes\' spread per round next to the test accuracy', async () => {
    const { monitor } = fleet(2, { fed: [0.88, 0.912] });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('FED ACC'));
    expect(frame).toMatch(/ROUND\s+NODES\s+TRAIN\s+TEST ACC\s+FED ACC/);
    expect(frame).toMatch(/^\s+2\s+3\/3\s+0\.5000\s+0\.850\s+0\.912 \(p10 0\.850 … p90 0\.960, worst decile 0\.800\)/m);
    expect(frame).toMatch(/^\s+1\s+3\/3\s+1\.0000\s+0\.710\s+0\.880 \(p10/m);
    expect(frame).toMatch(/test accuracy\s+\S+\s+0\.8500/);
    expect(frame).toMatch(/fed accuracy\s+\S+\s+0\.9120/);
    fits(frame, 80, 24);

    const big = fleet(3, { fed: [0.8, 0.88, 0.912] });
    app?.unmount();
    const tall = draw(big.monitor, 120, 40);
    const chart = await tall.until((f) => f.includes('accuracy over 3 rounds'));
    expect(chart).toContain('accuracy over 3 rounds: test 0.900 federated 0.912 p10/p90');
    fits(chart, 120, 40);
  });

  it('renders a job without a central test set from the federated evaluation alone', async () => {
    const { monitor } = fleet(2, { test: [null, null], fed: [0.88, 0.912] });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('FED ACC'));
    expect(frame).not.toContain('TEST ACC');
    expect(frame).not.toContain('test accuracy');
    expect(frame).not.toContain('test loss');
    expect(frame).toMatch(/^\s+2\s+3\/3\s+0\.5000\s+0\.912 \(p10 0\.850 … p90 0\.960, worst decile 0\.800\)/m);
    expect(frame).toMatch(/fed accuracy\s+\S+\s+0\.9120/);
    expect(frame).toMatch(/fed loss\s+\S+\s+0\.3500/);
    fits(frame, 80, 24);

    const big = fleet(3, { test: [null, null, null], fed: [0.8, 0.88, 0.912] });
    app?.unmount();
    const tall = draw(big.monitor, 120, 40);
    const chart = await tall.until((f) => f.includes('accuracy over 3 rounds'));
    expect(chart).toContain('accuracy over 3 rounds: federated 0.912 p10/p90');
    expect(chart).toContain('federated loss over 3 rounds, last 0.3500');
    expect(chart).not.toContain('test');
    expect(chart).toContain('0.912'); // the y axis reaches the federated accuracy
    fits(chart, 120, 40);
  });

  it('marks a failed round (accepted: false) as failed, retried', async () => {
    const { monitor } = fleet(3, { failed: [2], fed: [0.8, null, 0.9] });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('failed, retried'));
    expect(frame).toMatch(/^\s+2\s+1\/3\s+0\.5000\s+failed, retried \(timeout=2\)\s*$/m);
    expect(frame).toMatch(/^\s+3\s+3\/3\s+0\.3333\s+0\.900\s+0\.900 \(p10/m);
    expect(frame).toContain('2/4 rounds done'); // the failed round does not count
    fits(frame, 80, 24);

    const last = fleet(2, { failed: [2] });
    app?.unmount();
    const t2 = draw(last.monitor, 80, 24);
    expect(await t2.until((f) => f.includes('last round 2'))).toContain('last round 2 (failed, retried): 1/3 reported');
  });

  it('shows the run state instead of a stale stage once the run is done, and the waiting stage before', async () => {
    const { monitor } = fleet(3, { state: 'done' });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('done'));
    expect(frame).toMatch(/coordinator done\s+3\/4 rounds done/);
    expect(frame).not.toContain('· fit ·');

    const s = new FleetState();
    const events = new EventEmitter<MonitorEmitterEvents>();
    s.apply(topics.coordinatorStatus(J), json({ v: 2, job: J, runId: 'run-2', state: 'running', mode: 'sync', round: 0, rounds: 5, ts: NOW - 10 }));
    s.apply(topics.stage(J), json({ v: 2, job: J, runId: 'run-2', round: 1, stage: 'waiting', cohort: 0, online: 2, ts: NOW - 5 }));
    app?.unmount();
    const t2 = draw({ state: s, events, connected: true }, 80, 24);
    const waiting = await t2.until((f) => f.includes('waiting'));
    expect(waiting).toContain('round 1 · waiting · 2 online');
    expect(waiting).toContain('0/5 rounds done');
    expect(waiting).toContain('no round finished yet');
  });

  it('shows the latest ε spent of the budget and the clip norm C next to the accuracy', async () => {
    // small terminal: on the test accuracy sparkline
    const { monitor } = fleet(2, { privacy: [privacy(1.2), privacy(2.3141, { clipNorm: 0.6182, steps: 2 })] });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('ε'));
    expect(frame).toMatch(/^test accuracy\s+\S+\s+0\.8500  ε 2\.31\/3 C 0\.618\s*$/m);
    expect(frame.match(/ε/g)).toHaveLength(1);
    fits(frame, 80, 24);

    // line charts side by side: after the accuracy title; without a budget, and ∞ while unbounded
    const big = fleet(3, { privacy: [privacy(null), privacy(null), privacy(null, { maxEpsilon: null })] });
    app?.unmount();
    const tall = draw(big.monitor, 120, 40);
    const chart = await tall.until((f) => f.includes('accuracy over 3 rounds'));
    expect(chart).toMatch(/accuracy over 3 rounds: test 0\.900  ε ∞ C 0\.5\s+test loss over 3 rounds/);
    fits(chart, 120, 40);

    // with the federated title too the left half is full: ε ends the title line
    const both = fleet(3, { fed: [0.8, 0.88, 0.912], privacy: [privacy(0.5), privacy(0.9), privacy(1.25)] });
    app?.unmount();
    const t3 = draw(both.monitor, 120, 40);
    const f3 = await t3.until((f) => f.includes('accuracy over 3 rounds'));
    expect(f3).toMatch(/accuracy over 3 rounds: test 0\.900 federated 0\.912 p10\/p90\s+test loss over 3 rounds, last 0\.2667  ε 1\.25\/3 C 0\.5$/m);
    fits(f3, 120, 40);
  });

  it('shows nothing about privacy for a run without it', async () => {
    const { monitor } = fleet(2, { fed: [0.88, 0.912] });
    const term = draw(monitor, 80, 24);
    const frame = await term.until((f) => f.includes('fed accuracy'));
    expect(frame).toMatch(/^test accuracy\s+\S+\s+0\.8500\s*$/m);
    expect(frame).not.toContain('ε');
    const big = fleet(3);
    app?.unmount();
    const tall = draw(big.monitor, 120, 40);
    const chart = await tall.until((f) => f.includes('accuracy over 3 rounds'));
    expect(chart).toMatch(/accuracy over 3 rounds: test 0\.900\s+test loss over 3 rounds, last 0\.2667$/m);
    expect(chart).not.toContain('ε');
  });

  it('quits on q', async () => {
    const { monitor } = fleet(1);
    const term = new FakeTerminal(80, 24);
    const stdin = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => stdin, ref: () => stdin, unref: () => stdin });
    app = render(h(MonitorApp, { monitor, brokerUrl: 'mqtt://b:1883', job: J, now: () => NOW }), {
      stdout: term as unknown as NodeJS.WriteStream, stdin: stdin as unknown as NodeJS.ReadStream, debug: true, patchConsole: false,
    });
    await term.until((f) => f.includes('q quit'));
    const exited = app.waitUntilExit();
    stdin.write('q');
    await exited;
  });
});
