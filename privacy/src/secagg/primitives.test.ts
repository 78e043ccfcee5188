import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { x25519 } from '@noble/curves/ed25519.js';
import { ErrorCodes } from '@fedmq/protocol';
import { SHARE_BYTES, addPrg, combineShares, deriveKey, generateKeyPair, joinParts, open, prgWords, publicKeyOf, seal, shareAad, splitSecret, x25519Agree } from '../index.ts';

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ctx = { job: 'mnist', runId: 'r1', round: 3 };

describe('X25519 (RFC 7748 §6.1 known answer)', () => {
  const aSk = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
  const aPk = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
  const bSk = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
  const bPk = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

  it('public keys and the shared secret match the RFC, on both backends', () => {
    expect(toHex(publicKeyOf(aSk))).toBe(toHex(aPk));
    expect(toHex(publicKeyOf(bSk))).toBe(toHex(bPk));
    expect(toHex(x25519Agree(aSk, bPk))).toBe(shared);
    expect(toHex(x25519Agree(bSk, aPk, 'noble'))).toBe(shared);
  });

  it('node:crypto and @noble/curves agree on fresh keys', () => {
    for (let i = 0; i < 20; i++) {
      const a = generateKeyPair();
      const b = generateKeyPair();
      expect(toHex(x25519Agree(a.secretKey, b.publicKey))).toBe(toHex(x25519.getSharedSecret(a.secretKey, b.publicKey)));
      expect(toHex(x25519Agree(b.secretKey, a.publicKey, 'noble'))).toBe(toHex(x25519Agree(a.secretKey, b.publicKey)));
    }
  });

  it('refuses low-order public keys and wrong lengths with FEDMQ_SECAGG_AUTH', () => {
    const a = generateKeyPair();
    for (const backend of ['auto', 'noble'] as const) {
      expect(() => x25519Agree(a.secretKey, new Uint8Array(32), backend)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_AUTH }));
      expect(() => x25519Agree(a.secretKey, hex('0100000000000000000000000000000000000000000000000000000000000000'), backend)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_AUTH }));
    }
    expect(() => x25519Agree(a.secretKey, new Uint8Array(31))).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_AUTH }));
  });
});

describe('key derivation (docs/protocol.md §12.2)', () => {
  it('is HKDF-SHA256 over the X25519 secret with the documented salt and info (checked with node:crypto hkdfSync)', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const ikm = x25519.getSharedSecret(a.secretKey, b.publicKey);
    for (const purpose of ['mask', 'enc'] as const) {
      const info = Buffer.from(`${purpose}\0mnist\0r1\x003\0alpha\0beta`);
      const want = new Uint8Array(hkdfSync('sha256', ikm, Buffer.from('fedmq/secagg/v1'), info, 32));
      expect(toHex(deriveKey(purpose, ctx, 'alpha', 'beta', a.secretKey, b.publicKey))).toBe(toHex(want));
      // symmetric: both ends, either order of ids
      expect(toHex(deriveKey(purpose, ctx, 'beta', 'alpha', b.secretKey, a.publicKey))).toBe(toHex(want));
    }
  });

  it('a known answer from fixed keys (the RFC 7748 pair): a port must reproduce it', () => {
    const aSk = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bPk = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = hex('4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742');
    const got = deriveKey('mask', { job: 'job', runId: 'run', round: 1 }, 'node-b', 'node-a', aSk, bPk);
    const want = new Uint8Array(hkdfSync('sha256', shared, Buffer.from('fedmq/secagg/v1'), Buffer.from('mask\0job\0run\x001\0node-a\0node-b'), 32));
    expect(toHex(got)).toBe(toHex(want));
    // the value for docs/protocol.md §12.2's test vector (computed by node:crypto's HKDF, not by the code under test)
    expect(toHex(got)).toBe('81eab5f8d13a0366100bc50702564225930 82b7987ad2383199b3cd3a63a69fd'.replace(' ', ''));
  });

  it('every context field changes the key', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const base = toHex(deriveKey('mask', ctx, 'x', 'y', a.secretKey, b.publicKey));
    const others = [
      deriveKey('enc', ctx, 'x', 'y', a.secretKey, b.publicKey), deriveKey('mask', { ...ctx, job: 'other' }, 'x', 'y', a.secretKey, b.publicKey),
      deriveKey('mask', { ...ctx, runId: 'r2' }, 'x', 'y', a.secretKey, b.publicKey), deriveKey('mask', { ...ctx, round: 4 }, 'x', 'y', a.secretKey, b.publicKey),
      deriveKey('mask', ctx, 'x', 'z', a.secretKey, b.publicKey),
    ].map(toHex);
    expect(new Set([base, ...others]).size).toBe(6);
  });
});

describe('mask PRG: ChaCha20 keystream (RFC 8439)', () => {
  it('the zero key gives RFC 8439 Appendix A.1 test vector #1 (block 0) and #2 (block 1)', () => {
    const w = prgWords(new Uint8Array(32), 32, 32);
    const bytes = new Uint8Array(w.buffer, w.byteOffset, 128);
    expect(toHex(bytes.subarray(0, 64))).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
    expect(toHex(bytes.subarray(64, 128))).toBe(
      '9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f',
    );
  });

  it('node:crypto and @noble/ciphers give the same words; bits keep the low bits', () => {
    const seed = new Uint8Array(32).map((_, i) => i * 7 + 1);
    const a = prgWords(seed, 100_003, 32);
    const b = prgWords(seed, 100_003, 32, 'noble');
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    const c = prgWords(seed, 1000, 20);
    for (let i = 0; i < 1000; i++) expect(c[i]).toBe(a[i] & 0xfffff);
  });

  it('addPrg adds and subtracts exactly the PRG words mod 2^b, across its 64 KiB blocks', () => {
    const seed = new Uint8Array(32).fill(9);
    for (const bits of [32, 26, 17]) {
      const x = Uint32Array.from({ length: 40_000 }, (_, i) => (i * 2654435761) % 2 ** bits);
      const y = x.slice();
      addPrg(y, seed, 1, bits);
      const m = prgWords(seed, x.length, bits);
      for (let i = 0; i < x.length; i += 997) expect(y[i]).toBe((x[i] + m[i]) % 2 ** bits);
      addPrg(y, seed, -1, bits);
      expect(Buffer.from(y.buffer).equals(Buffer.from(x.buffer))).toBe(true);
    }
  });
});

describe('share encryption (ChaCha20-Poly1305, docs/protocol.md §12.2)', () => {
  it('opens what it sealed, and refuses another key, sender, receiver, round or a flipped bit', () => {
    const key = new Uint8Array(32).fill(3);
    const pt = new Uint8Array(66).fill(5);
    const sealed = seal(key, pt, shareAad(ctx, 'a', 'b'));
    expect(sealed.length).toBe(12 + 66 + 16);
    expect(toHex(open(key, sealed, shareAad(ctx, 'a', 'b')))).toBe(toHex(pt));
    const refused = (k: Uint8Array, s: Uint8Array, aad: Uint8Array) => expect(() => open(k, s, aad)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_AUTH }));
    refused(new Uint8Array(32).fill(4), sealed, shareAad(ctx, 'a', 'b'));
    refused(key, sealed, shareAad(ctx, 'b', 'a'));
    refused(key, sealed, shareAad(ctx, 'a', 'c'));
    refused(key, sealed, shareAad({ ...ctx, round: 4 }, 'a', 'b'));
    refused(key, sealed, shareAad({ ...ctx, runId: 'r0' }, 'a', 'b'));
    const flipped = sealed.slice();
    flipped[20] ^= 1;
    refused(key, flipped, shareAad(ctx, 'a', 'b'));
    refused(key, sealed.subarray(0, 20), shareAad(ctx, 'a', 'b'));
    expect(toHex(shareAad(ctx, 'a', 'b'))).toBe(toHex(joinParts(['fedmq/secagg/v1', 'share-keys', 'mnist', 'r1', 3, 'a', 'b'])));
  });
});

describe('Shamir sharing (shamir-secret-sharing)', () => {
  it('any t of m shares rebuild the secret; fewer are refused', async () => {
    const secret = new Uint8Array(32).map((_, i) => 255 - i);
    const shares = await splitSecret(secret, 10, 4);
    expect(shares.every((s) => s.length === SHARE_BYTES)).toBe(true);
    expect(toHex(await combineShares(shares.slice(3, 7), 4))).toBe(toHex(secret));
    expect(toHex(await combineShares([shares[9], shares[0], shares[5], shares[2], shares[1]], 4))).toBe(toHex(secret));
    await expect(combineShares(shares.slice(0, 3), 4)).rejects.toMatchObject({ code: ErrorCodes.SECAGG_ABORT });
    await expect(combineShares([shares[0], shares[0], shares[1], shares[2]], 4)).rejects.toMatchObject({ code: ErrorCodes.SECAGG_PROTOCOL });
    await expect(splitSecret(secret, 256, 4)).rejects.toMatchObject({ code: ErrorCodes.SECAGG_RANGE });
    await expect(splitSecret(secret, 3, 4)).rejects.toMatchObject({ code: ErrorCodes.SECAGG_RANGE });
  });
});
