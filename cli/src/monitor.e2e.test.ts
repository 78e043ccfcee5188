import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { monitorTopics } from '@fedmq/monitor';
import type { RoundRecord } from '@fedmq/protocol';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from '@fedmq/simulator';

const FEDMQ = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'fedmq.js');
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
type Line = Record<string, unknown> & { event: string };

/** `fedmq monitor … --json` as a child process; every stdout line parsed. */
class MonitorProcess {
  readonly lines: Line[] = [];
  stderr = '';
  readonly child: ChildProcess;
  private waiters = new Set<() => void>();
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [FEDMQ, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (l) => {
      this.lines.push(JSON.parse(l) as Line);
      for (const w of this.waiters) w();
    });
    this.child.on('exit', () => {
      for (const w of this.waiters) w();
    });
  }
  /** Resolves once `ok(lines)` holds; rejects if the process exits first. */
  until(ok: (lines: Line[]) => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ok(this.lines)) {
          this.waiters.delete(check);
          resolve();
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          this.waiters.delete(check);
          reject(new Error(`fedmq monitor exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; stderr: ${this.stderr}`));
        }
      };
      this.waiters.add(check);
      check();
    });
  }
  of(event: string): Line[] {
    return this.lines.filter((l) => l.event === event);
  }
}

describe('fedmq monitor --json over a real training run', () => {
  let broker: RunningBroker;
  let monitor: MonitorProcess | undefined;
  let sim: Simulation | undefined;
  let coordinator: Coordinator | undefined;

  beforeAll(async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    if (monitor && monitor.child.exitCode === null && monitor.child.signalCode === null) {
      monitor.child.kill('SIGKILL');
      await once(monitor.child, 'exit');
    }
    await sim?.stop();
    await coordinator?.close();
    await broker?.close();
  });

  it('streams every round\'s metrics, every node\'s state changes and the round engine\'s stages', async () => {
    const job = 'monitored';
    const rounds = 3;
    monitor = new MonitorProcess(['monitor', '--broker', broker.url, '--job', job, '--json']);
    // the CLI prints `connected` once its subscriptions are acknowledged: from then on nothing is missed
    await monitor.until((ls) => ls.some((l) => l.event === 'connected'), 'connected');
    expect(monitor.lines[0]).toMatchObject({ event: 'connected', broker: broker.url });
    expect(monitor.lines[0].topics).toEqual(monitorTopics(job));
    expect((monitor.lines[0].topics as string[]).every((t) => t.startsWith(`fedmq/v2/${job}/`))).toBe(true);

    const train = subset(loadMnist('train'), range(0, 1800));
    const test = subset(loadMnist('test'), range(0, 1000));
    coordinator = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds, minAvailableNodes: 3, deadlineMs: 60_000, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
    });
    const stages: string[] = [];
    coordinator.on('stage', (p) => stages.push(`${p.stage}@${p.round}`));
    const accepted: { nodeId: string; round: number }[] = [];
    coordinator.on('accepted', (a) => accepted.push(a));
    const done = coordinator.run();
    sim = await startSimulation({ brokerUrl: broker.url, job, nodes: 3, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
    const history: RoundRecord[] = await done;
    await sim.stop(); // every node publishes `offline`
    const nodeIds = sim.plan.map((n) => n.nodeId).sort();
    expect(nodeIds).toHaveLength(3);

    await monitor.until(
      (ls) =>
        ls.filter((l) => l.event === 'round').length === rounds &&
        ls.some((l) => l.event === 'coordinator' && l.state === 'done') &&
        nodeIds.every((id) => ls.some((l) => l.event === 'node' && l.nodeId === id && l.state === 'offline')),
      'every round, done and every node offline',
    );
    expect(history.map((r) => r.round)).toEqual(range(1, rounds));

    // every round 1..R once, with the coordinator's metrics
    const roundLines = monitor.of('round');
    expect(roundLines.map((l) => l.round)).toEqual(range(1, rounds));
    for (const [i, r] of history.entries()) {
      expect(roundLines[i]).toMatchObject({
        job, runId: coordinator.runId, round: r.round, modelVersion: r.modelVersion, selected: r.selected, reported: r.reported, failures: r.failures,
        trainLoss: r.trainLoss, testLoss: r.testLoss, testAccuracy: r.testAccuracy, bytesUp: r.bytesUp, bytesDown: r.bytesDown,
      });
      expect(roundLines[i].ts).toEqual(expect.any(Number));
    }

    // every node: idle when it connects, training → uploading → idle for each round it trained, offline at the end
    for (const id of nodeIds) {
      const trained = accepted.filter((a) => a.nodeId === id).length;
      expect(trained).toBe(rounds);
      const states = monitor.of('node').filter((l) => l.nodeId === id).map((l) => l.state);
      expect(states, id).toEqual(['idle', ...Array.from({ length: trained }, () => ['training', 'uploading', 'idle']).flat(), 'offline']);
      const nodeLines = monitor.of('node').filter((l) => l.nodeId === id);
      expect(nodeLines.map((l) => l.previous)).toEqual([null, ...states.slice(0, -1)]);
      expect(nodeLines.at(-2)).toMatchObject({ job, numExamples: expect.any(Number), backend: expect.any(String), lastRound: { round: rounds } });
    }

    // the engine's stages, as the coordinator itself reported them, and the run's state
    const seen = monitor.of('stage').map((l) => `${l.stage}@${l.round}`);
    expect(seen).toEqual(stages);
    expect(seen.filter((p) => !p.startsWith('waiting'))).toEqual(range(1, rounds).flatMap((r) => [`fit@${r}`, `aggregate@${r}`, `evaluate@${r}`]));
    expect(monitor.of('coordinator').map((l) => l.state)).toEqual(['running', 'done']);

    // the models of the run, and nothing invalid
    expect(monitor.of('model').map((l) => l.version)).toEqual(range(1, rounds + 1));
    expect(monitor.of('run')).toEqual([{ event: 'run', job, runId: coordinator.runId, previousRunId: null }]);
    expect(monitor.of('invalid')).toEqual([]);

    monitor.child.kill('SIGTERM');
    const [code] = await once(monitor.child, 'exit');
    expect(code).toBe(0);
  }, 120_000);
});
