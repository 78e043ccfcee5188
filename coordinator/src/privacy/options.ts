import type { DpMode } from '@fedmq/protocol';

/**
 * Adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with Adaptive Clipping",
 * NeurIPS, arXiv:1905.03871, Algorithm 1): the clip norm follows the γ-quantile of the nodes'
 * update norms by the geometric update C ← C · exp(−η_C · (b̄ − γ)), b̄ the noised fraction of
 * updates with ‖Δ‖ ≤ C.
 */
export interface AdaptiveClipOptions {
  /** γ ∈ (0, 1): target fraction of unclipped updates (the paper's default 0.5). */
  targetQuantile: number;
  /** C₀, the first round's clip norm; default 0.1 (the paper's). */
  initialClipNorm?: number;
  /** η_C > 0; default 0.2 (the paper's). */
  learningRate?: number;
  /**
   * σ_b, std of the Gaussian noise on the count of unclipped updates; default expected cohort / 20
   * (the paper's recommendation, §3), fixed at the first round.
   */
  countNoiseStd?: number;
}

/**
 * Client-level differential privacy of a run (DP-FedAvg, McMahan et al. 2018, "Learning
 * Differentially Private Recurrent Language Models", ICLR, arXiv:1710.06963; docs/privacy.md).
 * Exactly one of `noiseMultiplier` and `targetEpsilon` is given.
 */
export interface DpOptions {
  /** `central`: nodes clip, the coordinator adds N(0, σ²C²) to the sum; `local`: each node also adds N(0, σ²C²) to its own clipped delta. */
  mode: DpMode;
  /** σ, noise std in units of the clip norm C. */
  noiseMultiplier?: number;
  /** Calibrate σ instead: the smallest σ with ε(δ) ≤ targetEpsilon after `rounds` rounds (docs/privacy.md, "Calibration"). */
  targetEpsilon?: number;
  /** δ of every reported ε, of calibration and of the budget; default 1e-5. */
  delta?: number;
  /** C > 0 (the deltas' units), or adaptive clipping (central mode only). */
  clipNorm: number | AdaptiveClipOptions;
  /** Budget: the run stops with FEDMQ_PRIVACY_BUDGET, checkpointed, before a round would make ε(δ) exceed it. */
  maxEpsilon?: number;
}
