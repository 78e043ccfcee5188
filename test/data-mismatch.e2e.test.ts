/**
 * A node whose data does not fit the model (issue 12, item 9), end to end: a real broker on port
 * 0, a real Coordinator (mlp-4x3, FedAvg, fraction 1, a 10-minute deadline) and real EdgeNodes
 * (tfjs, cpu backend). One node holds 5 features instead of 4; the others fit.
 *
 * Round 1 selects all three online nodes: the bad node fetches the model, finds that its data
 * does not fit, gives the task up and says so in its status (`dataMismatch`, FEDMQ_MODEL_MISMATCH):
 * the round closes on the two good updates without waiting for the deadline, the coordinator
 * reports the bad node once and counts it in the round's failures. Round 2 waits for three
 * eligible nodes (the bad one no longer counts) and runs once a third good node joins: the bad
 * node is online but not selected.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { EdgeNode, deviceInfo } from '@fedmq/edge-node';
import { createRng, initBackend, type Dataset } from '@fedmq/ml';
import { ErrorCodes, type FedmqError } from '@fedmq/protocol';

const JOB = 'data-mismatch';
const open: { broker?: RunningBroker; coordinator?: Coordinator; nodes: EdgeNode[] } = { nodes: [] };
afterEach(async () => {
  await open.coordinator?.close();
  await Promise.all(open.nodes.splice(0).map((n) => n.stop()));
  await open.broker?.close();
  open.coordinator = undefined;
  open.broker = undefined;
});

/** `n` examples of `features` uniform features, the class the argmax of the first three. */
function data(n: number, features: number, seed: number): Dataset {
  const rng = createRng(seed);
  const x = new Float32Array(n * features);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < features; j++) x[i * features + j] = rng();
    const f = x.subarray(i * features, i * features + 3);
    y[i] = f[0] >= f[1] && f[0] >= f[2] ? 0 : f[1] >= f[2] ? 1 : 2;
  }
  return { x, y, featureShape: [features], numClasses: 3, numExamples: n };
}

describe('a node whose data does not fit the model', () => {
  it('is excluded with its code after the round it gave up, which does not wait for the deadline; the good nodes go on', async () => {
    const backend = await initBackend('cpu');
    open.broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const url = open.broker.url;
    const coordinator = new Coordinator({
      brokerUrl: url, job: JOB, model: 'mlp-4x3', rounds: 2, minAvailableNodes: 3, deadlineMs: 600_000, seed: 3, reconnect: false,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 8, learningRate: 0.1 } }),
    });
    open.coordinator = coordinator;
    const rejected: { code: string; nodeId?: string; round: number }[] = [];
    coordinator.on('rejected', (r) => rejected.push({ code: r.error.code, nodeId: r.nodeId, round: r.round }));
    const run = coordinator.run();

    const node = (nodeId: string, ds: Dataset) => {
      const n = new EdgeNode({ brokerUrl: url, job: JOB, nodeId, data: ds, device: deviceInfo(backend), reconnect: false });
      open.nodes.push(n);
      return n;
    };
    const bad = node('bad', data(30, 5, 1));
    const problems: FedmqError[] = [];
    bad.on('problem', (e) => problems.push(e));
    let badUpdates = 0;
    bad.on('updated', () => badUpdates++);
    await Promise.all([bad.start(), node('good-1', data(30, 4, 2)).start(), node('good-2', data(30, 4, 3)).start()]);

    // the third good node joins once round 1 closed: round 2 needs three eligible nodes
    const round1 = new Promise((resolve) => coordinator.once('round', resolve));
    void round1.then(() => node('good-3', data(30, 4, 4)).start());
    const history = await run;

    expect(history).toHaveLength(2);
    expect(history[0]).toMatchObject({ round: 1, accepted: true, selected: 3, reported: 2, failures: { failed: 1, [ErrorCodes.MODEL_MISMATCH]: 1 } });
    expect(history[1]).toMatchObject({ round: 2, accepted: true, selected: 3, reported: 3, failures: {} });
    // reported once, with the node and its code
    expect(rejected).toEqual([{ code: ErrorCodes.MODEL_MISMATCH, nodeId: 'bad', round: 1 }]);
    // the bad node tried once (one task, one problem) and never sent an update
    expect(problems.map((p) => p.code)).toEqual([ErrorCodes.MODEL_MISMATCH]);
    expect(badUpdates).toBe(0);
    expect(coordinator.onlineNodes()).toContain('bad');
    expect(coordinator.nodes().find((n) => n.nodeId === 'bad')?.dataMismatch).toEqual({
      code: ErrorCodes.MODEL_MISMATCH, model: 'mlp-4x3', message: 'local data: 30 examples of 5 features, 3 classes (labels 0..2); model mlp-4x3 takes 4 features and 3 classes',
    });
  });

  it('a central test set that does not fit the model is refused when the coordinator is created, naming both shapes', async () => {
    await initBackend('cpu');
    const strategy = createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 8, learningRate: 0.1 } });
    expect(() => new Coordinator({ brokerUrl: 'mqtt://127.0.0.1:1', job: JOB, model: 'mlp-4x3', rounds: 1, minAvailableNodes: 1, deadlineMs: 1000, strategy, testData: data(7, 5, 1) }))
      .toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: 'testData: 7 examples of 5 features, 3 classes (labels 0..2); model mlp-4x3 takes 4 features and 3 classes' }));
  });
});
