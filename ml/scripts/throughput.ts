/**
 * Training throughput of mnist-2nn on this machine:
 * `npx tsx ml/scripts/throughput.ts [wasm|cpu|tensorflow]`.
 * Prints samples/s of `FederatedModel.fit` (dense fast path vs tfjs model.fit) at several batch
 * sizes on 6,000 MNIST examples, 1 epoch, SGD, and the time to evaluate the 10k test set.
 */
import * as tf from '@tensorflow/tfjs';
import { createModel, initBackend, loadMnist, subset, type BackendName } from '../src/index.ts';

const backend = await initBackend(process.argv[2] as BackendName | undefined);
const train = loadMnist('train');
const n = 6000;
const data = subset(train, Array.from({ length: n }, (_, i) => i));
const warm = subset(train, Array.from({ length: 512 }, (_, i) => i));
const rows: string[] = [];
for (const batchSize of [32, 64, 128]) {
  for (const engine of ['auto', 'layers'] as const) {
    const m = createModel('mnist-2nn', 1);
    await m.fit(warm, { epochs: 1, batchSize, learningRate: 0.05, engine });
    const r = await m.fit(data, { epochs: 1, batchSize, learningRate: 0.05, engine });
    rows.push(`| ${engine === 'auto' ? 'dense fast path' : 'tfjs model.fit'} | ${batchSize} | ${Math.round(n / (r.durationMs / 1000))} | ${r.loss.toFixed(3)} |`);
    m.dispose();
  }
}
const test = loadMnist('test');
const e = createModel('mnist-2nn', 1);
const t0 = performance.now();
await e.evaluate(test);
const evalMs = performance.now() - t0;
e.dispose();
console.log(`backend ${backend}; ${n} MNIST examples, 1 epoch, SGD lr 0.05; tensors alive after: ${tf.memory().numTensors}`);
console.log('| engine | batch | samples/s | last-epoch loss |\n|---|---|---|---|');
console.log(rows.join('\n'));
console.log(`evaluate 10k test examples: ${Math.round(evalMs)} ms`);
