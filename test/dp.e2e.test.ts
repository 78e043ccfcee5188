/**
 * Differential privacy end to end over a real Aedes broker (docs/privacy.md): central mode with
 * adaptive clipping and a resume, local mode with a budget stop. An observer subscribed to the
 * update topics reads what the broker operator would see and checks the nodes' clipping and noise.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, decodeUpdate, float32Codec, topicFilter, type RoundRecord, type UpdateMessage } from '@fedmq/protocol';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { CHECKPOINT_FILE, Coordinator, createStrategy } from '@fedmq/coordinator';
import { RdpAccountant } from '@fedmq/privacy';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from '@fedmq/simulator';

const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const DELTA = 1e-5;

/** The float32 values of an update's tensors, concatenated. */
function values(u: UpdateMessage): Float64Array {
  const size = u.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  const out = new Float64Array(size);
  let off = 0;
  for (const t of u.tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    float32Codec.accumulate(t, out.subarray(off, off + n), 1);
    off += n;
  }
  return out;
}

const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('differential privacy over a real broker', () => {
  let broker: RunningBroker;
  let sim: Simulation | undefined;
  let coordinators: Coordinator[] = [];
  let observer: MqttClient | undefined;
  let out: string;
  const train = subset(loadMnist('train'), range(0, 1200));
  const test = subset(loadMnist('test'), range(0, 500));

  beforeAll(async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
  });

  afterEach(async () => {
    await sim?.stop();
    sim = undefined;
    for (const c of coordinators) await c.close();
    coordinators = [];
    await observer?.endAsync();
    observer = undefined;
    if (out) await rm(out, { recursive: true, force: true });
  });

  afterAll(async () => {
    await broker?.close();
  });

  /** Subscribes to every update of `job`, as the broker's operator could read them. */
  async function observe(job: string): Promise<UpdateMessage[]> {
    const seen: UpdateMessage[] = [];
    observer = await mqtt.connectAsync(broker.url, { clientId: `observer-${job}` });
    observer.on('message', (_topic, payload) => seen.push(decodeUpdate(payload)));
    await observer.subscribeAsync(topicFilter('nodeUpdate', job), { qos: 1 });
    return seen;
  }

  it('central mode with adaptive clipping: nodes clip to C, ε per round is the accountant\'s, C moves, the resumed run continues the same ε', async () => {
    out = await mkdtemp(join(tmpdir(), 'fedmq-dp-central-'));
    const job = 'dp-central';
    const seen = await observe(job);
    const dp = { mode: 'central' as const, noiseMultiplier: 1.2, delta: DELTA, clipNorm: { targetQuantile: 0.5, initialClipNorm: 0.3, countNoiseStd: 1 } };
    const strategy = () => createStrategy({ strategy: 'fedavgm', fraction: 0.5, minFitNodes: 1, fitConfig: FIT, params: { serverLr: 1 } });
    const first = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 3, minAvailableNodes: 12, deadlineMs: 60_000, outDir: out, testData: test, seed: 42, strategy: strategy(), dp,
    });
    coordinators.push(first);
    const done = first.run();
    sim = await startSimulation({ brokerUrl: broker.url, job, nodes: 12, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
    const history: RoundRecord[] = await done;

    const acc = new RdpAccountant();
    const released = history.filter((r) => r.accepted);
    expect(released.length).toBe(3);
    for (const r of history) {
      const p = r.privacy!;
      expect(p).toMatchObject({ mode: 'central', sampling: 'poisson', q: 0.5, noiseMultiplier: 1.2, accountedNoiseMultiplier: 1.2, delta: DELTA, maxEpsilon: null });
      if (r.accepted) acc.compose(0.5, 1.2);
      expect(p.steps).toBe(acc.steps);
      expect(p.epsilon).toBe(acc.epsilon(DELTA));
      // the nodes' losses are not noised: not published
      expect(r.trainLoss).toBeNull();
      expect(r.testAccuracy).not.toBeNull();
    }
    // adaptive clipping: each round starts from the C the previous one computed, and it moved
    expect(history[0].privacy!.clipNorm).toBe(0.3);
    for (let i = 1; i < history.length; i++) expect(history[i].privacy!.clipNorm).toBe(history[i - 1].privacy!.nextClipNorm);
    expect(history.at(-1)!.privacy!.nextClipNorm).not.toBe(0.3);
    // what the broker saw: every update clipped to its round's C (float32 codec), with the clipping bit
    const byRound = new Map(history.map((r) => [r.round, r.privacy!.clipNorm]));
    expect(seen.length).toBe(history.reduce((n, r) => n + r.reported, 0));
    for (const u of seen) {
      expect(u.dp?.unclipped).toBeTypeOf('boolean');
      expect(norm(values(u))).toBeLessThanOrEqual(byRound.get(u.round)!);
      expect(u.metrics.loss).toBeGreaterThan(0);
    }
    // MNIST updates of 50 examples at lr 0.1 are longer than 0.3: most were clipped
    expect(seen.filter((u) => u.dp!.unclipped === false).length).toBeGreaterThan(seen.length / 2);

    const written = JSON.parse(await readFile(join(out, 'history.json'), 'utf8')) as RoundRecord[];
    expect(written.map((r) => r.privacy!.epsilon)).toEqual(history.map((r) => r.privacy!.epsilon));

    // resume from the checkpoint for 2 more rounds: ε continues from round 3's
    const cp = await Coordinator.loadCheckpoint(out);
    expect(cp.privacy?.clipNorm).toBe(history.at(-1)!.privacy!.nextClipNorm);
    await first.close();
    const second = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 5, minAvailableNodes: 12, deadlineMs: 60_000, outDir: out, testData: test, seed: 42, strategy: strategy(), dp, resume: cp,
    });
    coordinators.push(second);
    const resumed = await second.run();
    const more = resumed.slice(history.length);
    expect(more.length).toBeGreaterThanOrEqual(2);
    expect(more[0].privacy!.clipNorm).toBe(history.at(-1)!.privacy!.nextClipNorm);
    for (const r of more) {
      if (r.accepted) acc.compose(0.5, 1.2);
      expect(r.privacy!.epsilon).toBe(acc.epsilon(DELTA));
    }
    expect(resumed.filter((r) => r.accepted).length).toBe(5);
    // and a run without --dp refuses the DP checkpoint
    expect(() => new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 6, minAvailableNodes: 12, deadlineMs: 60_000, seed: 42, strategy: strategy(), resume: cp,
    })).toThrow(expect.objectContaining({ code: ErrorCodes.CHECKPOINT }));
  });

  it('local mode: the broker sees only noised updates (std σC per value), losses are not sent, and the budget stops the run cleanly', async () => {
    out = await mkdtemp(join(tmpdir(), 'fedmq-dp-local-'));
    const job = 'dp-local';
    const seen = await observe(job);
    const sigma = 0.8;
    const clip = 0.5;
    // budget between ε after 2 and after 3 rounds (local: q = 1, σ/2 per round)
    const eps = (k: number) => new RdpAccountant().compose(1, sigma / 2, k).epsilon(DELTA);
    const maxEpsilon = (eps(2) + eps(3)) / 2;
    const c = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 10, minAvailableNodes: 8, deadlineMs: 60_000, outDir: out, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 0.5, minFitNodes: 1, fitConfig: FIT }),
      dp: { mode: 'local', noiseMultiplier: sigma, clipNorm: clip, delta: DELTA, maxEpsilon },
    });
    coordinators.push(c);
    const done = c.run();
    sim = await startSimulation({ brokerUrl: broker.url, job, nodes: 8, train: subset(train, range(0, 800)), partition: { kind: 'iid' }, seed: 2, workers: 2 });
    const history = await done;

    expect(c.stopError?.code).toBe(ErrorCodes.PRIVACY_BUDGET);
    expect(history.filter((r) => r.accepted).length).toBe(2);
    const last = history.at(-1)!.privacy!;
    expect(last).toMatchObject({ mode: 'local', noiseMultiplier: sigma, accountedNoiseMultiplier: sigma / 2, clipNorm: clip, steps: 2, maxEpsilon });
    expect(last.epsilon).toBe(eps(2));
    // the checkpoint of the last round is there
    const cp = await Coordinator.loadCheckpoint(out);
    expect(cp.round).toBe(history.at(-1)!.round);
    expect(cp.privacy?.accountant.steps).toBe(2);
    // the tasks asked for local noise; what left the nodes is noise of std σC around a clipped delta
    expect(seen.length).toBeGreaterThan(0);
    for (const u of seen) {
      const v = values(u);
      const std = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
      // ‖clipped delta‖² ≤ C² adds at most C²/n to the mean square: the rms is σC within 1 %
      expect(std).toBeGreaterThan(sigma * clip * 0.99);
      expect(std).toBeLessThan(sigma * clip * 1.01);
      expect(u.metrics.loss).toBe(0);
      expect(u.dp).toBeUndefined();
    }
    await expect(readFile(join(out, CHECKPOINT_FILE))).resolves.toBeInstanceOf(Buffer);
  });
});
