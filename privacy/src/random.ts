import { randomFillSync } from 'node:crypto';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/**
 * Randomness for differential privacy (docs/privacy.md, "Noise"). Every sampler in @fedmq/privacy
 * draws its bits from a {@link RandomSource}; the only production source is {@link CryptoRandom},
 * which reads node:crypto's CSPRNG (`randomFillSync`, the operating system's generator seeded
 * by the kernel) in 64 KiB blocks. Nothing here uses Math.random, tf.random or the seeded
 * mulberry32 of `@fedmq/protocol` (`createRng`), which is for reproducible node selection only.
 *
 * The production API takes no seed: {@link CryptoRandom}'s constructor has no seed parameter
 * and {@link cryptoRandom} returns a process-wide instance. A seeded, reproducible stream (ChaCha20
 * keyed by a 32-byte seed) exists for statistical tests only, in privacy/src/testing.ts (not exported from the package)
 * (privacy/src/testing.ts); no production path imports it (a test checks that).
 */

/** 2^32 and 2^53 as numbers (exact). */
const TWO_32 = 0x1_0000_0000;
const TWO_53 = 2 ** 53;
const TWO_MINUS_53 = 2 ** -53;

/**
 * A source of uniformly random bits. Implementations must return independent, uniformly
 * distributed values; all derived methods (doubles, bounded integers) are exact transformations
 * of `nextUint32()` words (rejection sampling, no modulo bias, no floating-point rounding).
 */
export interface RandomSource {
  /** A uniform integer in [0, 2^32). */
  nextUint32(): number;
  /** A uniform integer in [0, 2^53) (53 random bits: 32 from one word and 21 from the next). */
  nextUint53(): number;
  /**
   * A uniform double in the open interval (0, 1): `m · 2^-53` with m uniform in [1, 2^53), i.e.
   * 53 random bits with the single value 0 rejected. Every result is exactly representable, so
   * no rounding happens; the smallest value is 2^-53 and the largest 1 − 2^-53.
   */
  nextDouble(): number;
  /** A uniform integer in [0, 2^k), for an integer 0 ≤ k ≤ 53. @throws FedmqError FEDMQ_BAD_CONFIG on another k */
  nextBits(k: number): number;
  /**
   * A uniform integer in [0, n) for an integer 1 ≤ n ≤ 2^53, by rejection: draws
   * ⌈log2 n⌉ bits and retries when the value is ≥ n (expected < 2 draws; no modulo bias).
   * @throws FedmqError FEDMQ_BAD_CONFIG when n is not an integer in [1, 2^53]
   */
  nextInt(n: number): number;
  /**
   * A uniform BigInt in [0, n) for any n ≥ 1n, by rejection on ⌈log2 n⌉ random bits (expected
   * < 2 draws). Used by the exact discrete Gaussian sampler.
   * @throws FedmqError FEDMQ_BAD_CONFIG when n < 1n
   */
  nextBigInt(n: bigint): bigint;
  /** Fills `out` with uniform random bytes and returns it. */
  fillBytes(out: Uint8Array): Uint8Array;
}

/** Number of bits needed to write n − 1 (n ≥ 1), i.e. the k with 2^(k−1) < n ≤ 2^k. */
function bitsFor(n: number): number {
  let k = 0;
  while (2 ** k < n) k++;
  return k;
}

/**
 * A {@link RandomSource} over a byte buffer refilled in blocks by {@link refill}. Words are read
 * little-endian, so a deterministic refill gives the same values on every platform.
 */
export abstract class BufferedRandomSource implements RandomSource {
  private readonly buf: Uint8Array;
  private pos: number;

  /** @param blockBytes size of the buffer refilled at once (a positive multiple of 4; default 64 KiB) */
  protected constructor(blockBytes = 65536) {
    if (!Number.isInteger(blockBytes) || blockBytes < 4 || blockBytes % 4 !== 0) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `random block size must be a positive multiple of 4 bytes, got ${blockBytes}`, { blockBytes });
    }
    this.buf = new Uint8Array(blockBytes);
    this.pos = blockBytes; // empty: the first read refills
  }

  /** Overwrites all of `buf` with fresh uniform random bytes. */
  protected abstract refill(buf: Uint8Array): void;

  nextUint32(): number {
    if (this.pos + 4 > this.buf.length) {
      this.refill(this.buf);
      this.pos = 0;
    }
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 4;
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  nextUint53(): number {
    const hi = this.nextUint32() >>> 11; // 21 bits
    return hi * TWO_32 + this.nextUint32(); // < 2^53, exact
  }

  nextDouble(): number {
    for (;;) {
      const m = this.nextUint53();
      if (m !== 0) return m * TWO_MINUS_53; // exact: m < 2^53 scaled by a power of two
    }
  }

  nextBits(k: number): number {
    if (!Number.isInteger(k) || k < 0 || k > 53) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `nextBits: k must be an integer in [0, 53], got ${k}`, { k });
    }
    if (k === 0) return 0;
    if (k <= 32) return k === 32 ? this.nextUint32() : this.nextUint32() >>> (32 - k);
    const hi = this.nextUint32() >>> (64 - k); // k − 32 bits
    return hi * TWO_32 + this.nextUint32();
  }

  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_53) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `nextInt: n must be an integer in [1, 2^53], got ${n}`, { n });
    }
    if (n === 1) return 0;
    const k = bitsFor(n);
    for (;;) {
      const v = this.nextBits(k);
      if (v < n) return v;
    }
  }

  nextBigInt(n: bigint): bigint {
    if (n < 1n) throw new FedmqError(ErrorCodes.BAD_CONFIG, `nextBigInt: n must be ≥ 1, got ${n}`, { n: String(n) });
    if (n <= 9007199254740992n) return BigInt(this.nextInt(Number(n))); // n ≤ 2^53: Number(n) is exact
    const k = (n - 1n).toString(2).length; // 2^(k−1) ≤ n − 1 < 2^k
    const words = Math.ceil(k / 32);
    const topBits = k - 32 * (words - 1); // 1..32 bits in the most significant word
    for (;;) {
      let v = BigInt(topBits === 32 ? this.nextUint32() : this.nextUint32() >>> (32 - topBits));
      for (let i = 1; i < words; i++) v = (v << 32n) | BigInt(this.nextUint32());
      if (v < n) return v;
    }
  }

  fillBytes(out: Uint8Array): Uint8Array {
    for (let i = 0; i < out.length; ) {
      if (this.pos >= this.buf.length) {
        this.refill(this.buf);
        this.pos = 0;
      }
      const take = Math.min(out.length - i, this.buf.length - this.pos);
      out.set(this.buf.subarray(this.pos, this.pos + take), i);
      this.pos += take;
      i += take;
    }
    return out;
  }
}

/**
 * The production randomness: node:crypto's CSPRNG (`randomFillSync`), read in blocks of 64 KiB
 * so that per-parameter noise costs an array read, not a system call. Takes no seed: its
 * output cannot be reproduced, by design. Bytes drawn into the buffer are used once and
 * overwritten by the next refill.
 */
export class CryptoRandom extends BufferedRandomSource {
  constructor() {
    super(65536);
  }

  protected refill(buf: Uint8Array): void {
    randomFillSync(buf);
  }
}

let shared: CryptoRandom | undefined;

/** The process-wide {@link CryptoRandom} (created on first use); the default source of every sampler. */
export function cryptoRandom(): RandomSource {
  shared ??= new CryptoRandom();
  return shared;
}
