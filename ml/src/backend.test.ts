import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { currentBackend, initBackend } from './backend.ts';

function run(fn: () => tf.Tensor): Float32Array {
  return tf.tidy(() => fn().dataSync() as Float32Array);
}

function seeded(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

describe('initBackend', () => {
  it('falls back to wasm here (tfjs-node not installed), is idempotent, and can be forced', async () => {
    const first = await initBackend();
    expect(['tensorflow', 'wasm']).toContain(first);
    expect(await initBackend()).toBe(first);
    expect(currentBackend()).toBe(first);
    expect(await initBackend('cpu')).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend('wasm')).toBe('wasm');
  });

  it('throws ML_BACKEND_UNAVAILABLE for a backend that cannot load', async () => {
    // @ts-expect-error deliberately invalid name
    await expect(initBackend('webgpu')).rejects.toMatchObject({ code: 'ML_BACKEND_UNAVAILABLE' });
  });
});

describe('patched wasm kernels agree with the cpu backend', () => {
  it('BatchMatMul with transposes, and Slice', async () => {
    const cases: [number[], number[], boolean, boolean][] = [
      [[33, 70], [70, 20], false, false],
      [[70, 33], [70, 20], true, false],
      [[33, 70], [20, 70], false, true],
      [[70, 33], [20, 70], true, true],
      [[3, 7, 5], [3, 7, 4], true, false],
    ];
    const compute = () => [
      ...cases.map(([sa, sb, ta, tb], i) => run(() => tf.matMul(seeded(sa, i), seeded(sb, i + 100), ta, tb))),
      run(() => tf.slice(seeded([50, 30], 7), [10, 0], [5, 30])),
      run(() => tf.slice(seeded([50, 30], 7), [10, 3], [5, 20])),
      run(() => tf.slice(seeded([4, 5, 6], 8), [1, 0, 0], [2, 5, 6])),
    ];
    await initBackend('cpu');
    const ref = compute();
    await initBackend('wasm');
    const got = compute();
    for (let i = 0; i < ref.length; i++) {
      expect(got[i].length).toBe(ref[i].length);
      let m = 0;
      for (let j = 0; j < ref[i].length; j++) m = Math.max(m, Math.abs(ref[i][j] - got[i][j]));
      expect(m).toBeLessThan(1e-4);
    }
    // gradients through the patched kernel match too
    const grad = () => {
      const a = seeded([16, 40], 1);
      const b = seeded([40, 8], 2);
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y))));
      return g([a, b]).map((t) => t.dataSync() as Float32Array);
    };
    await initBackend('cpu');
    const gRef = tf.tidy(grad);
    await initBackend('wasm');
    const gGot = tf.tidy(grad);
    for (let i = 0; i < 2; i++) for (let j = 0; j < gRef[i].length; j++) expect(Math.abs(gRef[i][j] - gGot[i][j])).toBeLessThan(1e-3);
  });
});
