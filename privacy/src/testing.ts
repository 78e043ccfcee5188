import { chacha20 } from '@noble/ciphers/chacha.js';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { BufferedRandomSource, type RandomSource } from './random.ts';

/**
 * FOR TESTS ONLY (privacy/src/testing.ts, not exported from the package: tests import it by path). A reproducible {@link RandomSource}: the RFC 8439
 * ChaCha20 keystream (from the audited `@noble/ciphers`) under a 32-byte key = the seed, an
 * all-zero 12-byte nonce and block counter 0, 1, 2, … — i.e. the bytes ChaCha20 would XOR onto
 * an all-zero plaintext. It makes statistical tests of the samplers reproducible.
 *
 * Never use it for noise that protects anyone: whoever knows the seed knows the noise, and
 * subtracting it removes all privacy. Production code draws from {@link cryptoRandom} /
 * `CryptoRandom` (node:crypto), which take no seed; no non-test module of @fedmq/privacy imports
 * this file (privacy/src/noise.test.ts checks it).
 */
export class SeededTestRandom extends BufferedRandomSource {
  private readonly key: Uint8Array;
  private readonly nonce = new Uint8Array(12);
  private readonly zeros: Uint8Array;
  private counter = 0; // next ChaCha20 block (64 bytes) to produce
  private static readonly BLOCK = 65536;

  /**
   * @param seed the ChaCha20 key: 32 bytes, or a readable string of at most 32 UTF-8 bytes
   *   (encoded and zero-padded to 32 bytes; not hashed).
   * @throws FedmqError FEDMQ_BAD_CONFIG when the seed is not 32 bytes (or a string of more than 32 bytes)
   */
  constructor(seed: Uint8Array | string) {
    super(SeededTestRandom.BLOCK);
    let key: Uint8Array;
    if (typeof seed === 'string') {
      const bytes = new TextEncoder().encode(seed);
      if (bytes.length > 32) throw new FedmqError(ErrorCodes.BAD_CONFIG, `test seed string must be at most 32 UTF-8 bytes, got ${bytes.length}`);
      key = new Uint8Array(32);
      key.set(bytes);
    } else {
      if (seed.length !== 32) throw new FedmqError(ErrorCodes.BAD_CONFIG, `test seed must be 32 bytes, got ${seed.length}`);
      key = Uint8Array.from(seed);
    }
    this.key = key;
    this.zeros = new Uint8Array(SeededTestRandom.BLOCK);
  }

  protected refill(buf: Uint8Array): void {
    const blocks = buf.length / 64;
    if (this.counter + blocks > 0xffffffff) {
      // RFC 8439's 32-bit block counter would wrap (after 256 GiB): never reuse keystream.
      throw new FedmqError(ErrorCodes.BAD_CONFIG, 'seeded test stream exhausted (2^32 ChaCha20 blocks)');
    }
    chacha20(this.key, this.nonce, this.zeros, buf, this.counter);
    this.counter += blocks;
  }
}

/** Shorthand for `new SeededTestRandom(seed)`. FOR TESTS ONLY (see {@link SeededTestRandom}). */
export function seededTestRandom(seed: Uint8Array | string): RandomSource {
  return new SeededTestRandom(seed);
}
