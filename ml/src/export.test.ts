import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataset, loadMnist, subset } from './data.ts';
import { writeCsv, writeIdx } from './export.ts';

const dir = mkdtempSync(join(tmpdir(), 'fedmq-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeIdx', () => {
  it('writes an MNIST slice that loadDataset reads back exactly', () => {
    const ds = subset(loadMnist('test'), [0, 1, 2, 3, 4, 9999]);
    writeIdx(join(dir, 'n0'), ds);
    const back = loadDataset(join(dir, 'n0'));
    expect(back.numExamples).toBe(6);
    expect(back.featureShape).toEqual([784]);
    expect(Array.from(back.y)).toEqual(Array.from(ds.y));
    expect(Array.from(back.x)).toEqual(Array.from(ds.x));
  });

  it('refuses features outside [0, 1]', () => {
    expect(() => writeIdx(join(dir, 'bad'), { x: new Float32Array([2]), y: new Int32Array([0]), featureShape: [1], numClasses: 1, numExamples: 1 })).toThrow(RangeError);
  });
});

describe('writeCsv', () => {
  it('writes rows that loadDataset reads back as the same float32 values', () => {
    const ds = { x: new Float32Array([0.1, -2.5, 1e-7, 3, Math.fround(1 / 3), 7]), y: new Int32Array([0, 1, 0]), featureShape: [2], numClasses: 2, numExamples: 3 };
    const back = loadDataset(writeCsv(join(dir, 'csv', 'data.csv'), ds));
    expect(back.featureShape).toEqual([2]);
    expect(Array.from(back.x)).toEqual(Array.from(ds.x));
    expect(Array.from(back.y)).toEqual([0, 1, 0]);
  });
});
