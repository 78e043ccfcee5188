import { ErrorCodes, FedmqError, type DpMode, type FitDp, type PrivacyRecord } from '@fedmq/protocol';
import { RdpAccountant, cryptoRandom, gaussian, noiseMultiplierFor, type RandomSource, type RdpAccountantState } from '@fedmq/privacy';
import type { JsonValue } from '../strategy.ts';
import type { DpOptions } from './options.ts';

/** δ when {@link DpOptions.delta} is not given. */
export const DEFAULT_DP_DELTA = 1e-5;
/** Adaptive clipping's defaults (Andrew et al. 2021, arXiv:1905.03871, §3 and §4). */
export const ADAPTIVE_CLIP_DEFAULTS = { initialClipNorm: 0.1, learningRate: 0.2, countNoiseDivisor: 20 } as const;

/** The checkpointed state of a {@link PrivacyLedger} (JSON-serialisable). */
export interface PrivacyLedgerState {
  [key: string]: JsonValue;
  mode: DpMode;
  q: number;
  noiseMultiplier: number;
  delta: number;
  /** Fixed C, or adaptive clipping. */
  clipping: 'fixed' | 'adaptive';
  /** C of the next round. */
  clipNorm: number;
  accountant: RdpAccountantState & { [key: string]: JsonValue };
}

/** What the aggregator needs to know of the round being aggregated. */
export interface DpRound {
  mode: DpMode;
  /** C the round's nodes were asked to clip to. */
  clipNorm: number;
  /** Noise std on the sum of the clipped deltas, in the deltas' units (central: z_Δ·C; local: 0, the nodes noised). */
  sumNoiseStd: number;
  /** q·N: the expected cohort, the fixed denominator of the central estimator. */
  expectedCohort: number;
  /** Whether the updates carry the clipping bit (adaptive clipping). */
  clipBit: boolean;
}

const bad = (message: string, details: Record<string, unknown> = {}) => new FedmqError(ErrorCodes.BAD_CONFIG, message, details);

/**
 * The privacy side of a DP run (docs/privacy.md): the sampling probability q, the noise
 * multiplier, the clip norm (fixed, or moved by adaptive clipping), the RDP accountant and the
 * budget. The round engine asks it, in order, each round:
 *
 * 1. {@link wouldExceedBudget} before selecting: a round that would push ε(δ) over `maxEpsilon` is
 *    not run (FEDMQ_PRIVACY_BUDGET);
 * 2. {@link beginRound} with the N eligible nodes, and {@link fitDp} for every fit task;
 * 3. {@link release} when the aggregator releases the noised step: one composition of the
 *    Poisson-subsampled Gaussian, and adaptive clipping's update of C from the noised count;
 * 4. {@link record} for the round's metrics.
 *
 * **Accounting.** Central mode: client-level (ε, δ) under add/remove of one node's whole data,
 * each round one Poisson-subsampled Gaussian with q and σ (Mironov, Talwar, Zhang 2019). With
 * adaptive clipping the round releases two noised sums of the same cohort, the clipped deltas
 * (z_Δ) and the count of unclipped updates (σ_b, sensitivity ½ of the centred bits), composed as one
 * Gaussian with z = (z_Δ⁻² + (2σ_b)⁻²)^(−½) (Andrew et al. 2021, §3.1): z is `noiseMultiplier`, and
 * z_Δ is chosen from it. Local mode: each node's own releases, under replacement of its data (the
 * node's presence is visible on the broker, so neither add/remove nor amplification by sampling
 * applies): sensitivity 2C, so noise multiplier σ/2, q = 1, and one step per released round (an
 * upper bound on the rounds a node took part in).
 *
 * Randomness (the count noise here, the cohort and the sum's noise in the aggregator) comes from a
 * CSPRNG: a seeded generator would let anyone who knows the seed recompute the cohorts and the noise.
 */
export class PrivacyLedger {
  readonly mode: 'central' | 'local';
  /** q, the sampling probability of a node in a round. */
  readonly q: number;
  /** z: the noise multiplier the accountant composes per round (central), or each node's σ (local). */
  readonly noiseMultiplier: number;
  /** z_Δ, the noise multiplier of the sum of clipped deltas (= z without adaptive clipping). */
  readonly deltaNoiseMultiplier: number;
  readonly delta: number;
  readonly maxEpsilon: number | null;
  readonly adaptive: { targetQuantile: number; learningRate: number; countNoiseStd: number } | null;
  /** The CSPRNG (a seeded stream only in tests). */
  readonly random: RandomSource;
  #accountant = new RdpAccountant();
  #clipNorm: number;
  #round?: { clipNorm: number; expectedCohort: number; unclippedFraction: number | null };

  /**
   * @param opts the run's DP options.
   * @param plan.fraction q (the run's `--fraction`), in (0, 1].
   * @param plan.rounds rounds of the run (for calibration from `targetEpsilon`).
   * @param plan.expectedCohort the expected cohort q·N at the start (q × the nodes the run waits for), for σ_b's default.
   * @param random the randomness; default the process CSPRNG.
   * @throws FedmqError FEDMQ_BAD_CONFIG on an invalid option: neither or both of σ and target ε,
   *   δ ∉ (0, 1), C ≤ 0, γ ∉ (0, 1), adaptive clipping in local mode, or an adaptive σ_b too small
   *   for z (2σ_b must exceed z).
   */
  constructor(opts: DpOptions, plan: { fraction: number; rounds: number; expectedCohort: number }, random: RandomSource = cryptoRandom()) {
    if (opts.mode !== 'central' && opts.mode !== 'local') throw bad(`dp mode must be central or local, got ${String(opts.mode)}`);
    this.mode = opts.mode;
    const q = plan.fraction;
    if (!(q > 0 && q <= 1)) throw bad(`dp: fraction q must be in (0, 1], got ${q}`);
    this.q = q;
    this.delta = opts.delta ?? DEFAULT_DP_DELTA;
    if (!(this.delta > 0 && this.delta < 1)) throw bad(`dp: delta must be in (0, 1), got ${this.delta}`);
    if ((opts.noiseMultiplier === undefined) === (opts.targetEpsilon === undefined)) throw bad('dp: give exactly one of noiseMultiplier (--noise-multiplier) and targetEpsilon (--target-epsilon)');
    if (opts.maxEpsilon !== undefined && !(opts.maxEpsilon > 0 && Number.isFinite(opts.maxEpsilon))) throw bad(`dp: maxEpsilon must be a finite number > 0, got ${opts.maxEpsilon}`);
    this.maxEpsilon = opts.maxEpsilon ?? null;
    this.random = random;
    if (opts.noiseMultiplier !== undefined) {
      if (!(opts.noiseMultiplier > 0 && Number.isFinite(opts.noiseMultiplier))) throw bad(`dp: noise multiplier must be a finite number > 0, got ${opts.noiseMultiplier}`);
      this.noiseMultiplier = opts.noiseMultiplier;
    } else {
      // local mode: the accountant's σ is each node's σ/2 with q = 1
      const z = noiseMultiplierFor({ q: this.mode === 'central' ? q : 1, rounds: plan.rounds, delta: this.delta, targetEpsilon: opts.targetEpsilon! });
      this.noiseMultiplier = this.mode === 'central' ? z : 2 * z;
    }
    const c = opts.clipNorm;
    if (typeof c === 'number') {
      if (!(c > 0 && Number.isFinite(c))) throw bad(`dp: clip norm must be a finite number > 0, got ${c}`);
      this.#clipNorm = c;
      this.adaptive = null;
      this.deltaNoiseMultiplier = this.noiseMultiplier;
    } else {
      if (this.mode !== 'central') throw bad('dp: adaptive clipping needs central mode (the clipping bit is noised by the coordinator)');
      if (!(c.targetQuantile > 0 && c.targetQuantile < 1)) throw bad(`dp: adaptive clipping's target quantile must be in (0, 1), got ${c.targetQuantile}`);
      const c0 = c.initialClipNorm ?? ADAPTIVE_CLIP_DEFAULTS.initialClipNorm;
      const eta = c.learningRate ?? ADAPTIVE_CLIP_DEFAULTS.learningRate;
      if (!(c0 > 0 && Number.isFinite(c0))) throw bad(`dp: initial clip norm must be a finite number > 0, got ${c0}`);
      if (!(eta > 0 && Number.isFinite(eta))) throw bad(`dp: clip learning rate must be a finite number > 0, got ${eta}`);
      const sigmaB = c.countNoiseStd ?? plan.expectedCohort / ADAPTIVE_CLIP_DEFAULTS.countNoiseDivisor;
      const z = this.noiseMultiplier;
      if (!(2 * sigmaB > z)) {
        throw bad(`dp: adaptive clipping needs 2σ_b > σ: σ_b = ${sigmaB.toPrecision(4)} (expected cohort ${plan.expectedCohort.toPrecision(4)} / 20) leaves no noise budget for the deltas at σ = ${z.toPrecision(4)}; wait for more nodes (--min-nodes) or give countNoiseStd`, { sigmaB, noiseMultiplier: z });
      }
      this.adaptive = { targetQuantile: c.targetQuantile, learningRate: eta, countNoiseStd: sigmaB };
      this.#clipNorm = c0;
      this.deltaNoiseMultiplier = (z ** -2 - (2 * sigmaB) ** -2) ** -0.5;
    }
  }

  /** The noise multiplier one round composes in the accountant. */
  get accountedNoiseMultiplier(): number {
    return this.mode === 'central' ? this.noiseMultiplier : this.noiseMultiplier / 2;
  }

  private get accountedQ(): number {
    return this.mode === 'central' ? this.q : 1;
  }

  /** C of the next round (adaptive clipping moves it after every release). */
  get clipNorm(): number {
    return this.#clipNorm;
  }

  /** Rounds released so far (the accountant's steps). */
  get steps(): number {
    return this.#accountant.steps;
  }

  /** ε(δ) spent so far (0 before the first release). */
  epsilon(): number {
    return this.#accountant.steps === 0 ? 0 : this.#accountant.epsilon(this.delta);
  }

  /** ε(δ) after one more released round. */
  epsilonAfterNextRound(): number {
    return this.#accountant.clone().compose(this.accountedQ, this.accountedNoiseMultiplier).epsilon(this.delta);
  }

  /** Whether one more round would exceed `maxEpsilon` (always false without a budget). */
  wouldExceedBudget(): boolean {
    return this.maxEpsilon !== null && this.epsilonAfterNextRound() > this.maxEpsilon;
  }

  /** The error a budget stop ends the run with. */
  budgetError(round: number): FedmqError {
    const next = this.epsilonAfterNextRound();
    return new FedmqError(
      ErrorCodes.PRIVACY_BUDGET,
      `privacy budget: round ${round} would spend ε = ${next.toPrecision(4)} (δ = ${this.delta}) > max ε ${this.maxEpsilon}; stopped after ${this.steps} released rounds at ε = ${this.epsilon().toPrecision(4)}`,
      { round, epsilon: this.epsilon(), nextEpsilon: next, maxEpsilon: this.maxEpsilon, delta: this.delta },
    );
  }

  /**
   * Starts a round's accounting record.
   * @param population N, the eligible nodes the round samples from.
   */
  beginRound(population: number): void {
    this.#round = { clipNorm: this.#clipNorm, expectedCohort: this.q * population, unclippedFraction: null };
  }

  /** The `dp` field of the round's fit tasks. */
  fitDp(): FitDp {
    const c = this.#round?.clipNorm ?? this.#clipNorm;
    return {
      mode: this.mode, clipNorm: c, noiseMultiplier: this.mode === 'local' ? this.noiseMultiplier : undefined, clipBit: this.adaptive ? true : undefined,
    };
  }

  /** What the aggregator needs for the round begun by {@link beginRound}. @throws Error when no round was begun (a bug). */
  round(): DpRound {
    const r = this.#round;
    if (!r) throw new Error('bug: PrivacyLedger.round() before beginRound()');
    return {
      mode: this.mode, clipNorm: r.clipNorm, sumNoiseStd: this.mode === 'central' ? this.deltaNoiseMultiplier * r.clipNorm : 0,
      expectedCohort: r.expectedCohort, clipBit: this.adaptive !== null,
    };
  }

  /**
   * The round's noised step is released: composes one step in the accountant and, with adaptive
   * clipping, moves C by C ← C·exp(−η_C·(b̄ − γ)), b̄ = (Σ (b_k − ½) + N(0, σ_b²)) / (q·N) + ½.
   * The bits are centred to ±½ before the noise (Andrew et al. 2021, §3.1; tensorflow_privacy's
   * QuantileEstimatorQuery): one node added or removed then moves the noised sum by ½, the
   * sensitivity the accountant's 2σ_b assumes. The raw count Σ b_k would move by 1.
   * @param unclippedCount Σ b_k, the round's updates that were within C before clipping (adaptive clipping).
   * @param reportedCount the round's updates folded into the sum (the b_k counted in `unclippedCount`).
   */
  release(unclippedCount: number, reportedCount: number): void {
    const r = this.#round;
    if (!r) throw new Error('bug: PrivacyLedger.release() before beginRound()');
    this.#accountant.compose(this.accountedQ, this.accountedNoiseMultiplier);
    const a = this.adaptive;
    if (a) {
      const centred = unclippedCount - reportedCount / 2;
      const bBar = (centred + a.countNoiseStd * gaussian(this.random)) / r.expectedCohort + 0.5;
      r.unclippedFraction = bBar;
      this.#clipNorm = r.clipNorm * Math.exp(-a.learningRate * (bBar - a.targetQuantile));
    }
  }

  /** The `privacy` field of the round's metrics. */
  record(): PrivacyRecord {
    const eps = this.epsilon();
    return {
      mode: this.mode, sampling: 'poisson', q: this.q, noiseMultiplier: this.noiseMultiplier, accountedNoiseMultiplier: this.accountedNoiseMultiplier,
      clipNorm: this.#round?.clipNorm ?? this.#clipNorm, nextClipNorm: this.#clipNorm, unclippedFraction: this.#round?.unclippedFraction ?? null,
      steps: this.steps, epsilon: Number.isFinite(eps) ? eps : null, delta: this.delta, maxEpsilon: this.maxEpsilon,
    };
  }

  /** The state for the checkpoint (a copy). */
  getState(): PrivacyLedgerState {
    return {
      mode: this.mode, q: this.q, noiseMultiplier: this.noiseMultiplier, delta: this.delta, clipping: this.adaptive ? 'adaptive' : 'fixed', clipNorm: this.#clipNorm,
      accountant: this.#accountant.toJSON() as RdpAccountantState & { [key: string]: JsonValue },
    };
  }

  /**
   * Continues from a checkpoint's state: the same ε, and adaptive clipping's C.
   * @throws FedmqError FEDMQ_CHECKPOINT when the state is not of this configuration (mode, q, σ, δ, fixed or adaptive clipping) or malformed.
   */
  setState(s: PrivacyLedgerState): void {
    if (typeof s !== 'object' || s === null) throw new FedmqError(ErrorCodes.CHECKPOINT, 'checkpoint has no privacy state for this DP run');
    const clipping = this.adaptive ? 'adaptive' : 'fixed';
    if (s.mode !== this.mode || s.q !== this.q || s.noiseMultiplier !== this.noiseMultiplier || s.delta !== this.delta || s.clipping !== clipping) {
      throw new FedmqError(
        ErrorCodes.CHECKPOINT,
        `checkpoint's privacy (mode ${s.mode}, q ${s.q}, σ ${s.noiseMultiplier}, δ ${s.delta}, ${s.clipping} clipping) differs from this run's (mode ${this.mode}, q ${this.q}, σ ${this.noiseMultiplier}, δ ${this.delta}, ${clipping} clipping)`,
      );
    }
    if (!(typeof s.clipNorm === 'number' && s.clipNorm > 0 && Number.isFinite(s.clipNorm))) throw new FedmqError(ErrorCodes.CHECKPOINT, `checkpoint's clip norm ${String(s.clipNorm)} is not a positive number`);
    const acc = RdpAccountant.fromJSON(s.accountant);
    if (acc.neighboring !== 'add-remove' || acc.orders.length !== this.#accountant.orders.length || acc.orders.some((o, i) => o !== this.#accountant.orders[i])) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, "checkpoint's accountant has other orders or another neighbouring relation");
    }
    this.#accountant = acc;
    this.#clipNorm = s.clipNorm;
  }
}
