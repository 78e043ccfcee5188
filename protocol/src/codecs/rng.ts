/**
 * A small seeded uniform generator for the codecs' stochastic rounding (mulberry32, 32-bit state;
 * statistically fine for rounding noise, not cryptographic).
 *
 * @param seed any number (its low 32 bits are used).
 * @returns a function returning numbers in [0, 1), multiples of 2⁻³².
 */
export function seededRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
