import parsePrometheus, { type MetricFamily } from 'parse-prometheus-text-format';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, coordinatorMetrics, createStrategy, serveMetrics } from '@fedmq/coordinator';
import type { RoundRecord } from '@fedmq/protocol';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from './simulation.ts';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const value = (families: MetricFamily[], name: string, labels: Record<string, string> = {}) => {
  const family = families.find((f) => f.name === name);
  if (!family) throw new Error(`no metric ${name}`);
  const m = family.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  return Number(m?.value ?? m?.buckets?.['+Inf']); // a histogram's count is its +Inf bucket
};

describe('coordinator /metrics during a run', () => {
  let broker: RunningBroker;
  let sim: Simulation | undefined;
  let coordinator: Coordinator | undefined;
  let server: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  afterAll(async () => {
    await sim?.stop();
    await coordinator?.close();
    await server?.close();
    await broker?.close();
  });

  it('parses as Prometheus text and its counters match the history', async () => {
    await initBackend('wasm');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    coordinator = new Coordinator({
      brokerUrl: broker.url, job: 'prom', model: 'mnist-2nn', rounds: 3, minAvailableNodes: 3, deadlineMs: 60_000, testData: subset(loadMnist('test'), range(500)),
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
      evaluateFraction: 1,
    });
    server = await serveMetrics(coordinatorMetrics(coordinator), 0, '127.0.0.1');
    const scrape = async () => parsePrometheus(await (await fetch(server!.url)).text());
    // scrape while the run goes on: right after round 1's metrics
    const midRun = new Promise<MetricFamily[]>((resolve) => coordinator!.once('round', () => void scrape().then(resolve)));
    const done = coordinator.run();
    sim = await startSimulation({ brokerUrl: broker.url, job: 'prom', nodes: 3, train: subset(loadMnist('train'), range(900)), partition: { kind: 'iid' }, seed: 3, workers: 2 });
    const mid = await midRun;
    const history: RoundRecord[] = await done;
    const end = await scrape();

    expect(value(mid, 'fedmq_rounds_completed_total')).toBe(1);
    expect(value(mid, 'fedmq_updates_accepted_total')).toBeGreaterThanOrEqual(history[0].reported);
    expect(value(mid, 'fedmq_nodes_online')).toBe(3);
    const sum = (k: 'reported' | 'bytesUp' | 'bytesDown') => history.reduce((s, r) => s + r[k], 0);
    expect(value(end, 'fedmq_rounds_completed_total', { job: 'prom' })).toBe(history.length);
    expect(value(end, 'fedmq_current_round')).toBe(3);
    expect(value(end, 'fedmq_updates_accepted_total')).toBe(sum('reported'));
    expect(value(end, 'fedmq_bytes_in_total')).toBe(sum('bytesUp'));
    expect(value(end, 'fedmq_bytes_out_total')).toBe(sum('bytesDown'));
    expect(value(end, 'fedmq_round_duration_seconds')).toBe(history.length);
    expect(value(end, 'fedmq_test_accuracy')).toBeCloseTo(history[2].testAccuracy!, 10);
    expect(value(end, 'fedmq_federated_accuracy')).toBeCloseTo(history[2].federatedEval!.accuracy, 10);
    expect(end.find((f) => f.name === 'fedmq_updates_rejected_total')!.metrics).toEqual([]);
    expect(end.find((f) => f.name === 'process_cpu_seconds_total')).toBeDefined();
  });
});
