import { createCipheriv, createPrivateKey, createPublicKey, diffieHellman, randomBytes, type KeyObject } from 'node:crypto';
import { chacha20, chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/**
 * The cryptographic primitives of secure aggregation (docs/protocol.md §12.2, "Keys, nonces and
 * associated data"), all from audited libraries:
 *
 * - X25519 (RFC 7748) key agreement: @noble/curves. On Node.js the agreement itself runs through
 *   node:crypto (OpenSSL), about 20× faster; both give the same bytes (privacy/src/secagg/primitives.test.ts
 *   checks them against each other and against RFC 7748 §6.1).
 * - HKDF-SHA256 (RFC 5869): @noble/hashes.
 * - The mask PRG: the ChaCha20 keystream (RFC 8439 §2.4) under a full 256-bit seed: @noble/ciphers,
 *   or node:crypto's `chacha20` (same keystream; checked by the same test).
 * - ChaCha20-Poly1305 (RFC 8439 §2.8) for the shares relayed through the coordinator: @noble/ciphers.
 *
 * Randomness (secret keys, self-mask seeds, AEAD nonces) comes from node:crypto's CSPRNG.
 */

/** Protocol label mixed into every derivation: a change of it changes every key. */
export const SECAGG_LABEL = 'fedmq/secagg/v1';
/** X25519 keys and shared secrets, bytes. */
export const KEY_BYTES = 32;
/** Seeds of the mask PRG (self-mask seeds b and pairwise seeds s_ij), bytes: 256 bits. */
export const SEED_BYTES = 32;
/** ChaCha20-Poly1305 nonce and tag, bytes. */
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/** An X25519 key pair (raw 32-byte little-endian encodings, RFC 7748 §5). */
export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

const useNode = typeof process !== 'undefined' && !!process.versions?.node;
// DER prefixes of X25519 keys (RFC 8410): PKCS#8 private key and SubjectPublicKeyInfo, followed by the 32 raw bytes
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

// node:crypto KeyObjects of raw keys, built once per key (building one costs more than the agreement)
const privateObjects = new WeakMap<Uint8Array, KeyObject>();
const publicObjects = new WeakMap<Uint8Array, KeyObject>();
function privateKeyObject(raw: Uint8Array): KeyObject {
  let k = privateObjects.get(raw);
  if (!k) privateObjects.set(raw, (k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' })));
  return k;
}
function publicKeyObject(raw: Uint8Array): KeyObject {
  let k = publicObjects.get(raw);
  if (!k) publicObjects.set(raw, (k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' })));
  return k;
}

/** A fresh X25519 key pair from the CSPRNG. */
export function generateKeyPair(): KeyPair {
  const secretKey = new Uint8Array(randomBytes(KEY_BYTES));
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

/** The public key of an X25519 secret key. */
export function publicKeyOf(secretKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(secretKey);
}

/**
 * X25519(secretKey, publicKey) (RFC 7748 §5). Refuses a public key of the wrong length or one that
 * gives the all-zero shared secret (a low-order point, RFC 7748 §6.1).
 * @throws FedmqError FEDMQ_SECAGG_AUTH on such a key
 */
export function x25519Agree(secretKey: Uint8Array, publicKey: Uint8Array, backend: 'auto' | 'noble' = 'auto'): Uint8Array {
  if (publicKey.length !== KEY_BYTES || secretKey.length !== KEY_BYTES) {
    throw new FedmqError(ErrorCodes.SECAGG_AUTH, `X25519 keys are ${KEY_BYTES} bytes, got ${publicKey.length}`);
  }
  let shared: Uint8Array;
  try {
    if (useNode && backend === 'auto') {
      shared = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(secretKey), publicKey: publicKeyObject(publicKey) }));
    } else {
      shared = x25519.getSharedSecret(secretKey, publicKey);
    }
  } catch (cause) {
    throw new FedmqError(ErrorCodes.SECAGG_AUTH, 'X25519 refused the public key (low-order point)', {}, { cause });
  }
  let acc = 0;
  for (const b of shared) acc |= b;
  if (acc === 0) throw new FedmqError(ErrorCodes.SECAGG_AUTH, 'X25519 gave the all-zero shared secret (low-order public key)');
  return shared;
}

/** Where a derived key is used: the pairwise mask seed s_ij, or the share-encryption key c_ij. */
export type KeyPurpose = 'mask' | 'enc';

/** Who and what a derivation or an AEAD message is bound to (docs/protocol.md §12.2). */
export interface SecAggContext {
  job: string;
  runId: string;
  round: number;
}

const utf8 = new TextEncoder();

/** NUL-joined UTF-8 of the parts (ids never contain NUL: they are `[A-Za-z0-9_.-]{1,64}`). */
export function joinParts(parts: readonly (string | number)[]): Uint8Array {
  return utf8.encode(parts.map(String).join('\0'));
}

/**
 * The key two nodes share for one purpose in one round:
 * HKDF-SHA256(ikm = X25519(sk_a, pk_b), salt = "fedmq/secagg/v1",
 * info = purpose ‖ 0 ‖ job ‖ 0 ‖ runId ‖ 0 ‖ round ‖ 0 ‖ min(a, b) ‖ 0 ‖ max(a, b), L = 32)
 * (RFC 5869; ids ordered as JavaScript strings, i.e. by UTF-16 code units, here ASCII).
 * Symmetric: both ends derive the same key.
 */
export function deriveKey(
  purpose: KeyPurpose, ctx: SecAggContext, a: string, b: string, secretKey: Uint8Array, peerPublicKey: Uint8Array,
  backend: 'auto' | 'noble' = 'auto',
): Uint8Array {
  const [lo, hi] = a < b ? [a, b] : [b, a];
  const ikm = x25519Agree(secretKey, peerPublicKey, backend);
  return hkdf(sha256, ikm, utf8.encode(SECAGG_LABEL), joinParts([purpose, ctx.job, ctx.runId, ctx.round, lo, hi]), SEED_BYTES);
}

/** Bits of the masking group Z_{2^bits}: 1–32. */
export const MAX_MODULUS_BITS = 32;

/**
 * The mask PRG: `count` words, each the next 4 bytes of the ChaCha20 keystream (RFC 8439 §2.4;
 * key = the 256-bit seed, nonce = 12 zero bytes, block counter from 0) read little-endian,
 * reduced mod 2^bits (the low `bits` bits: exactly uniform, as 2^bits divides 2^32). A seed is
 * used for one vector only, so the fixed nonce never repeats under one key.
 */
export function prgWords(seed: Uint8Array, count: number, bits: number, backend: 'auto' | 'noble' = 'auto'): Uint32Array {
  const words = new Uint32Array(count);
  addPrg(words, seed, 1, bits, backend);
  return words;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
function readLe(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/**
 * Associated data of a share ciphertext: "fedmq/secagg/v1" ‖ 0 ‖ "share-keys" ‖ 0 ‖ job ‖ 0 ‖ runId ‖ 0 ‖ round ‖ 0 ‖ sender ‖ 0 ‖ receiver.
 */
export function shareAad(ctx: SecAggContext, sender: string, receiver: string): Uint8Array {
  return joinParts([SECAGG_LABEL, 'share-keys', ctx.job, ctx.runId, ctx.round, sender, receiver]);
}

/**
 * ChaCha20-Poly1305 (RFC 8439 §2.8) under `key` with a fresh random 96-bit nonce: returns
 * nonce ‖ ciphertext ‖ tag. One key is used by two senders (i → j and j → i), one message each
 * per round, so random nonces never collide in practice (2 messages under a key).
 */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const ct = chacha20poly1305(key, nonce, aad).encrypt(plaintext);
  const out = new Uint8Array(NONCE_BYTES + ct.length);
  out.set(nonce, 0);
  out.set(ct, NONCE_BYTES);
  return out;
}

/**
 * Opens what {@link seal} produced.
 * @throws FedmqError FEDMQ_SECAGG_AUTH when the tag does not verify (wrong key, tampered bytes, other associated data) or the message is too short
 */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new FedmqError(ErrorCodes.SECAGG_AUTH, `a sealed share is at least ${NONCE_BYTES + TAG_BYTES} bytes, got ${sealed.length}`);
  try {
    return chacha20poly1305(key, sealed.subarray(0, NONCE_BYTES), aad).decrypt(sealed.subarray(NONCE_BYTES));
  } catch (cause) {
    throw new FedmqError(ErrorCodes.SECAGG_AUTH, 'a share ciphertext did not authenticate (wrong key, sender, receiver, round or tampered bytes)', {}, { cause });
  }
}

/** 32 bytes from the CSPRNG: a self-mask seed. */
export function randomSeed(): Uint8Array {
  return new Uint8Array(randomBytes(SEED_BYTES));
}

/**
 * target ← target + sign · PRG(seed) mod 2^bits, in place, word by word (the PRG as {@link prgWords},
 * generated in 64 KiB blocks so no d-word mask is held). Words of `target` must be < 2^bits.
 */
export function addPrg(target: Uint32Array, seed: Uint8Array, sign: 1 | -1, bits: number, backend: 'auto' | 'noble' = 'auto'): void {
  if (seed.length !== SEED_BYTES) throw new FedmqError(ErrorCodes.BAD_CONFIG, `PRG seeds are ${SEED_BYTES} bytes, got ${seed.length}`);
  const mask = bits === 32 ? 0xffff_ffff : 2 ** bits - 1;
  const block = 16384; // words per block
  const zeros = new Uint8Array(block * 4);
  // node:crypto's chacha20 takes a 16-byte IV: 4-byte little-endian block counter ‖ 12-byte nonce
  const cipher = useNode && backend === 'auto' ? createCipheriv('chacha20', seed, Buffer.alloc(16)) : undefined;
  let counterBlocks = 0; // 64-byte ChaCha20 blocks consumed (noble path)
  for (let start = 0; start < target.length; start += block) {
    const n = Math.min(block, target.length - start);
    let ks: Uint8Array;
    if (cipher) ks = cipher.update(zeros.subarray(0, n * 4));
    else {
      ks = chacha20(seed, new Uint8Array(NONCE_BYTES), zeros.subarray(0, n * 4), new Uint8Array(n * 4), counterBlocks);
      counterBlocks += (n * 4) / 64;
    }
    const words = littleEndian && ks.byteOffset % 4 === 0 ? new Uint32Array(ks.buffer, ks.byteOffset, n) : Uint32Array.from({ length: n }, (_, i) => readLe(ks, 4 * i));
    if (sign === 1) for (let i = 0; i < n; i++) target[start + i] = ((target[start + i] + (words[i] & mask)) >>> 0) & mask;
    else for (let i = 0; i < n; i++) target[start + i] = ((target[start + i] - (words[i] & mask)) >>> 0) & mask;
  }
}
