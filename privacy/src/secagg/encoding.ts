import { ErrorCodes, FedmqError, type SecAggEncoding } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from '../random.ts';
import { ddgDecode, ddgEncode } from '../ddg.ts';
import { dequantizeSum, modulusBits, quantizeVector, stochasticRound } from './quantize.ts';

/**
 * How a node's delta becomes its secure-aggregation input and how the coordinator turns the sum
 * back into the round's mean delta (docs/protocol.md §12.4, docs/privacy.md "Weighting").
 *
 * `fedavg` (weighted FedAvg without revealing n_k, as Flower's SecAgg+ workflow does it): the node
 * sends r·Δ with r = min(n_k, maxExamples)/maxExamples ∈ (0, 1], quantized, and r itself as a last
 * word on the grid of [0, 1]; the coordinator divides Σ r_k·Δ_k by Σ r_k, which is
 * Σ n_k·Δ_k / Σ n_k when no node has more than maxExamples examples.
 *
 * The delta is flattened in the global model's tensor order, each tensor row-major.
 */

/** Words of the input for a model of `params` weights. */
export function secaggDims(params: number, encoding: SecAggEncoding): number {
  return encoding.kind === 'fedavg' ? params + 1 : params;
}

/**
 * The modulus bits for a cohort of `cohort` nodes.
 * @throws FedmqError FEDMQ_SECAGG_RANGE when the sum could wrap at 32 bits
 */
export function secaggBits(cohort: number, encoding: SecAggEncoding): number {
  if (encoding.kind === 'fedavg') return modulusBits(cohort, { clip: encoding.clip, levelBits: encoding.levelBits });
  throw new FedmqError(ErrorCodes.SECAGG_RANGE, 'the ddg encoding is sized by ddgBits');
}

/**
 * A node's input: its delta (tensors in model order) as `secaggDims` words < 2^bits — the FedAvg
 * quantization above, or the distributed discrete Gaussian ({@link ddgEncode}: L2 clip, conditional
 * rounding, noise share, mod 2^bits; needs `bits`).
 * @throws FedmqError FEDMQ_NON_FINITE on a NaN coordinate; FEDMQ_SECAGG_RANGE on bad options (or a ddg encoding without `bits`); as {@link ddgEncode}
 */
export function secaggEncode(
  delta: readonly { data: ArrayLike<number> }[], numExamples: number, encoding: SecAggEncoding, random: RandomSource = cryptoRandom(), bits?: number,
): Uint32Array {
  const params = delta.reduce((s, t) => s + t.data.length, 0);
  if (encoding.kind === 'ddg') {
    if (bits === undefined) throw new FedmqError(ErrorCodes.SECAGG_RANGE, 'the ddg encoding needs the round\'s modulus bits');
    const flat = new Float64Array(params);
    let at = 0;
    for (const t of delta) {
      flat.set(t.data, at);
      at += t.data.length;
    }
    return ddgEncode(flat, { clipNorm: encoding.clipNorm, gamma: encoding.gamma, sigma2: encoding.sigma2, bits, beta: encoding.beta }, random).values;
  }
  const q = { clip: encoding.clip, levelBits: encoding.levelBits };
  const out = new Uint32Array(params + 1);
  const ratio = Math.min(numExamples, encoding.maxExamples) / encoding.maxExamples;
  let off = 0;
  for (const t of delta) {
    const scaled = new Float64Array(t.data.length);
    for (let i = 0; i < scaled.length; i++) scaled[i] = ratio * t.data[i];
    quantizeVector(scaled, q, random, out, off);
    off += t.data.length;
  }
  // r on the levels of [0, 1]: stochastic rounding of r·L
  const levels = 2 ** encoding.levelBits - 1;
  out[params] = stochasticRound(ratio * levels, levels, random);
  return out;
}

/**
 * The round's mean delta (flat, model order) from the unmasked sum of `count` inputs: Σ r·Δ / Σ r
 * (fedavg), or the centred ddg sum times γ over `count` ({@link ddgDecode}; needs `bits`).
 * @throws FedmqError FEDMQ_SECAGG_ABORT when the weights sum to 0 (nothing to average); FEDMQ_SECAGG_RANGE on a ddg encoding without `bits`
 */
export function secaggDecodeMean(sum: Uint32Array, count: number, encoding: SecAggEncoding, bits?: number): Float64Array {
  if (encoding.kind === 'ddg') {
    if (bits === undefined) throw new FedmqError(ErrorCodes.SECAGG_RANGE, 'the ddg encoding needs the round\'s modulus bits');
    const v = ddgDecode(sum, bits, encoding.gamma);
    for (let i = 0; i < v.length; i++) v[i] /= count;
    return v;
  }
  const params = sum.length - 1;
  const q = { clip: encoding.clip, levelBits: encoding.levelBits };
  const weighted = dequantizeSum(sum, count, q, 0, params);
  const ratioSum = sum[params] / (2 ** encoding.levelBits - 1);
  if (!(ratioSum > 0)) throw new FedmqError(ErrorCodes.SECAGG_ABORT, 'the survivors\' weights sum to 0');
  for (let i = 0; i < params; i++) weighted[i] /= ratioSum;
  return weighted;
}
