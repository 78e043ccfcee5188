/**
 * Bytes down with selection, measured at the broker: 200 simulated nodes (MNIST, Dirichlet 0.5,
 * seed 42) on a broker of their own, a coordinator selecting --fraction 0.05 of them per round
 * (10 nodes), 3 rounds. For each round, the bytes the broker wrote to node connections (its
 * per-role socket counters, `traffic()`) from the round's fit stage to its metrics, against the
 * goal 1.2 × selected × model size + 2 KB × nodes.
 *
 *   npm run bench:bytes [-- --nodes 200 --fraction 0.05 --rounds 3]
 *
 * Prints a table and writes bench/results/bytes.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { startBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import { initBackend, loadMnist } from '@fedmq/ml';
import { topics, type ModelMeta } from '@fedmq/protocol';
import { DEFAULT_JOB, loadSimDataset, startSimulation } from '@fedmq/simulator';
import { arg } from './lib.ts';

const nodes = Number(arg('nodes', '200'));
const fraction = Number(arg('fraction', '0.05'));
const rounds = Number(arg('rounds', '3'));
const JOB = 'bench-bytes';

await initBackend();
const broker = await startBroker({ port: 0, host: '127.0.0.1' });
const data = loadSimDataset('mnist');
const coordinator = new Coordinator({
  brokerUrl: broker.url, job: JOB, model: data.model, rounds, minAvailableNodes: nodes, deadlineMs: 120_000, seed: DEFAULT_JOB.seed, testData: loadMnist('test'),
  strategy: createStrategy({ strategy: 'fedavg', fraction, minFitNodes: 1, fitConfig: DEFAULT_JOB.fit }),
});
let modelBytes = 0;
const watch = broker.aedes;
watch.on('publish', (packet) => {
  if (packet.topic === topics.modelMeta(JOB) && packet.payload.length > 0) modelBytes = (JSON.parse(packet.payload.toString()) as ModelMeta).bytes;
});
const windows = new Map<number, { start: number; end?: number }>();
const written = () => broker.traffic().node.written;
coordinator.on('stage', (s) => {
  if (s.stage === 'fit' && !windows.has(s.round)) windows.set(s.round, { start: written() });
});
coordinator.on('round', (r) => {
  const w = windows.get(r.round);
  if (w) w.end = written();
});
const done = coordinator.run();
const sim = await startSimulation({
  brokerUrl: broker.url, job: JOB, nodes, train: data.train, partition: { kind: 'dirichlet', alpha: 0.5 }, seed: DEFAULT_JOB.seed,
});
const history = await done;
await sim.stop();
await coordinator.close();
await broker.close();

const rows = history.map((r) => {
  const w = windows.get(r.round)!;
  const atBroker = (w.end ?? w.start) - w.start;
  const goal = 1.2 * r.selected * modelBytes + 2048 * nodes;
  return { round: r.round, selected: r.selected, nodes, modelBytes, bytesToNodesAtBroker: atBroker, goalBytes: Math.round(goal), withinGoal: atBroker <= goal, bytesDownReportedByNodes: r.bytesDown, testAccuracy: r.testAccuracy };
});
console.log(`bytes to nodes per round at the broker, ${nodes} nodes, fraction ${fraction}, mnist-2nn (${modelBytes} B model payload), node ${process.version}`);
console.log('| round | selected | bytes to nodes (broker socket) | goal 1.2·sel·model + 2 KB·nodes | ratio | nodes\' own bytesDown |');
console.log('|---:|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.round} | ${r.selected} | ${r.bytesToNodesAtBroker} | ${r.goalBytes} | ${(r.bytesToNodesAtBroker / r.goalBytes).toFixed(2)} | ${r.bytesDownReportedByNodes} |`);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/bytes.json', `${JSON.stringify(rows, null, 2)}\n`);
console.log('wrote bench/results/bytes.json');
