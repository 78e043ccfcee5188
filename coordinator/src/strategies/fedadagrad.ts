import type { FedAvgOptions } from './fedavg.ts';
import { FedOpt } from './fedopt.ts';

/** Options of {@link FedAdagrad}: FedAvg's plus the server hyperparameters (defaults as Flower's `FedAdagrad`). */
export interface FedAdagradOptions extends FedAvgOptions {
  /** Server learning rate η, > 0. Default 0.1. */
  eta?: number;
  /** First-moment decay β1, in [0, 1). Default 0 (m_t = Δ_t, as Flower; the paper allows any β1). */
  beta1?: number;
  /** Adaptivity τ, > 0 (v_{−1} = τ²). Default 1e-9. */
  tau?: number;
}

/** v ← v + Δ² in place: FedAdagrad's second moment (Reddi et al. 2021, arXiv:2003.00295, Algorithm 2). */
export function adagradSecondMoment(v: Float64Array, delta: Float32Array): void {
  for (let i = 0; i < v.length; i++) v[i] += delta[i] * delta[i];
}

/**
 * FedAdagrad (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR 2021, arXiv:2003.00295,
 * Algorithm 2 with the Adagrad second moment): with Δ_t the round's numExamples-weighted mean
 * delta, m_t = β1·m_{t−1} + (1−β1)·Δ_t, v_t = v_{t−1} + Δ_t², x_{t+1} = x_t + η·m_t/(√v_t + τ);
 * m_{−1} = 0, v_{−1} = τ². See {@link FedOpt} for sampling, state and errors.
 */
export class FedAdagrad extends FedOpt {
  readonly name = 'fedadagrad';
  /** @throws RangeError on a bad option (see {@link FedOpt}). */
  constructor(opts: FedAdagradOptions) {
    super(opts, { eta: opts.eta ?? 1e-1, beta1: opts.beta1 ?? 0, beta2: 0, tau: opts.tau ?? 1e-9 });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array): void {
    adagradSecondMoment(v, delta);
  }
}
