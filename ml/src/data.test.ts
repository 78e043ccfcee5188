import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  featureRange, gatherFeatures, isByteDataset, loadCsv, loadDataset, loadDatasetAsync, loadIdx, loadIdxAsync, loadMnist, mnistDataDir, subset, type ByteDataset,
} from './data.ts';

const dir = mkdtempSync(join(tmpdir(), 'fedmq-ml-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh folder under the test's temp folder. */
function folder(name: string): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  return d;
}

function idx(magic: number, dims: number[], data: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
}

describe('loadIdx', () => {
  const idxDir = folder('idx');
  const images = join(idxDir, 'train-images-idx3-ubyte');
  const labels = join(idxDir, 'train-labels-idx1-ubyte');
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
    expect(loadDataset(idxDir, { keepBytes: true }).x).toBeInstanceOf(Uint8Array);
  });

  it('loadDataset finds the pair in a directory', () => {
    expect(loadDataset(idxDir).numExamples).toBe(3);
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

  it('maps named labels through the shared list (labels option) and honours labelColumn', () => {
    const p = join(dir, 'b.csv');
    writeFileSync(p, 'x,kind\n1,cat\n2,dog\n3,cat\n');
    const ds = loadCsv(p, { labelColumn: 'kind', labels: ['eel', 'dog', 'cat'] });
    expect(Array.from(ds.y)).toEqual([2, 1, 2]);
    expect(ds.numClasses).toBe(3);
    expect(loadDataset(p, { labelColumn: 'kind', labels: ['eel', 'dog', 'cat'] }).y).toEqual(ds.y);
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
    const names = ['ünf', 'zéro', 'ça-va-très-bien-merci'];
    const ds = loadCsv(p, { labels: names });
    expect(ds.numExamples).toBe(rows);
    expect(ds.featureShape).toEqual([2]);
    expect(ds.numClasses).toBe(3);
    const code = Object.fromEntries(names.map((l, i) => [l, i])) as Record<string, number>;
    for (const i of [0, 1, 2, 17_476, 34_953, rows - 1]) {
      expect([ds.x[2 * i], ds.x[2 * i + 1], ds.y[i]]).toEqual([i, Math.fround(i / 8), code[labelOf(i)]]);
    }
  });

  it('names the line of a bad value far past the first chunk', () => {
    const bad = join(dir, 'big-bad.csv');
    const copy = [...lines];
    copy[50_001] = '50000,zéro,oops';
    writeFileSync(bad, `${copy.join('\n')}\n`);
    expect(() => loadCsv(bad, { labels: ['zéro', 'ünf', 'ça-va-très-bien-merci'] })).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('big-bad.csv:50002:') }));
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

describe('CSV labels mean the same class on every node (issue 12, item 6)', () => {
  // two nodes' files: node A has cat and dog, node B dog and eel. Mapped per file (sorted
  // distinct values, as before), dog was class 1 on A and class 0 on B.
  const a = join(folder('labels'), 'node-a.csv');
  const b = join(folder('labels'), 'node-b.csv');
  writeFileSync(a, 'x,label\n1,cat\n2,dog\n');
  writeFileSync(b, 'x,label\n1,dog\n2,eel\n');

  it('refuses a label that is not a class number, naming file, line, column and value', () => {
    expect(() => loadCsv(a)).toThrow(expect.objectContaining({
      code: 'ML_BAD_DATA', message: expect.stringMatching(/node-a\.csv:2: column 'label': label 'cat' is not a class number .*--labels/),
    }));
    for (const [value, line] of [['-1', 3], ['1.5', 3], ['1e12', 3], ['NA', 3]] as const) {
      const p = join(dir, 'labels', 'ints.csv');
      writeFileSync(p, `x,label\n1,0\n2,${value}\n3,1\n`);
      expect(() => loadCsv(p)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining(`ints.csv:${line}: column 'label': label '${value}'`) }));
    }
  });

  it('with the shared list, a class has the same number in every file, and numClasses is the list length', () => {
    const labels = ['cat', 'dog', 'eel'];
    const da = loadCsv(a, { labels });
    const db = loadDataset(b, { labels });
    expect(Array.from(da.y)).toEqual([0, 1]);
    expect(Array.from(db.y)).toEqual([1, 2]);
    expect([da.numClasses, db.numClasses]).toEqual([3, 3]);
  });

  it('refuses a value that is not in the list, naming the line and the value', () => {
    expect(() => loadCsv(b, { labels: ['cat', 'dog'] })).toThrow(expect.objectContaining({
      code: 'ML_BAD_DATA', message: expect.stringContaining("node-b.csv:3: column 'label': label 'eel' is not one of the labels [cat,dog]"),
    }));
    // integer-looking values must be in the list too
    const p = join(dir, 'labels', 'mixed.csv');
    writeFileSync(p, 'x,label\n1,cat\n2,0\n');
    expect(() => loadCsv(p, { labels: ['cat'] })).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining("mixed.csv:3: column 'label': label '0'") }));
  });

  it('refuses an empty list, an empty or repeated name (ML_BAD_OPTIONS), and class names for IDX data', () => {
    expect(() => loadCsv(a, { labels: [] })).toThrow(expect.objectContaining({ code: 'ML_BAD_OPTIONS' }));
    expect(() => loadCsv(a, { labels: ['cat', ''] })).toThrow(expect.objectContaining({ code: 'ML_BAD_OPTIONS', message: expect.stringContaining('class 1 has an empty name') }));
    expect(() => loadCsv(a, { labels: ['cat', 'dog', 'cat'] })).toThrow(expect.objectContaining({ code: 'ML_BAD_OPTIONS', message: expect.stringContaining("'cat' is given twice") }));
    expect(() => loadDataset(join(dir, 'idx'), { labels: ['cat'] })).toThrow(expect.objectContaining({ code: 'ML_BAD_OPTIONS', message: expect.stringContaining('IDX labels are class numbers') }));
  });

  it('keeps integer labels as they are (numClasses = max + 1)', () => {
    const p = join(dir, 'labels', 'int.csv');
    writeFileSync(p, 'x,label\n1,4\n2,0\n3," 2 "\n');
    const ds = loadCsv(p);
    expect(Array.from(ds.y)).toEqual([4, 0, 2]);
    expect(ds.numClasses).toBe(5);
  });
});

describe('a missing value on the first data row (issue 12, item 7)', () => {
  it.each([
    ['NA', "first-na.csv:2: column 'temp' is not a number: 'NA'"],
    ['', "first-na.csv:2: column 'temp' is not a number: ''"],
    ['n/a', "first-na.csv:2: column 'temp' is not a number: 'n/a'"],
  ])('a feature column with %j on the first row is an error naming line 2 and the column, not a dropped column', (cell, message) => {
    const p = join(dir, 'first-na.csv');
    writeFileSync(p, `hum,temp,label\n0.5,${cell},0\n0.6,21.5,1\n`);
    expect(() => loadCsv(p)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining(message) }));
  });

  it('the same cell on a later row gives the same error, with that line', () => {
    const p = join(dir, 'later-na.csv');
    writeFileSync(p, 'hum,temp,label\n0.5,21,0\n0.6,NA,1\n');
    expect(() => loadCsv(p)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining("later-na.csv:3: column 'temp' is not a number: 'NA'") }));
  });

  it('a text column is still ignored, even when its first value is missing; a column with no value at all is an error', () => {
    const p = join(dir, 'text-col.csv');
    writeFileSync(p, 'id,temp,label\nNA,20,0\nmote-2,21,1\n');
    const ds = loadCsv(p);
    expect(ds.featureShape).toEqual([1]);
    expect(Array.from(ds.x)).toEqual([20, 21]);
    const empty = join(dir, 'empty-col.csv');
    writeFileSync(empty, 'temp,notes,label\n20,,0\n21,NA,1\n');
    expect(() => loadCsv(empty)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining("empty-col.csv: column 'notes' has no value in any of its 2 rows") }));
  });
});

describe('IDX folders and gzip-compressed IDX files (issue 12, item 8)', () => {
  const gz = folder('gz');
  const plain = folder('plain');
  const imgs = idx(0x803, [3, 2, 2], [0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0]);
  const labs = idx(0x801, [3], [2, 0, 1]);
  writeFileSync(join(plain, 'train-images-idx3-ubyte'), imgs);
  writeFileSync(join(plain, 'train-labels-idx1-ubyte'), labs);
  writeFileSync(join(gz, 'train-images-idx3-ubyte.gz'), gzipSync(imgs));
  writeFileSync(join(gz, 'train-labels-idx1-ubyte.gz'), gzipSync(labs));

  it('reads .gz IDX files as their plain contents, as float32 or as bytes', async () => {
    expect(await loadDatasetAsync(gz)).toEqual(loadDataset(plain));
    expect(await loadDatasetAsync(gz, { keepBytes: true })).toEqual(loadDataset(plain, { keepBytes: true }));
    expect(await loadDatasetAsync(join(gz, 'train-images-idx3-ubyte.gz'))).toEqual(loadDataset(plain));
    // plain files through the async loader: the same as the sync one
    expect(await loadDatasetAsync(plain, { keepBytes: true })).toEqual(loadDataset(plain, { keepBytes: true }));
  });

  it('reads the real MNIST test set gzip-compressed, as the MNIST distribution ships it', async () => {
    const mnist = folder('mnist-gz');
    for (const f of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(mnist, `${f}.gz`), gzipSync(readFileSync(join(mnistDataDir(), f))));
    const ds = await loadDatasetAsync(mnist);
    const want = loadMnist('test');
    expect(ds.numExamples).toBe(10000);
    expect(ds.featureShape).toEqual([784]);
    expect(ds.numClasses).toBe(10);
    // compared as bytes: a deep equality of 7.8M floats takes minutes
    expect(Buffer.compare(Buffer.from(ds.y.buffer), Buffer.from(want.y.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(ds.x.buffer, ds.x.byteOffset, ds.x.byteLength), Buffer.from(want.x.buffer, want.x.byteOffset, want.x.byteLength))).toBe(0);
  });

  it('the sync loaders refuse a .gz file with a message naming it and the async loader', () => {
    expect(() => loadDataset(gz)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('train-images-idx3-ubyte.gz: gzip-compressed IDX: read it with loadIdxAsync') }));
  });

  it('refuses a corrupt or truncated .gz file, and one whose header disagrees with its size', async () => {
    const broken = folder('gz-broken');
    const whole = gzipSync(imgs);
    writeFileSync(join(broken, 'cut-images.gz'), whole.subarray(0, whole.length - 6));
    writeFileSync(join(broken, 'cut-labels.gz'), gzipSync(labs));
    await expect(loadIdxAsync(join(broken, 'cut-images.gz'), join(broken, 'cut-labels.gz'))).rejects.toMatchObject({ code: 'ML_BAD_DATA', message: expect.stringContaining('cut-images.gz') });
    const liar = Buffer.from(imgs);
    liar.writeUInt32BE(4, 4); // 4 examples in the header, 3 in the file
    writeFileSync(join(broken, 'liar-images.gz'), gzipSync(liar));
    await expect(loadIdxAsync(join(broken, 'liar-images.gz'), join(broken, 'cut-labels.gz'))).rejects.toMatchObject({ code: 'ML_BAD_DATA', message: expect.stringContaining('liar-images.gz: IDX header says 32 bytes, the gzip trailer 28') });
    writeFileSync(join(broken, 'junk-images.gz'), Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(30, 7)]));
    await expect(loadIdxAsync(join(broken, 'junk-images.gz'), join(broken, 'cut-labels.gz'))).rejects.toMatchObject({ code: 'ML_BAD_DATA', message: expect.stringContaining('junk-images.gz') });
  });

  it('a folder holding train-* and t10k-* is refused, listing the files; the file given explicitly loads', async () => {
    const both = folder('both');
    for (const p of ['train', 't10k']) {
      writeFileSync(join(both, `${p}-images-idx3-ubyte.gz`), gzipSync(imgs));
      writeFileSync(join(both, `${p}-labels-idx1-ubyte.gz`), gzipSync(p === 'train' ? labs : idx(0x801, [3], [1, 1, 1])));
    }
    const refusal = expect.objectContaining({
      code: 'ML_BAD_DATA', message: expect.stringContaining('the folder holds 2 datasets (t10k-images-idx3-ubyte.gz, train-images-idx3-ubyte.gz); give the file to load'),
    });
    await expect(loadDatasetAsync(both)).rejects.toEqual(refusal);
    expect(() => loadDataset(both)).toThrow(refusal);
    expect(Array.from((await loadDatasetAsync(join(both, 't10k-images-idx3-ubyte.gz'))).y)).toEqual([1, 1, 1]);
    expect(Array.from((await loadDatasetAsync(join(both, 'train-images-idx3-ubyte.gz'))).y)).toEqual([2, 0, 1]);
  });

  it('a folder with IDX files and a CSV is refused too; an images file without its labels names the missing file', () => {
    const mixed = folder('mixed');
    copyFileSync(join(plain, 'train-images-idx3-ubyte'), join(mixed, 'train-images-idx3-ubyte'));
    copyFileSync(join(plain, 'train-labels-idx1-ubyte'), join(mixed, 'train-labels-idx1-ubyte'));
    writeFileSync(join(mixed, 'data.csv'), 'x,label\n1,0\n');
    expect(() => loadDataset(mixed)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('2 datasets (train-images-idx3-ubyte, data.csv)') }));
    const lonely = folder('lonely');
    copyFileSync(join(plain, 'train-images-idx3-ubyte'), join(lonely, 'train-images-idx3-ubyte'));
    expect(() => loadDataset(lonely)).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('no labels file train-labels-idx1-ubyte next to it') }));
    expect(() => loadDataset(folder('nothing'))).toThrow(expect.objectContaining({ code: 'ML_BAD_DATA', message: expect.stringContaining('no dataset in this folder') }));
  });
});
