import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator } from '@fedmq/coordinator';
import { EdgeNode, deviceInfo } from '@fedmq/edge-node';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { topicFilter } from '@fedmq/protocol';

const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));
const JOB = 'resume';
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** `fedmq coordinator …` as a child process; resolves with its exit code (or signal). */
function coordinator(args: string[]): { child: ChildProcess; exited: Promise<number | NodeJS.Signals | null>; stderr: () => string } {
  const child = spawn(process.execPath, [bin, '--log-level', 'warn', 'coordinator', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  cleanup.push(async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); await exited; });
  return { child, exited, stderr: () => err };
}

describe('fedmq coordinator --resume', () => {
  it('a run SIGKILLed at a random update and resumed ends with the model of an uninterrupted run, bit for bit (cpu)', async () => {
    await initBackend('cpu');
    const broker: RunningBroker = await startBroker({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => broker.close());
    const train = loadMnist('train');
    const nodes = ['n0', 'n1', 'n2', 'n3'].map((nodeId, i) => new EdgeNode({
      brokerUrl: broker.url, job: JOB, nodeId, data: subset(train, Array.from({ length: 150 }, (_, j) => i * 150 + j)), device: deviceInfo('cpu'),
      reconnect: { initialMs: 50, maxMs: 500 },
    }));
    for (const n of nodes) await n.start();
    cleanup.push(() => Promise.all(nodes.map((n) => n.stop())));
    // FedAvgM (server momentum in the checkpoint) over a random half of the nodes (the selection's random draws too)
    const job = ['--broker', broker.url, '--job', JOB, '--rounds', '4', '--min-nodes', '4', '--fraction', '0.5', '--seed', '7', '--strategy', 'fedavgm',
      '--lr', '0.1', '--batch-size', '16', '--metrics-port', '0', '--deadline-ms', '60000'];
    const whole = await mkdtemp(join(tmpdir(), 'fedmq-whole-'));
    const killed = await mkdtemp(join(tmpdir(), 'fedmq-killed-'));
    cleanup.push(() => rm(whole, { recursive: true, force: true }), () => rm(killed, { recursive: true, force: true }));

    const a = coordinator([...job, '--out', whole]);
    expect(await a.exited, a.stderr()).toBe(0);
    const expected = await Coordinator.loadCheckpoint(whole);
    const updates = expected.history.reduce((n, r) => n + r.reported, 0);
    expect(updates).toBe(8);

    // kill at the k-th update on the wire, k uniform in 1..8 (printed; FEDMQ_KILL_AT=k replays a failure)
    const k = Number(process.env.FEDMQ_KILL_AT) || 1 + Math.floor(Math.random() * updates);
    console.log(`killing the coordinator at update ${k} of ${updates} (FEDMQ_KILL_AT=${k} to replay)`);
    const watch = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanup.push(() => watch.endAsync());
    await watch.subscribeAsync(topicFilter('nodeUpdate', JOB), { qos: 1 });
    const b = coordinator([...job, '--out', killed]);
    let seen = 0;
    watch.on('message', () => { if (++seen === k) b.child.kill('SIGKILL'); });
    expect(await b.exited).toBe('SIGKILL');
    watch.removeAllListeners('message');

    const c = coordinator(['--resume', killed, '--metrics-port', '0']);
    expect(await c.exited, c.stderr()).toBe(0);
    const got = await Coordinator.loadCheckpoint(killed);
    expect(got.history.map((r) => r.round)).toEqual([1, 2, 3, 4]);
    expect(got.weights.map((t) => t.name)).toEqual(expected.weights.map((t) => t.name));
    for (let t = 0; t < got.weights.length; t++) {
      // the tensors' own bytes (views into the checkpoint files, which differ in run ids and times)
      const bytes = (d: Float32Array) => Buffer.from(d.buffer, d.byteOffset, d.byteLength);
      expect(bytes(got.weights[t].data).equals(bytes(expected.weights[t].data)), `tensor ${got.weights[t].name}`).toBe(true);
    }
  }, 180_000);
});
