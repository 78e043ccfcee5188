import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from '../random.ts';
import { MAX_MODULUS_BITS } from './primitives.ts';

/**
 * Quantization of updates for secure aggregation (docs/privacy.md, "Secure aggregation",
 * "Quantization"): each coordinate is clipped to [−clip, clip] and stochastically rounded onto the
 * grid of L + 1 levels 0..L, L = 2^levelBits − 1 (step 2·clip/L), unbiased: E[level] is the exact
 * position. The sum of m such vectors lies in [0, m·L], so the masking group Z_{2^b} with
 * m·L < 2^b holds it without wrapping (Bonawitz et al. 2017, §3: inputs in Z_R with R above the
 * largest possible sum).
 */

/** How updates are quantized: the clipping range [−clip, clip] and the bits of one level. */
export interface QuantizeOptions {
  /** Per-coordinate clipping bound, > 0 (same units as the update). */
  clip: number;
  /** Bits of a level: 1–24 (L = 2^levelBits − 1). */
  levelBits: number;
}

/** Default quantization: 16-bit levels over [−1, 1]. */
export const DEFAULT_QUANTIZE: QuantizeOptions = { clip: 1, levelBits: 16 };

function checkOptions(o: QuantizeOptions): number {
  if (!(o.clip > 0 && Number.isFinite(o.clip))) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `the quantization clip must be positive, got ${o.clip}`);
  if (!(Number.isInteger(o.levelBits) && o.levelBits >= 1 && o.levelBits <= 24)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `quantization levels take 1–24 bits, got ${o.levelBits}`);
  return 2 ** o.levelBits - 1;
}

/**
 * The smallest b with `count` · L < 2^b: the modulus bits at which the sum of `count` quantized
 * vectors cannot wrap.
 * @throws FedmqError FEDMQ_SECAGG_RANGE when that needs more than 32 bits (the configuration could wrap)
 */
export function modulusBits(count: number, o: QuantizeOptions): number {
  const levels = checkOptions(o);
  if (!(Number.isInteger(count) && count >= 1)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `a sum of ${count} inputs`);
  const b = Math.max(1, Math.ceil(Math.log2(count * levels + 1)));
  // guard the float log against an off-by-one at exact powers of two
  const bits = count * levels < 2 ** (b - 1) ? b - 1 : count * levels >= 2 ** b ? b + 1 : b;
  if (bits > MAX_MODULUS_BITS) {
    throw new FedmqError(ErrorCodes.SECAGG_RANGE, `the sum of ${count} inputs of ${o.levelBits}-bit levels needs ${bits} bits; at most ${MAX_MODULUS_BITS}: fewer quantization bits or a smaller cohort`, { count, levelBits: o.levelBits, bits });
  }
  return bits;
}

/**
 * Clips and stochastically rounds `values` to levels 0..L (one CSPRNG double per coordinate).
 * NaN is refused. Writes into `out` at `offset` when given.
 * @returns the levels (a new Uint32Array of values.length unless `out` is given)
 * @throws FedmqError FEDMQ_SECAGG_RANGE on bad options; FEDMQ_NON_FINITE on a NaN coordinate
 */
export function quantizeVector(values: ArrayLike<number>, o: QuantizeOptions, random: RandomSource = cryptoRandom(), out?: Uint32Array, offset = 0): Uint32Array {
  const levels = checkOptions(o);
  const target = out ?? new Uint32Array(values.length);
  const scale = levels / (2 * o.clip);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) throw new FedmqError(ErrorCodes.NON_FINITE, `coordinate ${i} is NaN`);
    target[offset + i] = stochasticRound((Math.min(o.clip, Math.max(-o.clip, v)) + o.clip) * scale, levels, random); // x in [0, L]
  }
  return target;
}

/** ⌊x⌋ + Bernoulli(x − ⌊x⌋) from one CSPRNG double (unbiased), capped at `max`. */
export function stochasticRound(x: number, max: number, random: RandomSource): number {
  const lo = Math.floor(x);
  return Math.min(max, lo + (random.nextDouble() < x - lo ? 1 : 0));
}

/**
 * The sum of `count` quantized coordinates back in update units: Σ v ≈ S·(2·clip/L) − count·clip.
 * @returns a new Float64Array (length `sum.length`, or `length` from `offset`)
 */
export function dequantizeSum(sum: Uint32Array, count: number, o: QuantizeOptions, offset = 0, length = sum.length - offset): Float64Array {
  const levels = checkOptions(o);
  const step = (2 * o.clip) / levels;
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = sum[offset + i] * step - count * o.clip;
  return out;
}

/**
 * Packs b-bit words little-endian into ceil(n·b/8) bytes (word i at bit offset i·b, least
 * significant bit first): the wire form of a masked input (docs/protocol.md §12.4).
 */
export function packBits(words: Uint32Array, bits: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(Math.ceil((words.length * bits) / 8));
  let accBits = 0;
  let o = 0;
  if (bits === 32 || bits === 16 || bits === 8) {
    const bytes = bits / 8;
    for (let i = 0; i < words.length; i++) for (let k = 0; k < bytes; k++) out[i * bytes + k] = (words[i] >>> (8 * k)) & 0xff;
    return out;
  }
  // general case: a 64-bit window is enough (bits ≤ 32, at most 7 bits pending)
  let lo = 0; // pending bits as a number < 2^39
  for (let i = 0; i < words.length; i++) {
    lo += words[i] * 2 ** accBits;
    accBits += bits;
    while (accBits >= 8) {
      out[o++] = lo % 256;
      lo = Math.floor(lo / 256);
      accBits -= 8;
    }
  }
  if (accBits > 0) out[o] = lo;
  return out;
}

/**
 * Unpacks `count` b-bit words packed by {@link packBits}.
 * @throws FedmqError FEDMQ_SECAGG_PROTOCOL when `bytes` is not exactly ceil(count·b/8) long or the padding bits are not zero
 */
export function unpackBits(bytes: Uint8Array, count: number, bits: number): Uint32Array {
  const want = Math.ceil((count * bits) / 8);
  if (bytes.length !== want) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, `a masked input of ${count} ${bits}-bit words is ${want} bytes, got ${bytes.length}`);
  const out = new Uint32Array(count);
  if (bits === 32 || bits === 16 || bits === 8) {
    const n = bits / 8;
    for (let i = 0; i < count; i++) {
      let w = 0;
      for (let k = n - 1; k >= 0; k--) w = w * 256 + bytes[i * n + k];
      out[i] = w;
    }
    return out;
  }
  let acc = 0;
  let accBits = 0;
  let p = 0;
  const mod = 2 ** bits;
  for (let i = 0; i < count; i++) {
    while (accBits < bits) {
      acc += bytes[p++] * 2 ** accBits;
      accBits += 8;
    }
    out[i] = acc % mod;
    acc = Math.floor(acc / mod);
    accBits -= bits;
  }
  if (acc !== 0) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, 'a masked input has non-zero padding bits');
  return out;
}
