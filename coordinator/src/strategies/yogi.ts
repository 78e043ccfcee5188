import { z } from 'zod';
import { AdaptiveOptimizer, adaptiveFlags } from './adaptive.ts';
import { numberParam, type OptimizerDescriptor } from './descriptor.ts';

/**
 * Default server learning rate η of {@link YogiOptimizer}, measured on the default MNIST job at Dirichlet α = 0.1
 * (`npm run bench:server-lr`, docs/strategies.md; Flower's `FedYogi` default, 0.01, reached much less there). One constant: the `--server-lr` default of `yogi` (and the `fedyogi` preset) is changed here alone.
 */
export const YOGI_SERVER_LR = 0.03;
/** Default β1, β2 and τ of {@link YogiOptimizer} (as Flower's `FedYogi`). */
export const YOGI_DEFAULTS = { beta1: 0.9, beta2: 0.99, tau: 1e-3 } as const;

/** Options of {@link YogiOptimizer}; defaults {@link YOGI_SERVER_LR} and {@link YOGI_DEFAULTS}. */
export interface YogiOptions {
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
 * v ← v − (1 − β2)·Δ²·sign(v − Δ²) in place: Yogi's second moment (Reddi et al. 2021,
 * arXiv:2003.00295, Algorithm 2; Zaheer et al. 2018, Yogi). sign(0) = 0.
 */
export function yogiSecondMoment(v: Float64Array, delta: Float32Array | Float64Array, beta2: number): void {
  for (let i = 0; i < v.length; i++) {
    const d2 = delta[i] * delta[i];
    v[i] = v[i] - (1 - beta2) * d2 * Math.sign(v[i] - d2);
  }
}

/**
 * Server Yogi, FedYogi's optimizer (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR
 * 2021, arXiv:2003.00295, Algorithm 2 with the Yogi second moment): m_t = β1·m_{t−1} + (1−β1)·Δ_t,
 * v_t = v_{t−1} − (1−β2)·Δ_t²·sign(v_{t−1} − Δ_t²), x_{t+1} = x_t + η·m_t/(√v_t + τ); m_{−1} = 0,
 * v_{−1} = τ². v grows at most additively, so the effective step shrinks more slowly than Adam's
 * when updates get small. See {@link AdaptiveOptimizer} for state and errors.
 */
export class YogiOptimizer extends AdaptiveOptimizer {
  readonly name = 'yogi';
  /** @throws RangeError on a bad option (see {@link AdaptiveOptimizer}). */
  constructor(opts: YogiOptions = {}) {
    super({ serverLr: opts.serverLr ?? YOGI_SERVER_LR, beta1: opts.beta1 ?? YOGI_DEFAULTS.beta1, beta2: opts.beta2 ?? YOGI_DEFAULTS.beta2, tau: opts.tau ?? YOGI_DEFAULTS.tau });
  }
  protected updateSecondMoment(v: Float64Array, delta: Float32Array | Float64Array): void {
    yogiSecondMoment(v, delta, this.beta2);
  }
}

const params = z.object({
  serverLr: numberParam.positive().default(YOGI_SERVER_LR),
  beta1: numberParam.below(1).default(YOGI_DEFAULTS.beta1),
  beta2: numberParam.below(1).default(YOGI_DEFAULTS.beta2),
  tau: numberParam.positive().default(YOGI_DEFAULTS.tau),
});

/** Descriptor of {@link YogiOptimizer} (`--server-optimizer yogi`). */
export const yogiDescriptor: OptimizerDescriptor<typeof params> = {
  kind: 'optimizer',
  name: 'yogi',
  title: 'server Yogi (FedYogi)',
  paper: 'Reddi et al. 2021, arXiv:2003.00295; Zaheer et al. 2018 (Yogi), NeurIPS',
  stateful: true,
  params,
  flags: adaptiveFlags({ beta2: true }),
  create: (p) => new YogiOptimizer(p),
};
