import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeUpdate, getCodec, topicFilter, type NamedTensor } from '@fedmq/protocol';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation } from './simulation.ts';
import { alieZ, type AlieRound } from './alie.ts';

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const flat = (ts: readonly NamedTensor[]) => Float64Array.from(ts.flatMap((t) => Array.from(t.data)));

describe('ALIE end to end over a real Aedes broker', () => {
  let broker: RunningBroker;

  beforeAll(async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await broker?.close();
  });

  it('2 of 4 nodes in different workers collude: both send the same μ − zσ of their honest deltas, and the run completes', async () => {
    const job = 'e2e-alie';
    const train = subset(loadMnist('train'), range(0, 1200));
    const test = subset(loadMnist('test'), range(0, 500));
    const c = new Coordinator({
      brokerUrl: broker.url, job, model: 'mnist-2nn', rounds: 2, minAvailableNodes: 4, deadlineMs: 60_000, testData: test, seed: 42,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 4, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
    });
    // every update on the wire, decoded
    const sent = new Map<string, NamedTensor[]>();
    const watcher = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    watcher.on('message', (_topic, payload) => {
      const u = decodeUpdate(payload);
      sent.set(`${u.round}/${u.nodeId}`, u.tensors.map((t) => getCodec(u.codec).decode(t)));
    });
    await watcher.subscribeAsync(topicFilter('nodeUpdate', job), { qos: 1 });
    const crafted: AlieRound[] = [];
    const done = c.run();
    const s = await startSimulation({
      brokerUrl: broker.url, job, nodes: 4, train, partition: { kind: 'iid' }, seed: 1, workers: 4, byzantine: 0.5, attack: 'alie',
    });
    s.on('alie', (r) => crafted.push(r));
    try {
      const history = await done;
      expect(s.workers).toBe(4); // one node per worker: the colluders are in different threads
      expect(s.malicious.size).toBe(2);
      expect(history.map((r) => [r.round, r.selected, r.reported])).toEqual([[1, 4, 4], [2, 4, 4]]);
      expect(history.every((r) => Number.isFinite(r.testAccuracy))).toBe(true);
      const bad = [...s.malicious].sort();
      const z = alieZ(4, 2); // s = ⌊4/2 + 1⌋ − 2 = 1, Φ⁻¹(3/4) ≈ 0.6745
      expect(z).toBeCloseTo(0.6744897501960817, 8);
      expect(crafted.map((r) => [r.round, r.n, r.f, [...r.nodeIds].sort()])).toEqual([[1, 4, 2, bad], [2, 4, 2, bad]]);
      for (const r of crafted) {
        expect(r.z).toBeCloseTo(z, 12);
        const [a, b] = bad.map((id) => flat(sent.get(`${r.round}/${id}`)!));
        expect(a).toEqual(b); // identical updates from both colluders
        expect(a).toEqual(flat(r.crafted));
        // … equal to μ − zσ of their honest deltas, recomputed here (σ with divisor k − 1 = 1)
        const [h0, h1] = r.honest.map(flat);
        let shifted = 0;
        for (let j = 0; j < a.length; j++) {
          const mean = (h0[j] + h1[j]) / 2;
          const sd = Math.abs(h0[j] - h1[j]) / Math.SQRT2;
          expect(Math.abs(a[j] - (mean - z * sd))).toBeLessThan(1e-6 + 1e-6 * Math.abs(mean));
          if (sd > 0) shifted++;
        }
        expect(shifted).toBeGreaterThan(a.length / 10); // the honest deltas differ, so the crafted one is not their mean
        expect(a).not.toEqual(h0);
        // the honest nodes' updates are their own
        for (const id of s.plan.map((p) => p.nodeId).filter((id) => !s.malicious.has(id))) expect(flat(sent.get(`${r.round}/${id}`)!)).not.toEqual(a);
      }
    } finally {
      await watcher.endAsync();
      await s.stop();
      await c.close();
    }
  });
});
