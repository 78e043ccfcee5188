/**
 * Secure aggregation: SecAgg (Bonawitz et al. 2017) on the SecAgg+ graph (Bell et al. 2020),
 * docs/privacy.md "Secure aggregation" and docs/protocol.md §12.
 */
export {
  KEY_BYTES, MAX_MODULUS_BITS, NONCE_BYTES, SECAGG_LABEL, SEED_BYTES, TAG_BYTES, addPrg, deriveKey, generateKeyPair, joinParts, open, prgWords, publicKeyOf,
  randomSeed, seal, shareAad, x25519Agree, type KeyPair, type KeyPurpose, type SecAggContext,
} from './primitives.ts';
export { MAX_SHARES, SHARE_BYTES, combineShares, splitSecret } from './shamir.ts';
export { MAX_NEIGHBOURS, binomialCdfBelow, defaultNeighbours, neighbourGraph, nodeThreshold, type SecAggGraphKind } from './graph.ts';
export { DEFAULT_QUANTIZE, dequantizeSum, modulusBits, packBits, quantizeVector, unpackBits, type QuantizeOptions } from './quantize.ts';
export type * from './messages.ts';
export { SecAggClient } from './client.ts';
export { SecAggServer, type SecAggResult, type SecAggServerOptions, type SecAggStage } from './server.ts';
export { simulateSecAgg, type SimulateSecAggOptions, type SimulatedSecAgg } from './simulate.ts';
export { secaggDecodeMean, secaggDims, secaggBits, secaggEncode } from './encoding.ts';
