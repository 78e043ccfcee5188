/**
 * A broker cluster as an operator runs it (docs/scale.md, "Broker cluster"): Debian's
 * redis-server on a free port, three `fedmq broker --port 0 --cluster redis://…` processes (the
 * CLI, as real child processes), the coordinator on broker 1 and two simulated nodes on each
 * broker (`startSimulation` in this process, one worker thread per broker; node ids b1-0 … b3-1
 * from a natural split with a prefix per broker, so the three fleets do not share ids). FedAvg on
 * a slice of MNIST for 3 rounds.
 *
 * Also: `--cluster` with a `--persistence` elsewhere is refused (FEDMQ_BAD_CONFIG, exit 1).
 *
 * Asserted: every node's update is accepted in every round and nothing is rejected; each node
 * connected through the broker it was given (the brokers' `$SYS/{brokerId}/new/clients`, relayed
 * to a watcher on broker 1: `$SYS` crosses the cluster too), so the model went from broker 1 to
 * brokers 2 and 3 and the updates came back through Redis; the model learns; on SIGTERM each
 * broker exits 0 and Redis is left with no connection of theirs.
 *
 * No redis-server is a FAILURE with the apt-get line, never a skip.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import type { FedmqError, RoundRecord } from '@fedmq/protocol';
import { startSimulation, type Simulation } from '@fedmq/simulator';

const BIN = fileURLToPath(new URL('../cli/bin/fedmq.js', import.meta.url));
const run = promisify(execFile);
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

/** A `fedmq broker` process of the cluster: its URL and broker id, as it prints them. */
interface BrokerProcess {
  proc: ChildProcess;
  url: string;
  id: string;
  stderr: () => string;
}

async function startBrokerProcess(redisUrl: string): Promise<BrokerProcess> {
  const proc = spawn(process.execPath, [BIN, '--log-level', 'warn', 'broker', '--port', '0', '--host', '127.0.0.1', '--cluster', redisUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: proc.stdout! });
  const [url, id] = await new Promise<[string, string]>((resolve, reject) => {
    lines.on('line', (l) => {
      const m = /listening on (mqtt:\/\/127\.0\.0\.1:\d+) \(cluster: redis:\/\/127\.0\.0\.1:\d+\/?, broker id ([0-9a-f-]+)\)/.exec(l);
      if (m) resolve([m[1], m[2]]);
    });
    proc.once('exit', (code) => reject(new Error(`fedmq broker exited (${code}): ${stderr}`)));
  });
  return { proc, url, id, stderr: () => stderr };
}

const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };

describe('fedmq broker --cluster: three broker processes on one Redis', () => {
  let redis: RedisServer | undefined;
  const brokers: BrokerProcess[] = [];
  const sims: Simulation[] = [];
  let coordinator: Coordinator | undefined;
  let watcher: mqtt.MqttClient | undefined;

  const stopBrokers = async () => {
    const codes = await Promise.all(brokers.splice(0).map(async (b) => {
      if (b.proc.exitCode !== null || b.proc.signalCode !== null) return b.proc.exitCode;
      const exited = once(b.proc, 'exit');
      b.proc.kill('SIGTERM');
      return (await exited)[0] as number | null;
    }));
    return codes;
  };
  afterAll(async () => {
    await watcher?.endAsync(true);
    await Promise.all(sims.splice(0).map((s) => s.stop()));
    await coordinator?.close();
    await stopBrokers();
    await redis?.stop();
  });

  it('refuses --cluster with a --persistence pointing elsewhere, before touching Redis', async () => {
    const err = await run(process.execPath, [BIN, 'broker', '--port', '0', '--cluster', 'redis://127.0.0.1:1', '--persistence', 'memory']).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain('FEDMQ_BAD_CONFIG: cluster: the brokers of a cluster keep retained messages and sessions in the cluster\'s Redis');
  });

  it('a coordinator on broker 1 and two nodes on each broker train 3 rounds: every update accepted', { timeout: 300_000 }, async () => {
    redis = await startRedisServer();
    const redisUrl = redis.url;
    brokers.push(...(await Promise.all([1, 2, 3].map(() => startBrokerProcess(redisUrl)))));
    const cli = redis.cli;
    // three brokers, three Redis connections each (relay: publish + subscribe; persistence), and redis-cli's own
    expect((await cli('CLIENT', 'LIST')).trim().split('\n')).toHaveLength(3 * 3 + 1);
    expect(await cli('CONFIG', 'GET', 'client-output-buffer-limit')).toContain('pubsub 536870912 134217728 60');

    // which broker each client connected to: the brokers' $SYS announcements, relayed to broker 1
    watcher = await mqtt.connectAsync(brokers[0].url, { reconnectPeriod: 0 });
    const brokerOf = new Map<string, string>();
    watcher.on('message', (topic, payload) => brokerOf.set(payload.toString(), topic.split('/')[1]));
    await watcher.subscribeAsync('$SYS/+/new/clients', { qos: 0 });

    await initBackend('wasm');
    const test = subset(loadMnist('test'), range(0, 500));
    const job = 'cluster-e2e';
    coordinator = new Coordinator({
      brokerUrl: brokers[0].url, job, model: 'mnist-2nn', rounds: 3, minAvailableNodes: 6, deadlineMs: 120_000, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 6, fitConfig: FIT }),
    });
    const accepted: string[] = [];
    const rejected: string[] = [];
    coordinator.on('accepted', (a) => accepted.push(`${a.round}/${a.nodeId}`));
    coordinator.on('rejected', (r: { error: FedmqError; nodeId?: string; round: number }) => rejected.push(`${r.round}/${r.nodeId}: ${r.error.code}`));
    const history = coordinator.run();

    const train = loadMnist('train');
    for (const [k, b] of brokers.entries()) {
      // 400 examples per broker, two nodes (b{k}-0, b{k}-1) by parity
      const part = subset(train, range(k * 400, 400));
      const groups = range(0, 400).map((i) => i % 2);
      sims.push(await startSimulation({
        brokerUrl: b.url, job, nodes: 0, train: part, groups, groupPrefix: `b${k + 1}`, partition: { kind: 'natural', groups }, seed: 1, workers: 1,
      }));
    }
    const nodeIds = sims.flatMap((s) => s.plan.map((p) => p.nodeId));
    expect(nodeIds).toEqual(['b1-0', 'b1-1', 'b2-0', 'b2-1', 'b3-0', 'b3-1']);

    const records: RoundRecord[] = await history;
    expect(rejected).toEqual([]);
    expect(records.map((r) => [r.round, r.selected, r.reported])).toEqual([[1, 6, 6], [2, 6, 6], [3, 6, 6]]);
    expect(accepted.sort()).toEqual([1, 2, 3].flatMap((round) => nodeIds.map((id) => `${round}/${id}`)).sort());
    expect(records[2].testAccuracy!).toBeGreaterThan(0.5);
    expect(records[2].trainLoss!).toBeLessThan(records[0].trainLoss!);

    // the coordinator was on broker 1, node b{k}-i on broker k
    expect(brokerOf.get(`fedmq:${job}:coordinator`)).toBe(brokers[0].id);
    for (const [k, b] of brokers.entries()) for (const i of [0, 1]) expect(brokerOf.get(`fedmq:${job}:node:b${k + 1}-${i}`), `b${k + 1}-${i}`).toBe(b.id);

    await watcher.endAsync();
    watcher = undefined;
    await Promise.all(sims.splice(0).map((s) => s.stop()));
    await coordinator.close();
    coordinator = undefined;
    const stderrs = brokers.map((b) => b.stderr());
    expect(await stopBrokers(), `broker stderr:\n${stderrs.join('\n')}`).toEqual([0, 0, 0]);
    // the processes are gone; Redis drops their connections once it has read the closes
    while ((await cli('CLIENT', 'LIST')).trim().split('\n').length > 1);
    expect((await cli('CLIENT', 'LIST')).trim().split('\n')).toHaveLength(1); // redis-cli's own
  });
});
