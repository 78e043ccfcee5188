import type { FedAvgOptions } from './fedavg.ts';
import { FedOpt } from './fedopt.ts';

/** Options of {@link FedAdam}: FedAvg's plus the server hyperparameters (defaults as Flower's `FedAdam`). */
export interface FedAdamOptions extends FedAvgOptions {
  /** Server learning rate η, > 0. Default 0.1. */
  eta?: number;
  /** First-moment decay β1, in [0, 1). Default 0.9. */
  beta1?: number;
  /** Second-moment decay β2, in [0, 1). Default 0.99. */
  beta2?: number;
  /** Adaptivity τ, > 0 (v_{−1} = τ²). Default 1e-9. */
  tau?: number;
}

/**
 * v ← β2·v + (1 − β2)·Δ² in place: FedAdam's second moment (Reddi et al. 2021, arXiv:2003.00295,
 * Algorithm 2).
 */
export function adamSecondMoment(v: Float64Array, delta: Float32Array, beta2: number): void {
  for (let i = 0; i < v.length; i++) v[i] = beta2 * v[i] + (1 - beta2) * delta[i] * delta[i];
}

/**
 * FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR 2021, arXiv:2003.00295,
 * Algorithm 2 with the Adam second moment): with Δ_t the round's numExamples-weighted mean delta,
 * m_t = β1·m_{t−1} + (1−β1)·Δ_t, v_t = β2·v_{t−1} + (1−β2)·Δ_t², x_{t+1} = x_t + η·m_t/(√v_t + τ);
 * m_{−1} = 0, v_{−1} = τ². No bias correction (the paper's form; Flower's `FedAdam` scales η by
 * √(1−β2^{t+1})/(1−β1^{t+1})). See {@link FedOpt} for sampling, state and errors.
 */
export class FedAdam extends FedOpt {
  readonly name = 'fedadam';
  /** @throws RangeError on a bad option (see {@link FedOpt}). */
  constructor(opts: FedAdamOptions) {
    super(opts, { eta: opts.eta ?? 1e-1, beta1: opts.beta1 ?? 0.9, beta2: opts.beta2 ?? 0.99, tau: opts.tau ?? 1e-9 });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array): void {
    adamSecondMoment(v, delta, this.beta2);
  }
}
