import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { initBackend, type Dataset } from '@fedmq/ml';
import { EdgeNode, createTrainer, deviceInfo, type EdgeNodeOptions } from '@fedmq/edge-node';
import { fnv1a32, seededRng } from '@fedmq/protocol';
import { attackDelta, flipLabels } from './attacks.ts';
import { withChaos } from './chaos.ts';
import { AlieColluder } from './alie.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';


const init = workerData as WorkerInit;
const post = (m: FromWorker) => parentPort!.postMessage(m);
const log = pino({ level: init.logLevel }, pino.destination(2));

async function main(): Promise<void> {
  const backend = await initBackend(init.backend);
  const trainer = createTrainer();
  const device = deviceInfo(backend);
  const x = new Float32Array(init.x);
  const y = new Int32Array(init.y);
  const width = init.featureShape.reduce((a, b) => a * b, 1);
  // ALIE colluders post their honest deltas to the main thread, which answers with the crafted one
  const alie = new AlieColluder((m, transfer) => parentPort!.postMessage(m, transfer));
  parentPort!.on('message', (m: ToWorker) => alie.receive(m));
  const nodes = init.nodes.map(({ nodeId, offset, count }) => {
    // a view of this worker's shared buffer: N idle nodes hold no copies of their data
    const data: Dataset = {
      x: x.subarray(offset * width, (offset + count) * width),
      y: y.subarray(offset, offset + count),
      featureShape: init.featureShape,
      numClasses: init.numClasses,
      numExamples: count,
    };
    const bad = init.attack && init.malicious?.includes(nodeId) ? init.attack : undefined;
    const rng = seededRng((init.seed ^ fnv1a32(nodeId)) >>> 0);
    const attack: EdgeNodeOptions['transformDelta'] = bad?.name === 'alie' ? (delta, round, ctx) => alie.transform(nodeId, delta, round, ctx)
      : bad && bad.name !== 'label-flip' ? (delta) => attackDelta(bad.name, delta, rng, bad.params) : undefined;
    const target = { dropConnection: () => node.dropConnection() };
    const onFitTask: EdgeNodeOptions['onFitTask'] = bad?.name === 'alie' ? (ctx) => alie.announce(nodeId, ctx.runId, ctx.round) : undefined;
    const node: EdgeNode = new EdgeNode({
      brokerUrl: init.brokerUrl, job: init.job, nodeId, data: bad?.name === 'label-flip' ? flipLabels(data) : data, device, trainer, logger: log, mqtt: init.mqtt?.[nodeId],
      transformDelta: init.chaos ? withChaos(init.chaos, init.seed, nodeId, target, attack) : attack, onFitTask,
    });
    node.on('publishing', (u) => post({ type: 'publishing', nodeId, ...u }));
    node.on('updated', (u) => post({ type: 'updated', nodeId, ...u }));
    node.on('problem', (e) => post({ type: 'problem', nodeId, code: e.code, message: e.message }));
    node.on('connectionError', (e) => post({ type: 'connectionError', nodeId, message: e.message }));
    return node;
  });
  // paced: a few connects in flight at a time, so each CONNACK arrives well within the connect timeout
  let next = 0;
  const connectNext = async (): Promise<void> => {
    while (next < nodes.length) {
      const node = nodes[next++];
      await node.start();
      post({ type: 'connected', nodeId: node.nodeId });
    }
  };
  await Promise.all(Array.from({ length: Math.min(init.connectConcurrency, nodes.length) }, connectNext));
  post({ type: 'ready', backend, nodes: nodes.length });
  parentPort!.on('message', async (m: ToWorker) => {
    if (m.type === 'stop') {
      alie.close();
      await Promise.all(nodes.map((n) => n.stop()));
      trainer.dispose();
      post({ type: 'stopped' });
      parentPort!.close();
    }
  });
}

main().catch((err) => post({ type: 'fatal', message: (err as Error).stack ?? String(err) }));
