import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { featureSize, type Dataset } from './data.ts';

/**
 * Writes a dataset as an MNIST-style unsigned-byte IDX pair that `loadIdx`/`loadDataset` read back:
 * `dir/train-images-idx3-ubyte` (magic 0x00000803, dims [N, ...featureShape], each feature in
 * [0, 1] stored as round(255·x)) and `dir/train-labels-idx1-ubyte` (magic 0x00000801, dims [N]).
 * A flat feature shape of 784 is written as 28×28 so the files look like MNIST's.
 * @throws RangeError when a feature is outside [0, 1] or a label outside [0, 255].
 */
export function writeIdx(dir: string, ds: Dataset): { images: string; labels: string } {
  mkdirSync(dir, { recursive: true });
  const f = featureSize(ds.featureShape);
  const dims = f === 784 ? [28, 28] : ds.featureShape;
  const header = (magicType: number, shape: number[]) => {
    const h = Buffer.alloc(4 + 4 * shape.length);
    h.writeUInt32BE((0x08 << 8) | magicType, 0);
    shape.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
    return h;
  };
  const pixels = Buffer.alloc(ds.numExamples * f);
  for (let i = 0; i < pixels.length; i++) {
    const v = ds.x[i];
    if (!(v >= 0 && v <= 1)) throw new RangeError(`feature ${i % f} of example ${Math.floor(i / f)} is ${v}, outside [0, 1]`);
    pixels[i] = Math.round(v * 255);
  }
  const labels = Buffer.alloc(ds.numExamples);
  for (let i = 0; i < ds.numExamples; i++) {
    if (!(ds.y[i] >= 0 && ds.y[i] <= 255)) throw new RangeError(`label ${ds.y[i]} of example ${i} is outside [0, 255]`);
    labels[i] = ds.y[i];
  }
  const images = join(dir, 'train-images-idx3-ubyte');
  const labelsPath = join(dir, 'train-labels-idx1-ubyte');
  writeFileSync(images, Buffer.concat([header(1 + dims.length, [ds.numExamples, ...dims]), pixels]));
  writeFileSync(labelsPath, Buffer.concat([header(1, [ds.numExamples]), labels]));
  return { images, labels: labelsPath };
}

/**
 * Writes a dataset as a CSV that `loadCsv`/`loadDataset` read back: a header
 * `f0,f1,…,label`, then one row per example (features as shortest round-trip decimals of their
 * float32 values).
 */
export function writeCsv(path: string, ds: Dataset): string {
  const f = featureSize(ds.featureShape);
  const lines = [[...Array.from({ length: f }, (_, j) => `f${j}`), 'label'].join(',')];
  for (let i = 0; i < ds.numExamples; i++) {
    const row: string[] = [];
    for (let j = 0; j < f; j++) row.push(String(ds.x[i * f + j]));
    row.push(String(ds.y[i]));
    lines.push(row.join(','));
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}
