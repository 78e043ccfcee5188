import { createCipheriv } from 'node:crypto';
import { BufferedRandomSource, type RandomSource } from '@fedmq/privacy';

/**
 * FOR TESTS ONLY: a reproducible RandomSource, the ChaCha20 keystream of node:crypto under the
 * zero-padded UTF-8 seed as key and an all-zero counter and nonce. Production code uses the
 * ledger's default CSPRNG (`cryptoRandom()`): whoever knows a seed knows the noise.
 * (A copy of @fedmq/privacy's own test stream idea, which that package does not export.)
 */
class SeededStream extends BufferedRandomSource {
  private readonly cipher;
  constructor(seed: string) {
    super(65536);
    const key = Buffer.alloc(32);
    key.write(seed, 'utf8');
    this.cipher = createCipheriv('chacha20', key, Buffer.alloc(16));
  }
  protected refill(buf: Uint8Array): void {
    buf.set(this.cipher.update(Buffer.alloc(buf.length)));
  }
}

/** A seeded stream for tests (see {@link SeededStream}). */
export function seededTestRandom(seed: string): RandomSource {
  return new SeededStream(seed);
}
