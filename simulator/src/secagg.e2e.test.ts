import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reassembler, decodeUpdate, topicFilter, type NodeStatus, type RoundRecord } from '@fedmq/protocol';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy, type CoordinatorOptions } from '@fedmq/coordinator';
import { ddgEpsilon, ddgL2Sensitivity, ddgZcdpRho } from '@fedmq/privacy';
import { initBackend, loadMnist, subset, type Dataset } from '@fedmq/ml';
import { startSimulation, type Simulation } from './simulation.ts';

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const NODES = 10;

describe('secure aggregation end to end over a real Aedes broker (MNIST, mnist-2nn)', () => {
  let broker: RunningBroker;
  let train: Dataset;
  let test: Dataset;
  const open: { sim?: Simulation; coordinator?: Coordinator; watcher?: mqtt.MqttClient }[] = [];

  beforeAll(async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    train = subset(loadMnist('train'), range(0, 6000));
    test = subset(loadMnist('test'), range(0, 2000));
  });

  afterAll(async () => {
    for (const o of open) {
      await o.sim?.stop();
      await o.coordinator?.close();
      await o.watcher?.endAsync();
    }
    await broker?.close();
  });

  /** One run of `rounds` rounds on job `job`; also returns what a listener on the update topics saw. */
  async function runJob(job: string, extra: Partial<CoordinatorOptions>, rounds = 3): Promise<{ history: RoundRecord[]; updates: ReturnType<typeof decodeUpdate>[]; statuses: NodeStatus[] }> {
    const o: (typeof open)[number] = {};
    open.push(o);
    o.watcher = await mqtt.connectAsync(broker.url, { clientId: `watch-${job}` });
    const updates: ReturnType<typeof decodeUpdate>[] = [];
    // chunked updates (maxPayloadBytes) are reassembled as the coordinator does (docs/chunking.md)
    const chunks = new Reassembler({ maxTotalBytes: 2 ** 24, maxPendingBytes: 2 ** 26, timeoutMs: 120_000 });
    o.watcher.on('message', (topic, payload) => {
      if (!extra.maxPayloadBytes) return void updates.push(decodeUpdate(payload));
      const whole = chunks.push(topic, payload);
      if (whole) updates.push(decodeUpdate(whole));
    });
    await o.watcher.subscribeAsync(topicFilter('nodeUpdate', job), { qos: 1 });
    o.coordinator = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds, minAvailableNodes: NODES, deadlineMs: 120_000, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: FIT }), ...extra,
    });
    const done = o.coordinator.run();
    o.sim = await startSimulation({ brokerUrl: broker.url, job, nodes: NODES, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
    const history = await done;
    const statuses = o.coordinator.nodes();
    chunks.close();
    await o.sim.stop();
    o.sim = undefined;
    return { history, updates, statuses };
  }

  it('--secagg reaches the test accuracy of plain FedAvg with the same seed (within 0.3 points), and the coordinator only ever receives masked inputs', async () => {
    const plain = await runJob('plain', {});
    const secure = await runJob('secure', { secagg: {} });
    const accPlain = plain.history.map((r) => r.testAccuracy!);
    const accSecure = secure.history.map((r) => r.testAccuracy!);
    process.stdout.write(`accuracy per round: plain ${accPlain.join(" ")}; secagg ${accSecure.join(" ")}\n`);
    expect(accSecure.at(-1)!).toBeGreaterThan(0.8);
    expect(Math.abs(accSecure.at(-1)! - accPlain.at(-1)!)).toBeLessThanOrEqual(0.003);
    for (const r of secure.history) {
      expect(r.accepted).toBe(true);
      expect(r.trainLoss).toBeNull();
      const s = r.secagg!;
      expect(s.aborted).toBeNull();
      expect(s.stages.map((x) => x.stage)).toEqual(['advertise-keys', 'share-keys', 'fit', 'unmask', 'aggregate']);
      for (const st of s.stages) {
        expect(st.cohort).toBe(NODES);
        expect(st.answered).toBe(NODES);
        expect(st.durationMs).toBeGreaterThanOrEqual(0);
      }
      // b = the smallest with 10·(2^16 − 1) < 2^b; d = 199,210 weights + the weight word
      expect(s.bits).toBe(20);
      expect(s.dims).toBe(199_211);
    }
    // what crossed the broker on the update topics: masked inputs only, no tensor, no example count
    expect(secure.updates).toHaveLength(3 * NODES);
    for (const u of secure.updates) {
      expect(u.tensors).toEqual([]);
      expect(u.numExamples).toBe(1);
      expect(u.secagg!.data.length).toBe(Math.ceil((199_211 * 20) / 8));
    }
    expect(plain.updates.every((u) => u.tensors.length > 0 && u.secagg === undefined)).toBe(true);
    // nor do the nodes' retained statuses carry their training loss after a secure round
    expect(secure.statuses.map((n) => n.lastRound?.loss)).toEqual(Array(NODES).fill(0));
    expect(plain.statuses.every((n) => n.lastRound!.loss > 0)).toBe(true);
  }, 240_000);

  it('--secagg --dp distributed, masked inputs in chunks: each node noises its own share, the round reports the ε of the distributed discrete Gaussian', async () => {
    const z = 0.5;
    // in chunks of at most 128 KiB (the masked input of the 2NN is ~500 kB), in a job whose codec is int8:
    // the masked input replaces the codec, and the coordinator's limit on a chunked transfer is a masked input's
    const secure = await runJob('ddp', { secagg: {}, dp: { mode: 'distributed', noiseMultiplier: z, clipNorm: 0.5 }, maxPayloadBytes: 131_072, codec: 'int8' }, 2);
    const rec = secure.history.map((r) => r.privacy!);
    expect(rec.map((p) => p.mode)).toEqual(['distributed', 'distributed']);
    expect(rec.map((p) => p.steps)).toEqual([1, 2]);
    // recomputed from the published parameters: c = C/γ = 2^14, t = ⌈0.5·10⌉ = 5, σ_node² = (z·c)²/t, d = 199,210, β = e^−½
    const c = 2 ** 14;
    const sensitivity = ddgL2Sensitivity({ clipNorm: 0.5, gamma: 0.5 / c, dims: 199_210, beta: Math.exp(-0.5) });
    const rho = ddgZcdpRho({ l2Sensitivity: sensitivity, sigma2: (z * c) ** 2 / 5, nodes: 5, dims: 199_210 });
    expect(rec[0].epsilon).toBeCloseTo(ddgEpsilon({ rho, rounds: 1, delta: 1e-5 }), 10);
    expect(rec[1].epsilon).toBeCloseTo(ddgEpsilon({ rho, rounds: 2, delta: 1e-5 }), 10);
    expect(rec[1].epsilon!).toBeGreaterThan(rec[0].epsilon!);
    expect(secure.history.every((r) => r.accepted && r.secagg!.aborted === null)).toBe(true);
    // the noised mean still trains: better than the initial model's chance level
    expect(secure.history.at(-1)!.testAccuracy!).toBeGreaterThan(0.3);
    expect(secure.updates).toHaveLength(2 * NODES);
    expect(secure.updates.every((u) => u.tensors.length === 0 && u.secagg !== undefined)).toBe(true);
  }, 240_000);
});
