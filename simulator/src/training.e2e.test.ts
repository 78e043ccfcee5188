import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topicFilter, type RoundRecord } from '@fedmq/protocol';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { createModel, initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from './simulation.ts';

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const fedavg = () => createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: FIT });

describe('end to end over a real Aedes broker', () => {
  let broker: RunningBroker;
  let sim: Simulation | undefined;
  let coordinator: Coordinator | undefined;
  let out: string;

  beforeAll(async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    out = await mkdtemp(join(tmpdir(), 'fedmq-e2e-'));
  });

  afterAll(async () => {
    await sim?.stop();
    await coordinator?.close();
    await broker?.close();
    await rm(out, { recursive: true, force: true });
  });

  it('3 nodes, 2 rounds of FedAvg on a slice of MNIST with federated evaluation: accuracy rises and the run is written', async () => {
    const train = subset(loadMnist('train'), range(0, 1800));
    const test = subset(loadMnist('test'), range(0, 1000));
    const initial = createModel('mnist-2nn', 42);
    const before = (await initial.evaluate(test)).accuracy;
    initial.dispose();

    coordinator = new Coordinator({
      brokerUrl: broker.url, job: 'e2e', model: 'mnist-2nn', rounds: 2, minAvailableNodes: 3, deadlineMs: 60_000, outDir: out, testData: test, seed: 42,
      strategy: fedavg(), evaluateFraction: 1, valFraction: 0.1,
    });
    const accepted: string[] = [];
    coordinator.on('accepted', (a) => accepted.push(`${a.round}/${a.nodeId}`));
    const done = coordinator.run();
    sim = await startSimulation({ brokerUrl: broker.url, job: 'e2e', nodes: 3, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
    const history: RoundRecord[] = await done;

    expect(history.map((r) => [r.round, r.selected, r.reported])).toEqual([[1, 3, 3], [2, 3, 3]]);
    expect(new Set(accepted).size).toBe(6);
    expect(accepted).toHaveLength(6);
    const [r1, r2] = history.map((r) => r.testAccuracy!);
    expect(r1).toBeGreaterThan(before + 0.2);
    expect(r2).toBeGreaterThan(r1);
    expect(history[1].trainLoss!).toBeLessThan(history[0].trainLoss!);
    expect(history[0].bytesUp).toBeGreaterThan(3 * 199_210 * 4);
    // bytes down as the nodes measured them: at least the model each fetched (twice: to train, then the new one to evaluate)
    expect(history[0].bytesDown).toBeGreaterThan(2 * 3 * 199_210 * 4);
    // federated evaluation on the nodes' held-out 10 % (training examples 0–1799, not the test
    // set's first 1000, which differ in difficulty): every node answered, and it improves with the model
    const fe = history.map((r) => r.federatedEval!);
    expect(fe.map((f) => f.nodes)).toEqual([3, 3]);
    expect(fe[0].numExamples).toBe(180);
    expect(fe[1].accuracy).toBeGreaterThan(fe[0].accuracy);
    expect(fe[1].loss).toBeLessThan(fe[0].loss);
    expect(fe[1].accuracySpread.min).toBeLessThanOrEqual(fe[1].accuracy);
    expect(fe[1].accuracySpread.max).toBeGreaterThanOrEqual(fe[1].accuracy);
    expect(fe[1].localBetterFraction).not.toBeNull();

    const written = JSON.parse(await readFile(join(out, 'history.json'), 'utf8')) as RoundRecord[];
    expect(written.map((r) => r.testAccuracy)).toEqual([r1, r2]);
    for (const key of ['round', 'selected', 'reported', 'trainLoss', 'testAccuracy', 'federatedEval', 'bytesDown', 'bytesUp', 'durationMs']) expect(written[0]).toHaveProperty(key);
    const modelJson = JSON.parse(await readFile(join(out, 'model', 'model.json'), 'utf8'));
    expect(modelJson.weightsManifest[0].paths).toEqual(['weights.bin']);
    expect((await stat(join(out, 'model', 'weights.bin'))).size).toBe(199_210 * 4);
  });

  it('converges with top-k + int8 updates (k = 0.05, error feedback), 16 KiB chunks and a float16 downlink, at a fraction of the bytes', async () => {
    const train = subset(loadMnist('train'), range(0, 1800));
    const test = subset(loadMnist('test'), range(0, 1000));
    const run = async (codec: 'float32' | 'topk-int8', job: string, maxPayloadBytes?: number, downlink?: 'float16') => {
      const c = new Coordinator({
        brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 4, minAvailableNodes: 3, deadlineMs: 60_000, testData: test, seed: 42, codec, maxPayloadBytes, downlink,
        codecParams: { k: 0.05 }, strategy: fedavg(),
      });
      const done = c.run();
      const s = await startSimulation({ brokerUrl: broker.url, job, nodes: 3, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
      try {
        return await done;
      } finally {
        await s.stop();
        await c.close();
      }
    };
    const dense = await run('float32', 'e2e-dense');
    // every MQTT message of the sparse run is at most 16 KiB: watch them on the broker
    let largest = 0;
    const onPublish = (packet: { topic: string; payload: Buffer | string }) => {
      if (packet.topic.startsWith('fedmq/v2/e2e-sparse/')) largest = Math.max(largest, packet.payload.length);
    };
    broker.aedes.on('publish', onPublish);
    const sparse = await run('topk-int8', 'e2e-sparse', 16 * 1024, 'float16');
    broker.aedes.off('publish', onPublish);
    expect(largest).toBeGreaterThan(8 * 1024);
    expect(largest).toBeLessThanOrEqual(16 * 1024);
    expect(sparse.map((r) => r.reported)).toEqual([3, 3, 3, 3]);
    expect(sparse.every((r) => Object.keys(r.failures).length === 0)).toBe(true);
    const acc = sparse.map((r) => r.testAccuracy!);
    expect(acc[3]).toBeGreaterThan(acc[0]);
    expect(acc[3]).toBeGreaterThan(0.7);
    expect(sparse[0].bytesUp * 10).toBeLessThan(dense[0].bytesUp);
    expect(sparse[0].bytesDown * 1.9).toBeLessThan(dense[0].bytesDown);
  });

  it('runs FedProx end to end: every fit task carries mu and the model improves', async () => {
    const train = subset(loadMnist('train'), range(0, 1800));
    const test = subset(loadMnist('test'), range(0, 1000));
    const c = new Coordinator({
      brokerUrl: broker.url, job: 'e2e-prox', model: 'mnist-2nn', rounds: 3, minAvailableNodes: 3, deadlineMs: 60_000, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedprox', fraction: 1, minFitNodes: 3, fitConfig: FIT, params: { proximalMu: 0.1 } }),
    });
    const watcher = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const mus: unknown[] = [];
    watcher.on('message', (_t, p) => p.length > 0 && mus.push(JSON.parse(p.toString()).config.proximalMu));
    await watcher.subscribeAsync(topicFilter('nodeTask', 'e2e-prox'), { qos: 1 });
    const done = c.run();
    const s = await startSimulation({ brokerUrl: broker.url, job: 'e2e-prox', nodes: 3, train, partition: { kind: 'dirichlet', alpha: 0.5 }, seed: 1, workers: 2 });
    try {
      const history = await done;
      expect(history.map((r) => r.reported)).toEqual([3, 3, 3]);
      expect(history[2].testAccuracy!).toBeGreaterThan(history[0].testAccuracy!);
      expect(mus).toEqual(Array(9).fill(0.1)); // 3 fit tasks per round
    } finally {
      await watcher.endAsync();
      await s.stop();
      await c.close();
    }
  });

  it('trimmed mean keeps learning while a node flips the sign of its updates', async () => {
    const train = subset(loadMnist('train'), range(0, 2000));
    const test = subset(loadMnist('test'), range(0, 1000));
    const run = async (job: string, strategy: 'fedavg' | 'trimmed-mean', byzantine?: number) => {
      const c = new Coordinator({
        brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 3, minAvailableNodes: 5, deadlineMs: 60_000, testData: test, seed: 42,
        strategy: createStrategy({ strategy, fraction: 1, minFitNodes: 5, fitConfig: FIT, params: { trimBeta: 0.2 } }),
      });
      const done = c.run();
      const s = await startSimulation({
        brokerUrl: broker.url, job, nodes: 5, train, partition: { kind: 'iid' }, seed: 1, workers: 2, byzantine, attack: byzantine ? 'sign-flip' : undefined,
      });
      try {
        return { history: await done, malicious: s.malicious };
      } finally {
        await s.stop();
        await c.close();
      }
    };
    const clean = await run('e2e-clean', 'fedavg');
    const attacked = await run('e2e-signflip', 'trimmed-mean', 0.2);
    expect(attacked.malicious.size).toBe(1);
    expect(attacked.history.map((r) => r.reported)).toEqual([5, 5, 5]); // the flipped updates are well-formed and accepted
    const acc = attacked.history.map((r) => r.testAccuracy!);
    expect(acc[2]).toBeGreaterThan(acc[0]);
    expect(acc[2]).toBeGreaterThan(clean.history[2].testAccuracy! - 0.05);
  });
});
