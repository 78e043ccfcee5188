import { combine, split } from 'shamir-secret-sharing';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/**
 * Shamir t-of-m secret sharing (Shamir 1979) of 32-byte secrets, from the npm package
 * `shamir-secret-sharing` (Privy; audited by Cure53 and by Zellic, 2024): byte-wise over GF(2^8)
 * with the AES polynomial, coefficients and x-coordinates from the platform CSPRNG
 * (`crypto.getRandomValues`). A share is the secret's length plus one byte: the share's
 * x-coordinate (distinct, non-zero, random) last. Chosen over hand-written sharing over a prime
 * field because it is independently audited and small (no dependencies); its limit, at most 255
 * shares, bounds a node's neighbours (docs/protocol.md §12.1).
 */

/** Bytes of one share of a 32-byte secret. */
export const SHARE_BYTES = 33;
/** Most shares one secret can be split into (GF(2^8) has 255 non-zero x-coordinates). */
export const MAX_SHARES = 255;

/**
 * Splits a secret into `count` shares, any `threshold` of which rebuild it.
 * @throws FedmqError FEDMQ_SECAGG_RANGE unless 2 ≤ threshold ≤ count ≤ 255
 */
export async function splitSecret(secret: Uint8Array, count: number, threshold: number): Promise<Uint8Array[]> {
  if (!(Number.isInteger(count) && Number.isInteger(threshold) && threshold >= 2 && threshold <= count && count <= MAX_SHARES)) {
    throw new FedmqError(ErrorCodes.SECAGG_RANGE, `Shamir sharing needs 2 ≤ threshold ≤ shares ≤ ${MAX_SHARES}, got ${threshold} of ${count}`);
  }
  // the library checks `constructor === Uint8Array`: a Buffer (MessagePack's bin in Node.js) is copied into a plain one
  return split(Uint8Array.from(secret), count, threshold);
}

/**
 * Rebuilds a secret from at least `threshold` shares (the first `threshold` of them are used:
 * any `threshold` shares of one polynomial give the same secret). Fewer shares would give a
 * wrong secret without any error, hence the explicit count.
 * @throws FedmqError FEDMQ_SECAGG_ABORT with fewer than `threshold` shares; FEDMQ_SECAGG_PROTOCOL on shares of unequal length or a repeated x-coordinate
 */
export async function combineShares(shares: readonly Uint8Array[], threshold: number, what = 'a secret'): Promise<Uint8Array> {
  if (shares.length < threshold || threshold < 2) {
    throw new FedmqError(ErrorCodes.SECAGG_ABORT, `${what} needs ${threshold} shares, only ${shares.length} arrived`);
  }
  const used = shares.slice(0, threshold);
  const xs = new Set<number>();
  for (const s of used) {
    if (s.length !== used[0].length || s.length < 2) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, `shares of ${what} differ in length`);
    const x = s[s.length - 1];
    if (x === 0 || xs.has(x)) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, `shares of ${what} repeat an x-coordinate`);
    xs.add(x);
  }
  return combine(used.map((x) => Uint8Array.from(x)));
}
