import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { createElement as h } from 'react';
import { render, type Instance } from 'ink';
import { afterEach, describe, expect, it } from 'vitest';
import { topics, type NodeStatus, type RoundMetrics } from '@fedmq/protocol';
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
  v: 1, job: J, nodeId, state, ts: NOW - 3000, numExamples: 600, device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3793, backend: 'wasm' }, ...extra,
});
const metrics = (round: number, testAccuracy: number): RoundMetrics => ({
  v: 1, job: J, runId: 'run-1', round, modelVersion: round + 1, selected: 3, reported: 3, failures: {}, trainLoss: 1 / round, testLoss: 0.8 / round,
  testAccuracy, bytesDown: 2_400_000, bytesUp: 2_391_891, durationMs: 4300, phases: { trainMs: 3700, aggregateMs: 12, evalMs: 590 }, ts: NOW - 60_000 + round,
});

/** A fleet in round 2 of 3: pi-1 training, pi-2 reported, pi-3 offline; `rounds` finished rounds. */
function fleet(rounds: number): { monitor: { state: FleetState; events: EventEmitter<MonitorEmitterEvents>; connected: boolean }; feed: (topic: string, msg: unknown) => void } {
  const state = new FleetState();
  const events = new EventEmitter<MonitorEmitterEvents>();
  const feed = (topic: string, msg: unknown) => {
    for (const e of state.apply(topic, json(msg), { now: NOW - 3000 })) events.emit('event', e);
  };
  feed(topics.coordinatorStatus(J), { v: 1, job: J, runId: 'run-1', state: 'training', round: rounds + 1, rounds: Math.max(3, rounds + 1), deadline: NOW + 42_000, ts: NOW - 1000 });
  for (let r = 1; r <= rounds; r++) feed(topics.roundMetrics(J, r), metrics(r, [0.71, 0.85, 0.9][r - 1]));
  feed(topics.task(J), {
    v: 1, job: J, runId: 'run-1', round: rounds + 1, modelVersion: rounds + 1, selected: ['pi-1', 'pi-2', 'pi-3'], deadline: NOW + 42_000, timeoutMs: 60_000,
    config: { epochs: 1, batchSize: 32, learningRate: 0.1 }, codec: 'float32', updateKind: 'delta', ts: NOW - 1000,
  });
  feed(topics.nodeStatus(J, 'pi-1'), node('pi-1', 'training', { lastRound: { round: rounds, loss: 0.4583, trainMs: 2954.2 } }));
  feed(topics.nodeStatus(J, 'pi-2'), node('pi-2', 'idle', { lastRound: { round: rounds + 1, loss: 0.3121, trainMs: 3100 } }));
  feed(topics.nodeStatus(J, 'pi-3'), node('pi-3', 'offline'));
  return { monitor: { state, events, connected: true }, feed };
}

let app: Instance | undefined;
afterEach(() => {
  app?.unmount();
  app = undefined;
});

describe('MonitorApp (ink)', () => {
  it('draws the header, the node table and the round counter in an 80×24 terminal, and follows new events', async () => {
    const { monitor, feed } = fleet(1);
    const term = new FakeTerminal(80, 24);
    const stdin = Object.assign(new PassThrough(), { isTTY: false });
    app = render(h(MonitorApp, { monitor, brokerUrl: 'mqtt://broker.local:1883', job: J, now: () => NOW }), {
      stdout: term as unknown as NodeJS.WriteStream, stdin: stdin as unknown as NodeJS.ReadStream, debug: true, patchConsole: false,
    });
    const frame = await term.until((f) => f.includes('pi-3'));
    for (const s of ['mqtt://broker.local:1883', `job ${J}`, 'training', 'round 2/3', 'reported 1/3', 'deadline 42s left', 'pi-1', 'pi-2', 'pi-3', 'offline', '0.4583', '3s ago', 'wasm']) {
      expect(frame, s).toContain(s);
    }
    expect(frame).toMatch(/pi-1\s+training/);
    expect(frame).toMatch(/pi-2\s+idle/);
    expect(frame).toMatch(/pi-3\s+offline/);
    expect(frame).toContain('last round 1: 3/3 reported, up 2.4 MB, down 2.4 MB');
    const lines = frame.replace(/\n$/, '').split('\n');
    expect(lines.length).toBeLessThan(24);
    for (const l of lines) expect(l.length, l).toBeLessThanOrEqual(80);

    feed(topics.nodeStatus(J, 'pi-1'), node('pi-1', 'uploading'));
    expect(await term.until((f) => /pi-1\s+uploading/.test(f))).toMatch(/pi-1\s+uploading/);
  });

  it('plots accuracy and loss over rounds in a larger terminal', async () => {
    const { monitor } = fleet(3);
    const term = new FakeTerminal(120, 40);
    const stdin = Object.assign(new PassThrough(), { isTTY: false });
    app = render(h(MonitorApp, { monitor, brokerUrl: 'mqtt://b:1883', now: () => NOW }), {
      stdout: term as unknown as NodeJS.WriteStream, stdin: stdin as unknown as NodeJS.ReadStream, debug: true, patchConsole: false,
    });
    const frame = await term.until((f) => f.includes('test accuracy over 3 rounds'));
    expect(frame).toContain('round 4/4');
    expect(frame).toContain('0.900'); // the y axis reaches the last accuracy
    expect(frame).toContain('┤');
    expect(frame).toContain('test loss over 3 rounds');
    for (const l of frame.replace(/\n$/, '').split('\n')) expect(l.length).toBeLessThanOrEqual(120);
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
