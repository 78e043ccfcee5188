import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chacha20 } from '@noble/ciphers/chacha.js';
import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { CryptoRandom, cryptoRandom, type RandomSource } from './random.ts';
import { SeededTestRandom, seededTestRandom } from './testing.ts';
import { chiSquare } from './stats.testutil.ts';

// Statistical bounds: means within 5 standard errors (two-sided false-alarm rate 5.7e-7 per
// check), chi-square p-values above 1e-6. The seeded streams make each check deterministic; the
// bounds say how unlikely a failure would be with another seed if the code is right.

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

describe('SeededTestRandom (tests only)', () => {
  it('is the RFC 8439 ChaCha20 keystream under key = seed, zero nonce, counter 0, 1, 2, … across buffer refills', () => {
    const seed = new Uint8Array(32).map((_, i) => i * 7 + 1);
    const rng = new SeededTestRandom(seed);
    // 64 KiB buffer = 1024 blocks: read past two refills and compare with noble's keystream.
    const got = rng.fillBytes(new Uint8Array(3 * 65536 + 100));
    const want = chacha20(seed, new Uint8Array(12), new Uint8Array(3 * 65536 + 100));
    expect(Buffer.from(got).equals(Buffer.from(want))).toBe(true);
  });

  it('reads 32-bit words little-endian from that keystream', () => {
    const seed = 'words';
    const bytes = new SeededTestRandom(seed).fillBytes(new Uint8Array(16));
    const rng = seededTestRandom(seed);
    for (let i = 0; i < 4; i++) {
      const w = (bytes[4 * i] | (bytes[4 * i + 1] << 8) | (bytes[4 * i + 2] << 16) | (bytes[4 * i + 3] << 24)) >>> 0;
      expect(rng.nextUint32()).toBe(w);
    }
  });

  it('same seed → same stream; another seed → another stream', () => {
    const a = seededTestRandom('a');
    const a2 = seededTestRandom('a');
    const b = seededTestRandom('b');
    const xs = Array.from({ length: 8 }, () => a.nextUint32());
    expect(Array.from({ length: 8 }, () => a2.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => b.nextUint32())).not.toEqual(xs);
  });

  it('refuses a seed that is not 32 bytes (or a string over 32 bytes)', () => {
    expect(code(() => new SeededTestRandom(new Uint8Array(16)))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => new SeededTestRandom('x'.repeat(33)))).toBe(ErrorCodes.BAD_CONFIG);
  });
});

describe('RandomSource derived draws (seeded stream)', () => {
  const N = 120_000;

  it('nextDouble is in (0, 1), a multiple of 2^-53, uniform (mean), and uses all 53 bits', () => {
    const rng = seededTestRandom('double');
    let sum = 0;
    let lowBit = 0;
    let highBit = 0;
    let bad = 0;
    for (let i = 0; i < N; i++) {
      const u = rng.nextDouble();
      const m = u * 2 ** 53;
      if (!(u > 0 && u < 1) || !Number.isInteger(m)) bad++;
      sum += u;
      lowBit += m % 2;
      highBit += u >= 0.5 ? 1 : 0;
    }
    expect(bad).toBe(0);
    // Uniform(0,1): mean 1/2, sd √(1/12); each bit is Bernoulli(1/2), sd 1/2.
    expect(Math.abs(sum / N - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / N));
    expect(Math.abs(lowBit / N - 0.5)).toBeLessThan(5 * 0.5 / Math.sqrt(N));
    expect(Math.abs(highBit / N - 0.5)).toBeLessThan(5 * 0.5 / Math.sqrt(N));
  });

  it.each([3, 6, 10, 1000, 2 ** 32 + 3, 2 ** 53])('nextInt(%d) is uniform on [0, n) (chi-square on 10 equal-width bins or all values)', (n) => {
    const rng = seededTestRandom(`int ${n}`);
    const bins = Math.min(n, 10);
    const counts = new Array(bins).fill(0);
    const probs: number[] = [];
    // Bin b holds the integers v with ⌊v·bins/n⌋ = b; their exact count gives the probability.
    for (let b = 0; b < bins; b++) probs.push((Math.ceil(((b + 1) * n) / bins) - Math.ceil((b * n) / bins)) / n);
    let outside = 0;
    for (let i = 0; i < N; i++) {
      const v = rng.nextInt(n);
      if (!(Number.isInteger(v) && v >= 0 && v < n)) outside++;
      counts[Math.floor((v * bins) / n)]++;
    }
    expect(outside).toBe(0);
    expect(chiSquare(counts, probs).p).toBeGreaterThan(1e-6);
  });

  it.each([7n, 3n * 2n ** 64n, 10n ** 40n + 1n])('nextBigInt(%s) is uniform on [0, n) (chi-square on 3 bins)', (n) => {
    const rng = seededTestRandom(`bigint ${n.toString().length}`);
    const counts = [0, 0, 0];
    const edges = [0n, n / 3n, (2n * n) / 3n, n];
    let outside = 0;
    for (let i = 0; i < 30_000; i++) {
      const v = rng.nextBigInt(n);
      if (v < 0n || v >= n) outside++;
      counts[v < edges[1] ? 0 : v < edges[2] ? 1 : 2]++;
    }
    expect(outside).toBe(0);
    const probs = [0, 1, 2].map((b) => Number(edges[b + 1] - edges[b]) / Number(n));
    expect(chiSquare(counts, probs).p).toBeGreaterThan(1e-6);
  });

  it('nextBigInt(1n) is always 0 and nextBigInt(2n) a fair bit', () => {
    const rng = seededTestRandom('bigint small');
    let ones = 0;
    for (let i = 0; i < 10_000; i++) {
      expect(rng.nextBigInt(1n)).toBe(0n);
      ones += Number(rng.nextBigInt(2n));
    }
    expect(Math.abs(ones / 10_000 - 0.5)).toBeLessThan(5 * 0.5 / Math.sqrt(10_000));
  });

  it('nextBits(k) is in [0, 2^k) and its top bit is fair, for k = 1, 21, 32, 33, 53', () => {
    for (const k of [1, 21, 32, 33, 53]) {
      const rng = seededTestRandom(`bits ${k}`);
      let top = 0;
      let outside = 0;
      for (let i = 0; i < 20_000; i++) {
        const v = rng.nextBits(k);
        if (!(Number.isInteger(v) && v >= 0 && v < 2 ** k)) outside++;
        top += v >= 2 ** (k - 1) ? 1 : 0;
      }
      expect(outside).toBe(0);
      expect(Math.abs(top / 20_000 - 0.5)).toBeLessThan(5 * 0.5 / Math.sqrt(20_000));
    }
    expect(seededTestRandom('b0').nextBits(0)).toBe(0);
  });

  it('refuses bad arguments with FEDMQ_BAD_CONFIG', () => {
    const rng = seededTestRandom('bad');
    for (const n of [0, -1, 1.5, 2 ** 53 + 2, NaN]) expect(code(() => rng.nextInt(n))).toBe(ErrorCodes.BAD_CONFIG);
    for (const k of [-1, 54, 2.5]) expect(code(() => rng.nextBits(k))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rng.nextBigInt(0n))).toBe(ErrorCodes.BAD_CONFIG);
  });
});

describe('CryptoRandom (production)', () => {
  it('takes no seed, and two instances (and the shared one) give different streams', () => {
    expect(CryptoRandom.length).toBe(0);
    const a: RandomSource = new CryptoRandom();
    const b: RandomSource = new CryptoRandom();
    const xs = Array.from({ length: 4 }, () => a.nextUint32());
    expect(Array.from({ length: 4 }, () => b.nextUint32())).not.toEqual(xs); // equal with probability 2^-128
    expect(cryptoRandom()).toBe(cryptoRandom());
  });

  it('keeps its guarantees across 64 KiB refills (ranges only: its output is not reproducible)', () => {
    const rng = new CryptoRandom();
    for (let i = 0; i < 3 * 16384 + 5; i++) {
      const u = rng.nextDouble();
      if (!(u > 0 && u < 1)) throw new Error(`nextDouble out of range: ${u}`);
    }
    const v = rng.nextInt(7);
    expect(v >= 0 && v < 7).toBe(true);
  });
});

describe('no production path of @fedmq/privacy uses weak or seeded randomness', () => {
  it('no non-test module calls Math.random, tf.random or protocol createRng, or imports the seeded test stream', () => {
    const dir = dirname(fileURLToPath(import.meta.url));
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.testutil.ts') && f !== 'testing.ts');
    expect(files).toContain('noise.ts');
    for (const f of files) {
      const src = readFileSync(join(dir, f), 'utf8');
      expect(src, f).not.toMatch(/Math\.random\s*\(/);
      expect(src, f).not.toMatch(/\btf\.random\w*\s*\(|\brandom(Normal|Uniform)\s*\(/);
      expect(src, f).not.toMatch(/\bcreateRng\s*\(/);
      expect(src, f).not.toMatch(/from\s+['"][^'"]*testing(\.ts)?['"]/);
    }
  });
});
