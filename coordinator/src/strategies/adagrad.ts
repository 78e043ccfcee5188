import { z } from 'zod';
import { AdaptiveOptimizer, adaptiveFlags } from './adaptive.ts';
import { numberParam, type OptimizerDescriptor } from './descriptor.ts';

/**
 * Default server learning rate η of {@link AdagradOptimizer}, measured on the default MNIST job at Dirichlet α = 0.1
 * (`npm run bench:server-lr`, docs/strategies.md; Flower's `FedAdagrad` default, 0.1, reached much less there). One constant: the `--server-lr` default of `adagrad` (and the `fedadagrad` preset) is changed here alone.
 */
export const ADAGRAD_SERVER_LR = 0.03;
/** Default β1 and τ of {@link AdagradOptimizer}: β1 = 0 makes m_t = Δ_t, as Flower (the paper allows any β1). */
export const ADAGRAD_DEFAULTS = { beta1: 0, tau: 1e-9 } as const;

/** Options of {@link AdagradOptimizer}; defaults {@link ADAGRAD_SERVER_LR} and {@link ADAGRAD_DEFAULTS}. */
export interface AdagradOptions {
  /** Server learning rate η, > 0. */
  serverLr?: number;
  /** First-moment decay β1, in [0, 1). */
  beta1?: number;
  /** Adaptivity τ, > 0 (v_{−1} = τ²). */
  tau?: number;
}

/** v ← v + Δ² in place: Adagrad's second moment (Reddi et al. 2021, arXiv:2003.00295, Algorithm 2). */
export function adagradSecondMoment(v: Float64Array, delta: Float32Array | Float64Array): void {
  for (let i = 0; i < v.length; i++) v[i] += delta[i] * delta[i];
}

/**
 * Server Adagrad, FedAdagrad's optimizer (Reddi et al. 2021, "Adaptive Federated Optimization",
 * ICLR 2021, arXiv:2003.00295, Algorithm 2 with the Adagrad second moment):
 * m_t = β1·m_{t−1} + (1−β1)·Δ_t, v_t = v_{t−1} + Δ_t², x_{t+1} = x_t + η·m_t/(√v_t + τ);
 * m_{−1} = 0, v_{−1} = τ². See {@link AdaptiveOptimizer} for state and errors.
 */
export class AdagradOptimizer extends AdaptiveOptimizer {
  readonly name = 'adagrad';
  /** @throws RangeError on a bad option (see {@link AdaptiveOptimizer}). */
  constructor(opts: AdagradOptions = {}) {
    super({ serverLr: opts.serverLr ?? ADAGRAD_SERVER_LR, beta1: opts.beta1 ?? ADAGRAD_DEFAULTS.beta1, beta2: 0, tau: opts.tau ?? ADAGRAD_DEFAULTS.tau });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array | Float64Array): void {
    adagradSecondMoment(v, delta);
  }
}

const params = z.object({
  serverLr: numberParam.positive().default(ADAGRAD_SERVER_LR),
  beta1: numberParam.below(1).default(ADAGRAD_DEFAULTS.beta1),
  tau: numberParam.positive().default(ADAGRAD_DEFAULTS.tau),
});

/** Descriptor of {@link AdagradOptimizer} (`--server-optimizer adagrad`). */
export const adagradDescriptor: OptimizerDescriptor<typeof params> = {
  kind: 'optimizer',
  name: 'adagrad',
  title: 'server Adagrad (FedAdagrad)',
  paper: 'Reddi et al. 2021, arXiv:2003.00295',
  stateful: true,
  params,
  flags: adaptiveFlags({ beta2: false }),
  create: (p) => new AdagradOptimizer(p),
};
