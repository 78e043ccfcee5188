/**
 * Data files through the real `fedmq` bin (issue 12, items 6–11): a bad file ends the command
 * with its code on stderr before anything connects (the broker URL given points at a closed
 * port: getting past the data would end in a connection error instead).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { mnistDataDir } from '@fedmq/ml';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fedmq-cli-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const CLOSED = 'mqtt://127.0.0.1:1';

/** Runs the bin; resolves with its exit code, stdout and stderr whether it failed or not. */
async function fedmq(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function file(name: string, text: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

let outs = 0;
const coordinator = (...args: string[]) => fedmq(['coordinator', '--broker', CLOSED, '--job', 'data-e2e', '--out', join(dir, `run-${++outs}`), ...args]);

describe('fedmq with bad data files', () => {
  it('fedmq node: a string label ends the node with ML_BAD_DATA naming file, line, column and value', async () => {
    const csv = file('node-strings.csv', 'temp,label\n20.5,cold\n30.1,hot\n');
    const r = await fedmq(['node', '--broker', CLOSED, '--job', 'data-e2e', '--id', 'pi-1', '--data', csv]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`fedmq: ML_BAD_DATA: ${csv}:2: column 'label': label 'cold' is not a class number`);
  });

  it('fedmq node: --labels maps the names; a name not in the list is ML_BAD_DATA naming the line and value', async () => {
    const csv = file('node-other.csv', 'temp,label\n20.5,cold\n30.1,warm\n');
    const r = await fedmq(['node', '--broker', CLOSED, '--job', 'data-e2e', '--id', 'pi-1', '--data', csv, '--labels', 'cold,hot']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`fedmq: ML_BAD_DATA: ${csv}:3: column 'label': label 'warm' is not one of the labels [cold,hot]`);
  });

  it('fedmq node: NA on the first data row is ML_BAD_DATA naming line 2 and the column', async () => {
    const csv = file('node-na.csv', 'hum,temp,label\n0.5,NA,0\n0.6,21.5,1\n');
    const r = await fedmq(['node', '--broker', CLOSED, '--job', 'data-e2e', '--id', 'pi-1', '--data', csv]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`fedmq: ML_BAD_DATA: ${csv}:2: column 'temp' is not a number: 'NA'`);
  });

  it('fedmq coordinator: --test-data that does not fit the model is refused before any node is waited for, naming the file and both shapes', async () => {
    const csv = file('test-5.csv', 'a,b,c,d,e,label\n1,2,3,4,5,0\n1,2,3,4,5,2\n');
    const r = await coordinator('--model', 'mlp-4x3', '--test-data', csv);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`fedmq: ML_BAD_DATA: ${csv}: 2 examples of 5 features, 3 classes (labels 0..2); model mlp-4x3 takes 4 features and 3 classes`);
    const classes = file('test-classes.csv', 'a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,3\n');
    const c = await coordinator('--model', 'mlp-4x3', '--test-data', classes);
    expect(c.stderr).toContain(`fedmq: ML_BAD_DATA: ${classes}: 2 examples of 4 features, 4 classes (labels 0..3); model mlp-4x3 takes 4 features and 3 classes`);
    const orphan = await coordinator('--model', 'mlp-4x3', '--labels', 'a,b,c');
    expect(orphan.stderr).toContain('--labels names the classes of a --test-data CSV: give --test-data too');
  });

  it('fedmq coordinator: a folder with train-* and t10k-* is refused as --test-data, listing the files', async () => {
    const both = join(dir, 'mnist-both');
    mkdirSync(both);
    for (const f of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(both, f), '');
    const r = await coordinator('--test-data', both);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`fedmq: ML_BAD_DATA: ${both}: the folder holds 2 datasets (t10k-images-idx3-ubyte, train-images-idx3-ubyte); give the file to load`);
  });

  it('fedmq coordinator: gzip-compressed MNIST test files load, and the test set is logged (file, examples, features, classes)', async () => {
    const gz = join(dir, 'mnist-gz');
    mkdirSync(gz);
    for (const f of ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) writeFileSync(join(gz, `${f}.gz`), gzipSync(readFileSync(join(mnistDataDir(), f))));
    const r = await coordinator('--test-data', gz, '--log-level', 'info');
    // past the data, the closed port ends it
    expect(r.code).toBe(1);
    const logged = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => typeof l.msg === 'string' && l.msg.startsWith('test set:'));
    expect(logged).toMatchObject({ file: gz, numExamples: 10000, features: 784, classes: 10 });
    expect(r.stderr).toMatch(/ECONNREFUSED/);
  });

  it('fedmq coordinator --help lists mlp-<features>x<classes> among the models', async () => {
    const { stdout } = await run(process.execPath, [bin, 'coordinator', '--help']);
    expect(stdout.replace(/\s+/g, ' ')).toMatch(/model to train \(mnist-2nn, telosb-ae, mlp-<features>x<classes>\)/);
  });
});
