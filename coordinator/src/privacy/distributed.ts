import { ErrorCodes, FedmqError, type PrivacyRecord, type SecAggEncoding } from '@fedmq/protocol';
import { ddgBits, ddgEpsilon, ddgL2Sensitivity, ddgZcdpRho } from '@fedmq/privacy';
import type { SecAggOptions } from '../engine/secagg.ts';
import { DEFAULT_DP_DELTA } from './ledger.ts';
import type { DpOptions } from './options.ts';

/** β of the conditional randomized rounding (Kairouz et al. 2021 use e^{−1/2}). */
export const DDG_BETA = Math.exp(-0.5);
/** Probability that the sum of one round wraps around the ring (per round, all coordinates), the ring is sized for. */
export const DDG_WRAP_PROBABILITY = 1e-9;

/**
 * Distributed differential privacy under secure aggregation (`--secagg --dp distributed`;
 * Kairouz, Liu, Steinke 2021, "The Distributed Discrete Gaussian Mechanism for Federated Learning
 * with Secure Aggregation", ICML): each node clips its delta to C in L2, scales it by 1/γ
 * (c = C/γ = 2^(quantBits − 2) integer units), rounds it conditionally and adds discrete Gaussian
 * noise of variance σ_node² = (z·c)²/t, t the round's secure-aggregation threshold: any sum the
 * coordinator can unmask holds at least t noise shares, so at least the central level (z·C)².
 * The coordinator never sees a noise-free update, nor a sum with less noise.
 *
 * Accounting (docs/privacy.md, "Distributed DP"): per released round ρ-zCDP with ρ from
 * Kairouz et al.'s sum-of-discrete-Gaussians bound ({@link ddgZcdpRho}, n = t, Δ2 from the
 * conditional rounding), composed additively over rounds and converted to (ε, δ) through RDP
 * ({@link ddgEpsilon}). Conservative: no amplification by sampling is claimed (the coordinator,
 * untrusted here, knows who was sampled), and the noise of survivors beyond t is not counted.
 * A round that aborts unmasks nothing and costs nothing.
 */
export class DistributedDpLedger {
  readonly mode = 'distributed' as const;
  readonly noiseMultiplier: number;
  readonly clipNorm: number;
  readonly delta: number;
  readonly maxEpsilon: number | null;
  /** c = C/γ, integer units of a clipped delta's norm. */
  readonly scale: number;
  private rho = 0;
  private steps = 0;
  private lastRho = 0;
  private pending = 0;

  /**
   * @param opts mode `distributed`, a fixed clip norm, a noise multiplier z (the central noise std is z·C)
   * @param plan the run's model size d, its expected threshold t (for the budget check before a round), the fraction sampled, quantization bits
   * @throws FedmqError FEDMQ_BAD_CONFIG on adaptive clipping, a target ε instead of z, or bad numbers
   */
  constructor(opts: DpOptions, private readonly plan: { dims: number; expectedThreshold: number; fraction: number; quantBits: number }) {
    if (opts.mode !== 'distributed') throw new FedmqError(ErrorCodes.BAD_CONFIG, `DistributedDpLedger is for mode distributed, got ${opts.mode}`);
    if (typeof opts.clipNorm !== 'number') throw new FedmqError(ErrorCodes.BAD_CONFIG, 'distributed DP needs a fixed --clip-norm C (adaptive clipping would need the nodes\' bits in the clear)');
    if (opts.noiseMultiplier === undefined) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'distributed DP takes --noise-multiplier z (calibration from --target-epsilon is for central and local mode)');
    if (!(opts.noiseMultiplier > 0 && Number.isFinite(opts.noiseMultiplier))) throw new FedmqError(ErrorCodes.BAD_CONFIG, `noise multiplier must be positive, got ${opts.noiseMultiplier}`);
    if (!(opts.clipNorm > 0 && Number.isFinite(opts.clipNorm))) throw new FedmqError(ErrorCodes.BAD_CONFIG, `clip norm must be positive, got ${opts.clipNorm}`);
    if (!(Number.isInteger(plan.quantBits) && plan.quantBits >= 4 && plan.quantBits <= 24)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `distributed DP quantization bits must be 4–24, got ${plan.quantBits}`);
    this.noiseMultiplier = opts.noiseMultiplier;
    this.clipNorm = opts.clipNorm;
    this.delta = opts.delta ?? DEFAULT_DP_DELTA;
    this.maxEpsilon = opts.maxEpsilon ?? null;
    this.scale = 2 ** (plan.quantBits - 2);
  }

  /** γ, the deltas' value of one integer unit. */
  get gamma(): number {
    return this.clipNorm / this.scale;
  }

  /** Δ2 of one node's rounded vector, integer units. */
  sensitivity(): number {
    return ddgL2Sensitivity({ clipNorm: this.clipNorm, gamma: this.gamma, dims: this.plan.dims, beta: DDG_BETA });
  }

  /** σ_node² for a round with threshold t, integer units. */
  nodeSigma2(threshold: number): number {
    return (this.noiseMultiplier * this.scale) ** 2 / threshold;
  }

  /** ρ of one round with threshold t. */
  roundRho(threshold: number): number {
    return ddgZcdpRho({ l2Sensitivity: this.sensitivity(), sigma2: this.nodeSigma2(threshold), nodes: threshold, dims: this.plan.dims });
  }

  /** The encoding of a round (for {@link SecAggOptions.encoding}): the `ddg` encoding and its ring. */
  encoding(cohort: number, threshold: number): { encoding: SecAggEncoding; bits: number } {
    const sigma2 = this.nodeSigma2(threshold);
    const bits = ddgBits({ nodes: cohort, dims: this.plan.dims, clipNorm: this.clipNorm, gamma: this.gamma, sigma2, wrapProbability: DDG_WRAP_PROBABILITY });
    this.pending = this.roundRho(threshold);
    return { encoding: { kind: 'ddg', clipNorm: this.clipNorm, gamma: this.gamma, sigma2, beta: DDG_BETA }, bits };
  }

  /** The round's sum was unmasked: compose its ρ. */
  release(): void {
    this.rho += this.pending;
    this.lastRho = this.pending;
    this.steps++;
  }

  /** ε(δ) so far. */
  epsilon(): number {
    return this.steps === 0 ? 0 : ddgEpsilon({ rho: this.rho, rounds: 1, delta: this.delta });
  }

  /** Whether one more round (at the expected threshold) would exceed the budget. */
  wouldExceedBudget(): boolean {
    if (this.maxEpsilon === null) return false;
    return ddgEpsilon({ rho: this.rho + this.roundRho(this.plan.expectedThreshold), rounds: 1, delta: this.delta }) > this.maxEpsilon;
  }

  budgetError(round: number): FedmqError {
    return new FedmqError(ErrorCodes.PRIVACY_BUDGET, `privacy budget: round ${round} would exceed max ε ${this.maxEpsilon}; stopped after ${this.steps} released rounds at ε = ${this.epsilon().toPrecision(4)}`, { round, epsilon: this.epsilon(), maxEpsilon: this.maxEpsilon, delta: this.delta });
  }

  /** The `privacy` field of the round's metrics. */
  record(): PrivacyRecord {
    const eps = this.epsilon();
    return {
      mode: 'distributed', sampling: 'none', q: this.plan.fraction, noiseMultiplier: this.noiseMultiplier,
      // the Gaussian mechanism's σ with the same ρ per round: 1/√(2ρ)
      accountedNoiseMultiplier: this.lastRho > 0 ? 1 / Math.sqrt(2 * this.lastRho) : this.noiseMultiplier,
      clipNorm: this.clipNorm, nextClipNorm: this.clipNorm, unclippedFraction: null, steps: this.steps, epsilon: Number.isFinite(eps) ? eps : null,
      delta: this.delta, maxEpsilon: this.maxEpsilon,
    };
  }
}

/** The secure-aggregation encoding of distributed DP: each unmasked round spends its ρ in the ledger. */
export function ddgSecAggEncoding(ledger: DistributedDpLedger): Pick<SecAggOptions, 'encoding' | 'onRelease'> {
  return {
    encoding: (cohort, _maxExamples, threshold) => ledger.encoding(cohort, threshold),
    onRelease: () => ledger.release(),
  };
}
