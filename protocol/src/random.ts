import { seededRng } from './codecs/rng.ts';

/**
 * Seeded pseudo-randomness that is part of the protocol's reproducibility contract (node
 * selection, the nodes' held-out splits and training seeds, docs/protocol.md §5.4). Not
 * cryptographic: privacy code draws from node:crypto instead.
 */

/**
 * Creates a seeded PRNG (mulberry32, 32-bit state; period 2^32) returning floats in [0, 1).
 * Same seed → same sequence on every platform. Any finite number is accepted as seed (it is
 * hashed to 32 bits, so `1` and `1.5` give different streams).
 */
export function createRng(seed: number): () => number {
  // Hash the seed (including its fractional part) into 32 bits with a splitmix-style mixer.
  let h = Math.floor(seed) ^ 0x9e3779b9;
  h = Math.imul(h ^ Math.floor((seed % 1) * 0x100000000), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return seededRng(h >>> 0); // mulberry32 on the mixed seed
}

/**
 * 32-bit FNV-1a of a string's UTF-16 code units (Fowler–Noll–Vo, offset basis 2166136261, prime
 * 16777619), as an unsigned integer. Node ids are ASCII, so this equals FNV-1a of their bytes.
 * Seeds a node's training shuffles and held-out split (docs/protocol.md §5.4).
 */
export function fnv1a32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
