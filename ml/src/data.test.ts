import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { featureRange, gatherFeatures, isByteDataset, loadCsv, loadDataset, loadIdx, loadMnist, subset, type ByteDataset } from './data.ts';

const dir = mkdtempSync(join(tmpdir(), 'fedmq-ml-data-'));

function idx(magic: number, dims: number[], data: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

describe('loadIdx', () => {
  const images = join(dir, 'train-images-idx3-ubyte');
  const labels = join(dir, 'train-labels-idx1-ubyte');
  writeFileSync(images, idx(0x803, [3, 2, 2], [0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0]));
  writeFileSync(labels, idx(0x801, [3], [2, 0, 1]));

  it('reads a small IDX pair, scaling pixels to [0,1] and flattening', () => {
    const ds = loadIdx(images, labels);
    expect(ds.numExamples).toBe(3);
    expect(ds.featureShape).toEqual([4]);
    expect(ds.numClasses).toBe(3);
    expect(Array.from(ds.y)).toEqual([2, 0, 1]);
    expect(ds.x[1]).toBe(1);
    expect(ds.x[2]).toBeCloseTo(0.2, 6);
    expect(ds.x.length).toBe(12);
  });

  it('keepBytes keeps the pixel bytes (xDivisor 255), read back as exactly the float32 values', () => {
    const bytes = loadIdx(images, labels, { keepBytes: true }) as ByteDataset;
    const floats = loadIdx(images, labels);
    expect(isByteDataset(bytes) && !isByteDataset(floats)).toBe(true);
    expect(bytes.x).toBeInstanceOf(Uint8Array);
    expect(Array.from(bytes.x)).toEqual([0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0]);
    expect(bytes.xDivisor).toBe(255);
    expect({ ...bytes, x: undefined, xDivisor: undefined }).toEqual({ ...floats, x: undefined });
    expect(featureRange(bytes, 0, 3)).toEqual(floats.x);
    const out = new Float32Array(8);
    gatherFeatures(bytes, [2, 0], 0, 2, out);
    expect(out).toEqual(Float32Array.from([...floats.x.subarray(8, 12), ...floats.x.subarray(0, 4)]));
    const part = subset(bytes, [1]);
    expect(isByteDataset(part) && Array.from(part.x)).toEqual([1, 2, 3, 4]);
    expect(loadDataset(dir, { keepBytes: true }).x).toBeInstanceOf(Uint8Array);
  });

  it('loadDataset finds the pair in a directory', () => {
    expect(loadDataset(dir).numExamples).toBe(3);
    expect(loadDataset(images).numExamples).toBe(3);
  });

  it('rejects bad magic, truncated data and count mismatch with ML_BAD_DATA', () => {
    const badMagic = join(dir, 'bad-magic');
    writeFileSync(badMagic, idx(0x12345678, [3], [0, 1, 2]));
    expect(() => loadIdx(badMagic, labels)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
    const truncated = join(dir, 'truncated');
    writeFileSync(truncated, idx(0x803, [3, 2, 2], [1, 2, 3]));
    expect(() => loadIdx(truncated, labels)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
    const twoLabels = join(dir, 'two-labels');
    writeFileSync(twoLabels, idx(0x801, [2], [0, 1]));
    expect(() => loadIdx(images, twoLabels)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
    expect(() => loadIdx(join(dir, 'missing'), labels)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
  });
});

describe('loadCsv', () => {
  it('reads numeric features, skips text columns, keeps integer labels', () => {
    const p = join(dir, 'a.csv');
    writeFileSync(p, 'id,temp,label,hum\nmote-1,20.5,1,0.3\nmote-2,21,0,0.4\n\nmote-1,-3e1,2,1\n');
    const ds = loadCsv(p);
    expect(ds.featureShape).toEqual([2]);
    expect(ds.numExamples).toBe(3);
    expect(Array.from(ds.x)).toEqual([20.5, 0.30000001192092896, 21, 0.4000000059604645, -30, 1]);
    expect(Array.from(ds.y)).toEqual([1, 0, 2]);
    expect(ds.numClasses).toBe(3);
    expect(loadDataset(p).numExamples).toBe(3);
  });

  it('maps non-integer labels to 0..K-1 and honours labelColumn', () => {
    const p = join(dir, 'b.csv');
    writeFileSync(p, 'x,kind\n1,cat\n2,dog\n3,cat\n');
    const ds = loadCsv(p, { labelColumn: 'kind' });
    expect(Array.from(ds.y)).toEqual([0, 1, 0]);
    expect(ds.numClasses).toBe(2);
  });

  it('rejects malformed rows and a missing label column with ML_BAD_DATA', () => {
    const fields = join(dir, 'c.csv');
    writeFileSync(fields, 'x,label\n1,0\n2\n');
    expect(() => loadCsv(fields)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining(':3') }));
    const notNum = join(dir, 'd.csv');
    writeFileSync(notNum, 'x,label\n1,0\nabc,1\n');
    expect(() => loadCsv(notNum)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
    expect(() => loadCsv(notNum, { labelColumn: 'y' })).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
  });
});

describe('loadCsv on a file of many read chunks (64 KiB each)', () => {
  // 60,000 rows, CRLF line ends, labels with two-byte UTF-8 characters that straddle chunk boundaries
  const rows = 60_000;
  const p = join(dir, 'big.csv');
  const labelOf = (i: number) => ['zéro', 'ünf', 'ça-va-très-bien-merci'][i % 3];
  const lines = ['a,label,b'];
  for (let i = 0; i < rows; i++) lines.push(`${i},${labelOf(i)},${i / 8}`);
  // leading zeros on the first value shift the text until a chunk (the 16th) ends inside a 2-byte character
  let content = '';
  for (let pad = 0; pad < 64; pad++) {
    content = `${[lines[0], `${'0'.repeat(pad)}${lines[1]}`, ...lines.slice(2)].join('\r\n')}\r\n`;
    if ((Buffer.from(content)[2 ** 20] & 0xc0) === 0x80) break;
  }
  writeFileSync(p, content);

  it('reads every row with its values and labels', () => {
    expect((Buffer.from(content)[2 ** 20] & 0xc0) === 0x80).toBe(true);
    expect(statSync(p).size).toBeGreaterThan(2 ** 20);
    const ds = loadCsv(p);
    expect(ds.numExamples).toBe(rows);
    expect(ds.featureShape).toEqual([2]);
    expect(ds.numClasses).toBe(3);
    // labels sorted as strings (UTF-16 code units): 'zéro' < 'ça-…' < 'ünf'
    const code = { zéro: 0, 'ça-va-très-bien-merci': 1, ünf: 2 } as Record<string, number>;
    for (const i of [0, 1, 2, 17_476, 34_953, rows - 1]) {
      expect([ds.x[2 * i], ds.x[2 * i + 1], ds.y[i]]).toEqual([i, Math.fround(i / 8), code[labelOf(i)]]);
    }
  });

  it('names the line of a bad value far past the first chunk', () => {
    const bad = join(dir, 'big-bad.csv');
    const copy = [...lines];
    copy[50_001] = '50000,zéro,oops';
    writeFileSync(bad, `${copy.join('\n')}\n`);
    expect(() => loadCsv(bad)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('big-bad.csv:50002:') }));
  });
});

describe('loadMnist / subset', () => {
  it('has 60000 train and 10000 test examples with labels 0..9 and pixels in [0,1]', () => {
    const train = loadMnist('train');
    const test = loadMnist('test');
    expect(train.numExamples).toBe(60000);
    expect(test.numExamples).toBe(10000);
    expect(train.featureShape).toEqual([784]);
    expect(train.x.length).toBe(60000 * 784);
    for (const ds of [train, test]) {
      const counts = new Array<number>(10).fill(0);
      for (const l of ds.y) counts[l]++;
      expect(counts.every((c) => c > 800)).toBe(true);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(ds.numExamples);
    }
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < 784 * 100; i++) {
      min = Math.min(min, train.x[i]);
      max = Math.max(max, train.x[i]);
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
    expect(train.y[0]).toBe(5); // the famous first MNIST digit
  });

  it('subset copies the selected rows', () => {
    const test = loadMnist('test');
    const s = subset(test, [9999, 0]);
    expect(s.numExamples).toBe(2);
    expect(Array.from(s.y)).toEqual([test.y[9999], test.y[0]]);
    expect(Array.from(s.x.subarray(784))).toEqual(Array.from(test.x.subarray(0, 784)));
    s.x[0] = 42;
    expect(test.x[9999 * 784]).not.toBe(42);
    expect(() => subset(test, [10000])).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA' }));
  });
});
