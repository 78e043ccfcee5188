import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CoordinatorEvents } from '@fedmq/coordinator';
import type { RoundRecord } from '@fedmq/protocol';
import type { SimulationEvents } from '@fedmq/simulator';
import { formatTimeLeft, progressView, simulateProgress, type ProgressState, type ProgressStream } from './progress.ts';

const T0 = 1_800_000_000_000;

function state(s: Partial<ProgressState> = {}): ProgressState {
  return { phase: 'fit', mode: 'sync', connected: 10, total: 10, round: 1, done: 0, rounds: 15, reported: 0, selected: 0, ...s };
}

describe('progressView: the bar of a state, at a time', () => {
  it('while starting and connecting: the nodes connected out of the run\'s', () => {
    expect(progressView(state({ phase: 'starting', total: 1000 }), T0)).toEqual({ value: 0, total: 0, text: 'starting 1000 nodes…' });
    expect(progressView(state({ phase: 'starting', total: 0 }), T0).text).toBe('starting…');
    expect(progressView(state({ phase: 'connecting', connected: 37, total: 1000 }), T0)).toEqual({ value: 37, total: 1000, text: 'nodes connected 37/1000' });
    // a natural split before its plan is known
    expect(progressView(state({ phase: 'connecting', connected: 3, total: 0 }), T0)).toEqual({ value: 3, total: 0, text: 'nodes connected 3' });
    // waiting again later in the run: the round and the nodes online
    expect(progressView(state({ phase: 'connecting', connected: 8, round: 5, done: 4 }), T0).text).toBe('round 5 · waiting for nodes · 8/10 online');
  });

  it('a sync round: reported out of selected, the nodes online, the time left to the deadline', () => {
    const v = progressView(state({ round: 3, done: 2, reported: 12, selected: 100, connected: 998, total: 1000, deadline: T0 + 112_000 }), T0);
    expect(v).toEqual({ value: 12, total: 100, text: 'round 3 · 2/15 done · fit · reported 12/100 · 998/1000 online · deadline in 1m52s' });
    expect(progressView(state({ selected: 4, reported: 4, phase: 'aggregate' }), T0).text).toBe('round 1 · 0/15 done · aggregate · reported 4/4 · 10/10 online');
    expect(progressView(state({ selected: 4, deadline: T0 - 1 }), T0).text).toContain('deadline passed');
  });

  it('async (FedBuff): the buffer out of K and the server steps', () => {
    const v = progressView(state({ mode: 'async', done: 3, reported: 2, bufferSize: 3, selected: 0 }), T0);
    expect(v).toEqual({ value: 2, total: 3, text: 'server steps 3/15 · buffer 2/3 · 10/10 online' });
    expect(progressView(state({ mode: 'async', phase: 'evaluate', bufferSize: 3 }), T0).text).toBe('server steps 0/15 · buffer 0/3 · evaluate · 10/10 online');
  });

  it('with --broker (no coordinator here): the updates this process\'s nodes sent', () => {
    expect(progressView(state({ phase: 'connected', connected: 500, total: 500, rounds: 0 }), T0).text).toBe('nodes connected 500/500 · waiting for tasks');
    expect(progressView(state({ round: 7, reported: 40, connected: 500, total: 500, rounds: 0 }), T0)).toEqual({ value: 40, total: 500, text: 'round 7 · 40 of 500 nodes sent an update' });
  });

  it('time left in whole seconds, rounded up', () => {
    expect([formatTimeLeft(0), formatTimeLeft(-5), formatTimeLeft(1), formatTimeLeft(59_000), formatTimeLeft(59_001), formatTimeLeft(125_000)]).toEqual(['0s', '0s', '1s', '59s', '1m00s', '2m05s']);
  });
});

/** A stream that keeps what is written to it; a terminal when `tty`. */
function sink(tty: boolean): { stream: ProgressStream; text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const stream = Object.assign(w, tty ? { isTTY: true, columns: 200 } : {});
  return { stream, text: () => chunks.join('') };
}

/** The coordinator's side the display listens to: its events and its count of online nodes. */
function fakeCoordinator(online: { n: number }) {
  return Object.assign(new EventEmitter<CoordinatorEvents>(), { onlineNodes: () => Array.from({ length: online.n }, (_, i) => `node-${i}`) });
}

const record = (round: number): RoundRecord => ({ round, accepted: true, reported: 3, selected: 5 }) as RoundRecord;
// eslint-disable-next-line no-control-regex
const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

/** Drives a display through a sync round: 7 of 10 nodes online, 5 selected, 3 accepted, a round line. */
function driveSyncRound(p: ReturnType<typeof simulateProgress>, online: { n: number }, deadline: number) {
  const c = fakeCoordinator(online);
  p.onCoordinator(c);
  c.emit('stage', { stage: 'waiting', round: 1, cohort: 0, online: online.n });
  c.emit('stage', { stage: 'fit', round: 1, cohort: 5, deadline, online: online.n });
  for (const nodeId of ['a', 'b', 'c']) c.emit('accepted', { nodeId, round: 1, bytes: 100, taskId: 1, trainMs: 5 });
  return c;
}

describe('simulateProgress: not a terminal, or --no-progress', () => {
  it('draws nothing on a stream that is not a terminal: only the lines, byte for byte', () => {
    const out = sink(false);
    const p = simulateProgress({ stream: out.stream, enabled: true, nodes: 10, rounds: 15, mode: 'sync', clock: () => T0 });
    expect(p.active).toBe(false);
    p.write('broker: mqtt://localhost:1883\n');
    const c = driveSyncRound(p, { n: 7 }, T0 + 90_000);
    c.emit('round', record(1));
    p.write('    1    3/5\n');
    p.stop();
    expect(out.text()).toBe('broker: mqtt://localhost:1883\n    1    3/5\n');
    // it did not even listen
    expect(c.listenerCount('stage') + c.listenerCount('accepted') + c.listenerCount('round')).toBe(0);
  });

  it('draws nothing on a terminal with --no-progress', () => {
    const out = sink(true);
    const p = simulateProgress({ stream: out.stream, enabled: false, nodes: 10, rounds: 15, mode: 'sync' });
    expect(p.active).toBe(false);
    driveSyncRound(p, { n: 7 }, T0 + 90_000);
    p.write('a line\n');
    p.stop();
    expect(out.text()).toBe('a line\n');
  });
});

describe('simulateProgress on a terminal', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('shows the nodes connecting, then reported/selected and the time left; the round lines go above the bar', () => {
    const out = sink(true);
    let now = T0;
    const online = { n: 0 };
    const p = simulateProgress({ stream: out.stream, enabled: true, nodes: 10, rounds: 15, mode: 'sync', clock: () => now, fps: 10 });
    expect(p.active).toBe(true);
    const c = fakeCoordinator(online);
    p.onCoordinator(c);
    online.n = 7;
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('nodes connected 7/10');

    c.emit('stage', { stage: 'fit', round: 1, cohort: 5, deadline: T0 + 90_000, online: 7 });
    for (const nodeId of ['a', 'b', 'c']) c.emit('accepted', { nodeId, round: 1, bytes: 100, taskId: 1, trainMs: 5 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('round 1 · 0/15 done · fit · reported 3/5 · 7/10 online · deadline in 1m30s');

    now += 30_000;
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('reported 3/5 · 7/10 online · deadline in 1m00s');

    // aggregating: no deadline to show
    c.emit('stage', { stage: 'aggregate', round: 1, cohort: 3, online: 7 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text()).endsWith('round 1 · 0/15 done · aggregate · reported 3/5 · 7/10 online')).toBe(true);

    const before = out.text().length;
    c.emit('round', record(1));
    p.write('    1    3/5  0.4321\n');
    c.emit('stage', { stage: 'fit', round: 2, cohort: 5, deadline: now + 90_000, online: 7 });
    vi.advanceTimersByTime(100);
    const redraw = plain(out.text().slice(before));
    // the line first, on a line of its own, then the bar of round 2
    expect(redraw.indexOf('    1    3/5  0.4321\n')).toBeGreaterThanOrEqual(0);
    expect(redraw.indexOf('    1    3/5  0.4321\n')).toBeLessThan(redraw.indexOf('round 2 · 1/15 done · fit · reported 0/5'));

    // a line written just before the end is not lost, and the bar is cleared last (erase below: ESC [ 0 J)
    p.write('final line\n');
    p.stop();
    expect(plain(out.text())).toContain('final line\n');
    expect(out.text().endsWith('\x1b[0J')).toBe(true);
    // after stop nothing is scheduled, and lines go straight to the stream
    expect(vi.getTimerCount()).toBe(0);
    p.write('after\n');
    expect(out.text().endsWith('after\n')).toBe(true);
  });

  it('async (FedBuff): the buffer fills to K, then a server step', () => {
    const out = sink(true);
    const p = simulateProgress({ stream: out.stream, enabled: true, nodes: 6, rounds: 4, mode: 'async', bufferSize: 3, clock: () => T0, fps: 10 });
    const c = fakeCoordinator({ n: 6 });
    p.onCoordinator(c);
    c.emit('stage', { stage: 'fit', round: 1, cohort: 6, online: 6 });
    c.emit('accepted', { nodeId: 'a', round: 1, bytes: 1, taskId: 1, trainMs: 5 });
    c.emit('accepted', { nodeId: 'b', round: 1, bytes: 1, taskId: 2, trainMs: 5 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('server steps 0/4 · buffer 2/3 · 6/6 online');
    // the step: its central evaluation and the next step's fit at once; the step's record once evaluated
    c.emit('accepted', { nodeId: 'c', round: 1, bytes: 1, taskId: 3, trainMs: 5 });
    c.emit('stage', { stage: 'evaluate', round: 1, cohort: 0, online: 6 });
    c.emit('stage', { stage: 'fit', round: 2, cohort: 6, online: 6 });
    c.emit('accepted', { nodeId: 'd', round: 2, bytes: 1, taskId: 4, trainMs: 5 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text()).endsWith('server steps 0/4 · buffer 1/3 · 6/6 online')).toBe(true);
    c.emit('round', record(1));
    c.emit('accepted', { nodeId: 'e', round: 2, bytes: 1, taskId: 5, trainMs: 5 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text()).endsWith('server steps 1/4 · buffer 2/3 · 6/6 online')).toBe(true);
    p.stop();
  });

  it('with --broker: the nodes of this process and the updates they sent per round', () => {
    const out = sink(true);
    const p = simulateProgress({ stream: out.stream, enabled: true, nodes: 4, rounds: 0, mode: 'sync', nodesOnly: true, clock: () => T0, fps: 10 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('starting 4 nodes…');
    // startSimulation's onConnected: one more node connected, of those this process runs
    p.connected(1, 4);
    p.connected(2, 4);
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('nodes connected 2/4');
    const sim = Object.assign(new EventEmitter<SimulationEvents>(), { plan: ['a', 'b', 'c', 'd'].map((nodeId) => ({ nodeId, indices: new Int32Array(0) })) });
    p.onSimulation(sim);
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('nodes connected 4/4 · waiting for tasks');
    for (const nodeId of ['a', 'b']) sim.emit('updated', { nodeId, round: 3, loss: 1, trainMs: 1, bytes: 1 });
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('round 3 · 2 of 4 nodes sent an update');
    sim.emit('updated', { nodeId: 'a', round: 4, loss: 1, trainMs: 1, bytes: 1 });
    sim.emit('updated', { nodeId: 'c', round: 3, loss: 1, trainMs: 1, bytes: 1 }); // late, of an older round: not counted in round 4
    vi.advanceTimersByTime(100);
    expect(plain(out.text())).toContain('round 4 · 1 of 4 nodes sent an update');
    p.stop();
  });
});
