/**
 * @fedmq/privacy — differential privacy for federated learning (docs/privacy.md): the privacy
 * accountant (RDP of the Poisson-subsampled Gaussian, conversion to (ε, δ), calibration of the
 * noise multiplier) and the noise samplers (Gaussian and discrete Gaussian from a CSPRNG).
 */
export {};
// the accountant (docs/privacy.md, "Accounting")
export { erf, erfc, erfcx, logErfc } from './special.ts';
export { DEFAULT_RDP_ORDERS, computeLogAFrac, computeLogAInt, effectiveNoiseMultiplier, rdpPoissonSubsampledGaussian, rdpSampledWithoutReplacementGaussian } from './rdp.ts';
export { computeDelta, computeEpsilon, type DeltaAndOrder, type EpsilonAndOrder } from './convert.ts';
export { RdpAccountant, type NeighboringRelation, type RdpAccountantState } from './accountant.ts';
export { MAX_NOISE_MULTIPLIER, epsilonFor, noiseMultiplierFor, type RunPlan } from './calibrate.ts';
// the noise samplers and clipping (docs/privacy.md, "Noise" and "Clipping"); the seeded test stream is privacy/src/testing.ts, not exported: tests import it by path
export { BufferedRandomSource, CryptoRandom, cryptoRandom, type RandomSource } from './random.ts';
export { addGaussianNoise, fillGaussian, gaussian } from './noise.ts';
export {
  DISCRETE_GAUSSIAN_INT32_MAX_SIGMA, DiscreteGaussian, bernoulliExp, discreteGaussian, discreteGaussianVariance, discreteGaussianVector,
  discreteGaussianVectorBigInt, discreteLaplace, isqrt, rationalFromNumber, type Rational,
} from './discrete-gaussian.ts';
export { CLIP_MARGIN, MAX_CLIP_ELEMENTS, MIN_CLIP_NORM, clipL2, type ClipResult } from './clip.ts';
// membership inference
export { lossThresholdAuc, rocAuc } from './membership.ts';
// secure aggregation (docs/privacy.md, "Secure aggregation"; docs/protocol.md §12)
export * from './secagg/index.ts';
// the distributed discrete Gaussian for --secagg --dp distributed (Kairouz, Liu, Steinke 2021): encoding, decoding, ring sizing, accounting
export {
  DDG_MAX_BITS, DDG_MAX_ROUNDING_TRIES, DDG_MAX_SIGMA2, DDG_MIN_SIGMA2, ddgBits, ddgDecode, ddgEncode, ddgEpsilon, ddgL2Sensitivity, ddgNoiseFor,
  ddgTau, ddgZcdpRho, type DdgEncoded, type DdgParams,
} from './ddg.ts';
