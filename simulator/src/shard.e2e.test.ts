import { afterEach, describe, expect, it } from 'vitest';
import { weightsSha256, weightsToWire, type RoundRecord } from '@fedmq/protocol';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from './simulation.ts';

const FIT = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const train = subset(loadMnist('train'), Array.from({ length: 3000 }, (_, i) => i));
const test = subset(loadMnist('test'), Array.from({ length: 500 }, (_, i) => i));

let broker: RunningBroker | undefined;
let sims: Simulation[] = [];
let coordinator: Coordinator | undefined;
afterEach(async () => {
  await Promise.all(sims.map((s) => s.stop()));
  sims = [];
  await coordinator?.close();
  coordinator = undefined;
  await broker?.close();
  broker = undefined;
});

/** 12 nodes (Dirichlet 0.5, seed 7), 5 selected per round, 2 rounds, run as `shards` simulations: history and final weights' sha256. */
async function run(shards: number): Promise<{ history: RoundRecord[]; sha: string; ids: string[] }> {
  await initBackend('wasm');
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  coordinator = new Coordinator({
    brokerUrl: broker.url, job: 'shards', model: 'mnist-2nn', rounds: 2, minAvailableNodes: 12, deadlineMs: 60_000, testData: test, seed: 7,
    strategy: createStrategy({ strategy: 'fedavg', fraction: 5 / 12, minFitNodes: 5, fitConfig: FIT }),
  });
  const done = coordinator.run();
  sims = await Promise.all(Array.from({ length: shards }, (_, index) => startSimulation({
    brokerUrl: broker!.url, job: 'shards', nodes: 12, train, partition: { kind: 'dirichlet', alpha: 0.5 }, seed: 7, workers: 1,
    shard: shards > 1 ? { index, count: shards } : undefined,
  })));
  const history = await done;
  const sha = weightsSha256(weightsToWire(coordinator.globalWeights()));
  const ids = sims.flatMap((s) => s.plan.map((n) => n.nodeId));
  await Promise.all(sims.map((s) => s.stop()));
  sims = [];
  await coordinator.close();
  coordinator = undefined;
  await broker.close();
  broker = undefined;
  return { history, sha, ids };
}

describe('sharded simulation', () => {
  it('3 shards on one broker are the unsharded fleet: disjoint ids, same selection, same accuracies, bit-identical global model', async () => {
    const whole = await run(1);
    const sharded = await run(3);
    expect(sharded.ids).toEqual(whole.ids);
    expect(new Set(sharded.ids).size).toBe(12);
    expect(sharded.history.map((r) => [r.round, r.selected, r.reported])).toEqual([[1, 5, 5], [2, 5, 5]]);
    expect(sharded.history.map((r) => [r.trainLoss, r.testAccuracy])).toEqual(whole.history.map((r) => [r.trainLoss, r.testAccuracy]));
    expect(sharded.sha).toBe(whole.sha);
  });
});
