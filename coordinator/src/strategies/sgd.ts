import type { NamedTensor } from '@fedmq/protocol';
import { z } from 'zod';
import type { ServerOptimizer, StepTensor } from '../strategy.ts';
import { numberParam, type OptimizerDescriptor } from './descriptor.ts';
import { checkStep } from './state.ts';

/** Default server learning rate η of {@link SgdOptimizer}: 1, FedAvg's x + Δ. */
export const SGD_SERVER_LR = 1;

/** Options of {@link SgdOptimizer}. */
export interface SgdOptions {
  /** Server learning rate η, > 0 and finite. Default {@link SGD_SERVER_LR}. */
  serverLr?: number;
}

/**
 * Server SGD (Reddi et al. 2021, "Adaptive Federated Optimization", ICLR, arXiv:2003.00295,
 * Algorithm 1 with ServerOpt = SGD): x_{t+1} = x_t + η·Δ_t, each value computed in float64 and
 * rounded once to float32. With η = 1 it is FedAvg's w + Δ (McMahan et al. 2017,
 * arXiv:1602.05629), bit for bit the same as `applyDelta(global, step)`. Stateless.
 */
export class SgdOptimizer implements ServerOptimizer {
  readonly name = 'sgd';
  /** η in use. */
  readonly serverLr: number;

  /** @throws RangeError when `serverLr` is not a positive finite number. */
  constructor(opts: SgdOptions = {}) {
    const eta = opts.serverLr ?? SGD_SERVER_LR;
    if (!(eta > 0 && Number.isFinite(eta))) throw new RangeError(`serverLr must be a positive finite number, got ${eta}`);
    this.serverLr = eta;
  }

  /**
   * x + η·Δ as new float32 tensors named like `global`.
   * @throws RangeError when `delta` does not have `global`'s tensor count and sizes.
   */
  step(global: readonly NamedTensor[], delta: readonly StepTensor[]): NamedTensor[] {
    checkStep(global, delta);
    const eta = this.serverLr;
    return global.map((g, t) => {
      const out = new Float32Array(g.data.length);
      const d = delta[t].data;
      const x = g.data;
      // float64 arithmetic, one rounding to float32 on store; η = 1 gives x + d exactly (1·d = d).
      for (let i = 0; i < out.length; i++) out[i] = x[i] + eta * d[i];
      return { name: g.name, shape: [...g.shape], data: out };
    });
  }
}

const params = z.object({ serverLr: numberParam.positive().default(SGD_SERVER_LR) });

/** Descriptor of {@link SgdOptimizer} (`--server-optimizer sgd`). */
export const sgdDescriptor: OptimizerDescriptor<typeof params> = {
  kind: 'optimizer',
  name: 'sgd',
  title: 'server SGD, x + η·Δ',
  paper: 'McMahan et al. 2017, arXiv:1602.05629; Reddi et al. 2021, arXiv:2003.00295',
  stateful: false,
  params,
  flags: [{ flag: '--server-lr <eta>', key: 'serverLr', help: 'server learning rate η' }],
  create: (p) => new SgdOptimizer(p),
};
