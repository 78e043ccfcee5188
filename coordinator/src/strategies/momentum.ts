import type { NamedTensor } from '@fedmq/protocol';
import { z } from 'zod';
import type { ServerOptimizer, StepTensor, StrategyState } from '../strategy.ts';
import { numberParam, type OptimizerDescriptor } from './descriptor.ts';
import { checkStateMatchesModel, checkStateName, checkStep, tensorsFromState, tensorsToState, type StateTensor } from './state.ts';

/** Default server learning rate η of {@link MomentumOptimizer}. */
export const MOMENTUM_SERVER_LR = 1;
/** Default server momentum β of {@link MomentumOptimizer} (Flower's default is 0, which is plain FedAvg). */
export const MOMENTUM_BETA = 0.9;

/** Options of {@link MomentumOptimizer} (names as Flower's `FedAvgM`, camelCase). */
export interface MomentumOptions {
  /** Server learning rate η, > 0 and finite. Default {@link MOMENTUM_SERVER_LR}. */
  serverLr?: number;
  /** Server momentum β, in [0, 1). Default {@link MOMENTUM_BETA}. */
  serverMomentum?: number;
}

/**
 * {@link StrategyState} of {@link MomentumOptimizer}, part of the checkpoint: `strategy` is
 * `'momentum'`; `momentum` is the momentum buffer v_t, one {@link StateTensor} per model tensor in
 * model order (float64 values), or `null` before the first step.
 */
export type MomentumState = { strategy: string; momentum: StateTensor[] | null };

/**
 * v ← β·v + Δ in place, then x + η·v: one server SGD-with-momentum step of one tensor
 * (Hsu et al. 2019, arXiv:1909.06335, Section 3).
 * @param v momentum of the tensor (float64, updated in place).
 * @returns a new float32 array; `x` and `delta` are not modified.
 */
export function momentumStep(x: Float32Array, v: Float64Array, delta: Float32Array | Float64Array, eta: number, beta: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) {
    v[i] = beta * v[i] + delta[i];
    out[i] = x[i] + eta * v[i];
  }
  return out;
}

/**
 * Server momentum, FedAvgM's optimizer (Hsu, Qi & Brown 2019, "Measuring the Effects of
 * Non-Identical Data Distribution for Federated Visual Classification", arXiv:1909.06335): with
 * Δ_t the round's step (FedAvg's weighted mean delta in the `fedavgm` preset, any aggregator's otherwise),
 *
 *   v_t = β·v_{t−1} + Δ_t,   x_{t+1} = x_t + η·v_t,   v_0 = 0,
 *
 * which is Flower's `FedAvgM` (PyTorch SGD momentum on the pseudo-gradient −Δ_t, no Nesterov).
 * With β = 0 and η = 1 it is FedAvg exactly. The momentum (float64, one array per tensor,
 * O(model) memory) is part of the checkpoint via {@link getState} / {@link setState}.
 */
export class MomentumOptimizer implements ServerOptimizer {
  readonly name = 'momentum';
  /** Server learning rate η. */
  readonly serverLr: number;
  /** Server momentum β. */
  readonly serverMomentum: number;
  private names: string[] = [];
  private momentum: Float64Array[] | null = null;

  /** @throws RangeError when `serverLr` is not a positive finite number, or `serverMomentum` is outside [0, 1). */
  constructor(opts: MomentumOptions = {}) {
    const eta = opts.serverLr ?? MOMENTUM_SERVER_LR;
    const beta = opts.serverMomentum ?? MOMENTUM_BETA;
    if (!(eta > 0 && Number.isFinite(eta))) throw new RangeError(`serverLr must be a positive finite number, got ${eta}`);
    if (!(beta >= 0 && beta < 1)) throw new RangeError(`serverMomentum must be in [0, 1), got ${beta}`);
    this.serverLr = eta;
    this.serverMomentum = beta;
  }

  /**
   * One momentum step with Δ_t = `delta`.
   * @returns new float32 tensors with the names and shapes of `global`.
   * @throws RangeError when `delta` does not fit the model, or the momentum (restored or from
   *   earlier rounds) does not match the model's tensor names and sizes.
   */
  step(global: readonly NamedTensor[], delta: readonly StepTensor[]): NamedTensor[] {
    checkStep(global, delta);
    if (this.momentum === null) {
      this.names = global.map((t) => t.name);
      this.momentum = global.map((t) => new Float64Array(t.data.length));
    } else {
      checkStateMatchesModel(this.names, this.momentum, global);
    }
    const v = this.momentum;
    return global.map((g, t) => ({
      name: g.name,
      shape: [...g.shape],
      data: momentumStep(g.data, v[t], delta[t].data, this.serverLr, this.serverMomentum),
    }));
  }

  /** A copy of the momentum, as documented in {@link MomentumState}. */
  getState(): MomentumState {
    return { strategy: this.name, momentum: this.momentum === null ? null : tensorsToState(this.names, this.momentum) };
  }

  /**
   * Restores a {@link MomentumState}; its tensors are checked against the model at the next {@link step}.
   * @throws TypeError when `state` is not a {@link MomentumState} (wrong `strategy` or malformed `momentum`).
   */
  setState(state: StrategyState): void {
    checkStateName(state, this.name);
    const m = tensorsFromState(state.momentum, 'momentum state: momentum');
    this.names = m?.names ?? [];
    this.momentum = m?.arrays ?? null;
  }
}

const params = z.object({
  serverLr: numberParam.positive().default(MOMENTUM_SERVER_LR),
  serverMomentum: numberParam.below(1).default(MOMENTUM_BETA),
});

/** Descriptor of {@link MomentumOptimizer} (`--server-optimizer momentum`). */
export const momentumDescriptor: OptimizerDescriptor<typeof params> = {
  kind: 'optimizer',
  name: 'momentum',
  title: 'server momentum (FedAvgM)',
  paper: 'Hsu et al. 2019, arXiv:1909.06335',
  stateful: true,
  params,
  flags: [
    { flag: '--server-lr <eta>', key: 'serverLr', help: 'server learning rate η' },
    { flag: '--server-momentum <beta>', key: 'serverMomentum', help: 'momentum: server momentum β, in [0, 1)' },
  ],
  create: (p) => new MomentumOptimizer(p),
};
