import { z } from 'zod';
import { AdaptiveOptimizer, adaptiveFlags } from './adaptive.ts';
import { numberParam, type OptimizerDescriptor } from './descriptor.ts';

/**
 * Default server learning rate η of {@link AdamOptimizer}, measured on the default MNIST job at Dirichlet α = 0.1
 * (`npm run bench:server-lr`, docs/strategies.md; Flower's `FedAdam` default, 0.1, reached much less there). One constant: the `--server-lr` default of `adam` (and the `fedadam` preset) is changed here alone.
 */
export const ADAM_SERVER_LR = 0.01;
/** Default β1, β2 and τ of {@link AdamOptimizer} (as Flower's `FedAdam`). */
export const ADAM_DEFAULTS = { beta1: 0.9, beta2: 0.99, tau: 1e-9 } as const;

/** Options of {@link AdamOptimizer}; defaults {@link ADAM_SERVER_LR} and {@link ADAM_DEFAULTS}. */
export interface AdamOptions {
  /** Server learning rate η, > 0. */
  serverLr?: number;
  /** First-moment decay β1, in [0, 1). */
  beta1?: number;
  /** Second-moment decay β2, in [0, 1). */
  beta2?: number;
  /** Adaptivity τ, > 0 (v_{−1} = τ²). */
  tau?: number;
}

/**
 * v ← β2·v + (1 − β2)·Δ² in place: Adam's second moment (Reddi et al. 2021, arXiv:2003.00295,
 * Algorithm 2).
 */
export function adamSecondMoment(v: Float64Array, delta: Float32Array | Float64Array, beta2: number): void {
  for (let i = 0; i < v.length; i++) v[i] = beta2 * v[i] + (1 - beta2) * delta[i] * delta[i];
}

/**
 * Server Adam, FedAdam's optimizer (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR
 * 2021, arXiv:2003.00295, Algorithm 2 with the Adam second moment): m_t = β1·m_{t−1} + (1−β1)·Δ_t,
 * v_t = β2·v_{t−1} + (1−β2)·Δ_t², x_{t+1} = x_t + η·m_t/(√v_t + τ); m_{−1} = 0, v_{−1} = τ². No
 * bias correction (the paper's form; Flower's `FedAdam` scales η by √(1−β2^{t+1})/(1−β1^{t+1})).
 * See {@link AdaptiveOptimizer} for state and errors.
 */
export class AdamOptimizer extends AdaptiveOptimizer {
  readonly name = 'adam';
  /** @throws RangeError on a bad option (see {@link AdaptiveOptimizer}). */
  constructor(opts: AdamOptions = {}) {
    super({ serverLr: opts.serverLr ?? ADAM_SERVER_LR, beta1: opts.beta1 ?? ADAM_DEFAULTS.beta1, beta2: opts.beta2 ?? ADAM_DEFAULTS.beta2, tau: opts.tau ?? ADAM_DEFAULTS.tau });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array | Float64Array): void {
    adamSecondMoment(v, delta, this.beta2);
  }
}

const params = z.object({
  serverLr: numberParam.positive().default(ADAM_SERVER_LR),
  beta1: numberParam.below(1).default(ADAM_DEFAULTS.beta1),
  beta2: numberParam.below(1).default(ADAM_DEFAULTS.beta2),
  tau: numberParam.positive().default(ADAM_DEFAULTS.tau),
});

/** Descriptor of {@link AdamOptimizer} (`--server-optimizer adam`). */
export const adamDescriptor: OptimizerDescriptor<typeof params> = {
  kind: 'optimizer',
  name: 'adam',
  title: 'server Adam (FedAdam)',
  paper: 'Reddi et al. 2021, arXiv:2003.00295',
  stateful: true,
  params,
  flags: adaptiveFlags({ beta2: true }),
  create: (p) => new AdamOptimizer(p),
};
