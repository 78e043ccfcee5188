import type { FedAvgOptions } from './fedavg.ts';
import { FedOpt } from './fedopt.ts';

/** Options of {@link FedYogi}: FedAvg's plus the server hyperparameters (defaults as Flower's `FedYogi`). */
export interface FedYogiOptions extends FedAvgOptions {
  /** Server learning rate η, > 0. Default 0.01. */
  eta?: number;
  /** First-moment decay β1, in [0, 1). Default 0.9. */
  beta1?: number;
  /** Second-moment decay β2, in [0, 1). Default 0.99. */
  beta2?: number;
  /** Adaptivity τ, > 0 (v_{−1} = τ²). Default 1e-3. */
  tau?: number;
}

/**
 * v ← v − (1 − β2)·Δ²·sign(v − Δ²) in place: FedYogi's second moment (Reddi et al. 2021,
 * arXiv:2003.00295, Algorithm 2; Zaheer et al. 2018, Yogi). sign(0) = 0.
 */
export function yogiSecondMoment(v: Float64Array, delta: Float32Array, beta2: number): void {
  for (let i = 0; i < v.length; i++) {
    const d2 = delta[i] * delta[i];
    v[i] = v[i] - (1 - beta2) * d2 * Math.sign(v[i] - d2);
  }
}

/**
 * FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR 2021, arXiv:2003.00295,
 * Algorithm 2 with the Yogi second moment): with Δ_t the round's numExamples-weighted mean delta,
 * m_t = β1·m_{t−1} + (1−β1)·Δ_t, v_t = v_{t−1} − (1−β2)·Δ_t²·sign(v_{t−1} − Δ_t²),
 * x_{t+1} = x_t + η·m_t/(√v_t + τ); m_{−1} = 0, v_{−1} = τ². v grows at most additively, so the
 * effective step shrinks more slowly than Adam's when updates get small. See {@link FedOpt} for
 * sampling, state and errors.
 */
export class FedYogi extends FedOpt {
  readonly name = 'fedyogi';
  /** @throws RangeError on a bad option (see {@link FedOpt}). */
  constructor(opts: FedYogiOptions) {
    super(opts, { eta: opts.eta ?? 1e-2, beta1: opts.beta1 ?? 0.9, beta2: opts.beta2 ?? 0.99, tau: opts.tau ?? 1e-3 });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array): void {
    yogiSecondMoment(v, delta, this.beta2);
  }
}
