/**
 * `fedmq demo inversion` (`npm run demo:inversion`): the gradient inversion attack that secure
 * aggregation stops (docs/privacy.md, "The attack secure aggregation stops"). Prints the attack's
 * numbers without and with secure aggregation and writes original.png, reconstruction-plain.png,
 * reconstruction-masked.png and inversion.json into the run folder.
 */
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { INVERSION_DEMO, runInversionDemo, type ByteStats, type InversionDemoResult, type ReconstructionError } from '@fedmq/simulator';
import { defaultRunDir, prepareOutDir } from './out-dir.ts';

const int = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
  return n;
};

/** Fixed point between 1e-3 and 1e6, else 3 significant digits in exponent form. */
const g = (x: number, digits = 3) => (Number.isFinite(x) ? (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e6 ? x.toFixed(digits) : x.toExponential(2)) : String(x));
/** A p-value; 0 is the double's underflow (below ~1e-308), said so. */
const pv = (p: number) => (p === 0 ? '< 1e-300' : g(p));

function attackRow(what: string, e: ReconstructionError): string {
  return `${what.padEnd(34)} ${g(e.maxAbsError).padStart(13)}  ${g(e.psnr, 1).padStart(9)}  ${e.correlation.toFixed(4).padStart(11)}`;
}

function bytesRow(what: string, b: ByteStats): string {
  return `${what.padEnd(34)} ${g(b.chiSquare, 1).padStart(16)}  ${pv(b.pValue).padStart(9)}  ${b.entropyBits.toFixed(4).padStart(19)}`;
}

/** The report of a run, as printed (one line each). */
export function inversionReport(r: InversionDemoResult): string[] {
  const s = r.secagg;
  return [
    `fedmq demo: gradient inversion on mnist-2nn (784-200-200-10); MNIST training example ${r.index} (label ${r.label}); one SGD step, B=1, lr=${r.learningRate}; seed ${r.seed}`,
    '',
    `${'the coordinator reconstructs from'.padEnd(34)} ${'max abs error'.padStart(13)}  ${'PSNR (dB)'.padStart(9)}  ${'correlation'.padStart(11)}`,
    attackRow('the delta (no secure aggregation)', r.plain),
    attackRow('the quantised delta, unmasked', r.quantized),
    attackRow('the masked vector (SecAgg+)', r.masked),
    '',
    `bytes it holds for the node: ${r.parameters.toLocaleString('en-US')} words of ${s.bits} bits = ${r.masked.bytes.bytes.toLocaleString('en-US')} bytes (levels of ${s.levelBits} bits over ±${s.clip}, ${s.clipped} values clipped)`,
    `${''.padEnd(34)} ${'chi-square 255 df'.padStart(16)}  ${'p-value'.padStart(9)}  ${'entropy (bits/byte)'.padStart(19)}`,
    bytesRow('quantised, unmasked', r.quantized.bytes),
    bytesRow(`masked (SecAgg+, ${s.nodes} nodes)`, r.masked.bytes),
    `secure sum of ${s.nodes} nodes (${s.survivors} in the sum): ${s.sumCorrect ? 'equals' : 'DIFFERS FROM'} the sum of their quantised inputs mod 2^${s.bits}`,
  ];
}

/** Registers `demo inversion` on the `demo` command. */
export function registerInversionDemo(demo: Command): void {
  demo
    .command('inversion')
    .description('gradient inversion: the coordinator rebuilds a node\'s MNIST example from its update, and cannot from its SecAgg+ masked vector')
    .option('--index <i>', 'MNIST training example the node trains on', int('index'), INVERSION_DEMO.index)
    .option('--seed <n>', 'seed of the global model', int('seed'), INVERSION_DEMO.seed)
    .option('--out <dir>', 'run folder (new or empty, unless --force); default runs/inversion-<time>')
    .option('--force', 'write into a --out folder that is not empty')
    .action(async (o: { index: number; seed: number; out?: string; force?: boolean }) => {
      const out = resolve(o.out ?? defaultRunDir('inversion'));
      await prepareOutDir(out, { force: o.force });
      const r = await runInversionDemo({ index: o.index, seed: o.seed, outDir: out });
      process.stdout.write(`${inversionReport(r).join('\n')}\n`);
      const { input: _input, ...rest } = r;
      const strip = <T extends { x: Float32Array }>(v: T): Omit<T, 'x'> => {
        const { x: _x, ...k } = v;
        return k;
      };
      await writeFile(join(out, 'inversion.json'), `${JSON.stringify({ ...rest, plain: strip(r.plain), quantized: strip(r.quantized), masked: strip(r.masked) }, null, 2)}\n`);
      const f = r.files!;
      process.stdout.write(`pictures: ${f.original}, ${f.plain}, ${f.masked}\nrun written to ${out}\n`);
    });
}
