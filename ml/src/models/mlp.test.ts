import { describe, expect, it } from 'vitest';
import { initBackend } from '../backend.ts';
import { createModel } from '../federated-model.ts';
import { getModelDefinition } from './registry.ts';
import './index.ts';

describe('mlp-<features>x<classes>', () => {
  it('is resolved from its name with the documented tensors, and learns a separable rule', async () => {
    await initBackend('cpu');
    expect(getModelDefinition('mlp-3x2').featureShape).toEqual([3]);
    expect(() => getModelDefinition('mlp-0x2')).toThrow();
    const m = createModel('mlp-3x2', 5);
    expect(m.getWeights().map((w) => `${w.name}:${w.shape}`)).toEqual(['fc1/kernel:3,64', 'fc1/bias:64', 'fc2/kernel:64,32', 'fc2/bias:32', 'fc3/kernel:32,2', 'fc3/bias:2']);
    // label = 1 when the first reading exceeds 0.5
    const n = 400;
    const x = new Float32Array(n * 3);
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < 3; j++) x[i * 3 + j] = ((i * 37 + j * 101) % 97) / 97;
      y[i] = x[i * 3] > 0.5 ? 1 : 0;
    }
    const data = { x, y, featureShape: [3], numClasses: 2, numExamples: n };
    await m.fit(data, { epochs: 30, batchSize: 16, learningRate: 0.5, seed: 1 });
    expect((await m.evaluate(data)).accuracy).toBeGreaterThan(0.9);
    m.dispose();
  });
});
