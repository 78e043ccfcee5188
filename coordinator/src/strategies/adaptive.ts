import type { NamedTensor } from '@fedmq/protocol';
import type { ServerOptimizer, StepTensor, StrategyState } from '../strategy.ts';
import type { ParamFlag } from './descriptor.ts';
import { checkStateMatchesModel, checkStateName, checkStep, tensorsFromState, tensorsToState, type StateTensor } from './state.ts';

/** Hyperparameters of an {@link AdaptiveOptimizer}, all resolved (no defaults at this level). */
export interface AdaptiveHyperparameters {
  /** Server learning rate η, > 0 and finite. */
  serverLr: number;
  /** First-moment decay β1, in [0, 1). */
  beta1: number;
  /** Second-moment decay β2, in [0, 1) (unused by Adagrad). */
  beta2: number;
  /** Adaptivity τ, > 0 and finite: added to √v_t, and v_{−1} = τ². */
  tau: number;
}

/**
 * {@link StrategyState} of an {@link AdaptiveOptimizer} (adam, yogi, adagrad), part of the checkpoint:
 * - `strategy`: the optimizer's name (`adam`, `yogi`, `adagrad`), checked by `setState`;
 * - `steps`: server steps taken so far;
 * - `m`, `v`: the first and second moments m_t, v_t, one {@link StateTensor} per model tensor
 *   in model order (float64 values), or both `null` before the first step.
 */
export type AdaptiveState = { strategy: string; steps: number; m: StateTensor[] | null; v: StateTensor[] | null };

/**
 * m ← β1·m + (1 − β1)·Δ in place (Reddi et al. 2021, arXiv:2003.00295, Algorithm 2).
 * @param m first moment of one tensor (float64, updated in place).
 * @param delta the pseudo-gradient Δ_t of the same tensor, same length.
 */
export function updateFirstMoment(m: Float64Array, delta: Float32Array | Float64Array, beta1: number): void {
  for (let i = 0; i < m.length; i++) m[i] = beta1 * m[i] + (1 - beta1) * delta[i];
}

/**
 * The adaptive server step x_{t+1} = x_t + η·m_t / (√v_t + τ) of one tensor
 * (Reddi et al. 2021, arXiv:2003.00295, Algorithm 2).
 * @returns a new float32 array; `x`, `m` and `v` are not modified.
 */
export function adaptiveStep(x: Float32Array, m: Float64Array, v: Float64Array, eta: number, tau: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) out[i] = x[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
  return out;
}

/**
 * Base of the adaptive server optimizers of Reddi et al. 2021 ("Adaptive Federated
 * Optimization", ICLR 2021, arXiv:2003.00295, Algorithm 2): with Δ_t the round's step (the
 * numExamples-weighted mean delta in the FedAdam/FedYogi/FedAdagrad presets, any aggregator's
 * otherwise), the server applies
 *
 *   m_t = β1·m_{t−1} + (1 − β1)·Δ_t,   v_t = (rule of the subclass),
 *   x_{t+1} = x_t + η·m_t / (√v_t + τ),
 *
 * with m_{−1} = 0 and v_{−1} = τ² (the paper's initialisation "v_{−1} ≥ τ²"; Flower starts from
 * v = 0 instead, which differs only by τ² in the first rounds). No Adam bias correction, as in the
 * paper (Flower's FedAdam adds one). The client learning rate η_l of the paper is
 * `fitConfig.learningRate`.
 *
 * State (m, v) is kept in float64, one array per model tensor (O(model) memory), and is part of
 * the checkpoint through {@link getState} / {@link setState}.
 */
export abstract class AdaptiveOptimizer implements ServerOptimizer {
  /** Name used by `--server-optimizer`, also stored in the state. */
  abstract readonly name: string;
  /** Server learning rate η. */
  readonly serverLr: number;
  /** First-moment decay β1. */
  readonly beta1: number;
  /** Second-moment decay β2. */
  readonly beta2: number;
  /** Adaptivity τ. */
  readonly tau: number;
  private names: string[] = [];
  private m: Float64Array[] | null = null;
  private v: Float64Array[] | null = null;
  private steps = 0;

  /** @throws RangeError when η or τ is not a positive finite number, or β1 or β2 is outside [0, 1). */
  protected constructor(hp: AdaptiveHyperparameters) {
    if (!(hp.serverLr > 0 && Number.isFinite(hp.serverLr))) throw new RangeError(`serverLr must be a positive finite number, got ${hp.serverLr}`);
    if (!(hp.beta1 >= 0 && hp.beta1 < 1)) throw new RangeError(`beta1 must be in [0, 1), got ${hp.beta1}`);
    if (!(hp.beta2 >= 0 && hp.beta2 < 1)) throw new RangeError(`beta2 must be in [0, 1), got ${hp.beta2}`);
    if (!(hp.tau > 0 && Number.isFinite(hp.tau))) throw new RangeError(`tau must be a positive finite number, got ${hp.tau}`);
    this.serverLr = hp.serverLr;
    this.beta1 = hp.beta1;
    this.beta2 = hp.beta2;
    this.tau = hp.tau;
  }

  /**
   * The second-moment rule v_{t−1} → v_t of one tensor, in place.
   * @param v v_{t−1} on entry, v_t on return (float64).
   * @param delta Δ_t of the same tensor.
   */
  protected abstract updateSecondMoment(v: Float64Array, delta: Float32Array | Float64Array): void;

  /**
   * One server optimizer step with Δ_t = `delta`.
   * @returns new float32 tensors with the names and shapes of `global`.
   * @throws RangeError when `delta` does not fit the model, or the state (restored or from earlier
   *   rounds) does not match the model's tensor names and sizes.
   */
  step(global: readonly NamedTensor[], delta: readonly StepTensor[]): NamedTensor[] {
    checkStep(global, delta);
    if (this.m === null || this.v === null) {
      this.names = global.map((t) => t.name);
      this.m = global.map((t) => new Float64Array(t.data.length));
      this.v = global.map((t) => new Float64Array(t.data.length).fill(this.tau * this.tau));
    } else {
      checkStateMatchesModel(this.names, this.m, global);
    }
    const m = this.m;
    const v = this.v;
    const next = global.map((g, t) => {
      updateFirstMoment(m[t], delta[t].data, this.beta1);
      this.updateSecondMoment(v[t], delta[t].data);
      return { name: g.name, shape: [...g.shape], data: adaptiveStep(g.data, m[t], v[t], this.serverLr, this.tau) };
    });
    this.steps++;
    return next;
  }

  /** A copy of the moments, as documented in {@link AdaptiveState}. */
  getState(): AdaptiveState {
    return {
      strategy: this.name,
      steps: this.steps,
      m: this.m === null ? null : tensorsToState(this.names, this.m),
      v: this.v === null ? null : tensorsToState(this.names, this.v),
    };
  }

  /**
   * Restores an {@link AdaptiveState}; its tensors are checked against the model at the next {@link step}.
   * @throws TypeError when `state` is not an {@link AdaptiveState} of this optimizer's name, or `m`
   *   and `v` do not have the same tensors.
   */
  setState(state: StrategyState): void {
    checkStateName(state, this.name);
    const steps = state.steps;
    if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 0) throw new TypeError(`${this.name} state: steps must be an integer ≥ 0`);
    const m = tensorsFromState(state.m, `${this.name} state: m`);
    const v = tensorsFromState(state.v, `${this.name} state: v`);
    if ((m === null) !== (v === null)) throw new TypeError(`${this.name} state: m and v must both be null or both be set`);
    if (m !== null && v !== null) {
      if (m.names.length !== v.names.length || m.names.some((n, i) => n !== v.names[i] || m.arrays[i].length !== v.arrays[i].length)) {
        throw new TypeError(`${this.name} state: m and v have different tensors`);
      }
    }
    this.names = m?.names ?? [];
    this.m = m?.arrays ?? null;
    this.v = v?.arrays ?? null;
    this.steps = steps;
  }
}

/** The CLI flags of the adaptive optimizers (adam, yogi, adagrad), shared: one flag per meaning; adagrad has no β2. */
export function adaptiveFlags(o: { beta2: boolean }): ParamFlag[] {
  return [
    { flag: '--server-lr <eta>', key: 'serverLr', help: 'server learning rate η' },
    { flag: '--beta1 <b>', key: 'beta1', help: 'adam/yogi/adagrad: first-moment decay β1, in [0, 1)' },
    ...(o.beta2 ? [{ flag: '--beta2 <b>', key: 'beta2', help: 'adam/yogi: second-moment decay β2, in [0, 1)' }] : []),
    { flag: '--tau <t>', key: 'tau', help: 'adam/yogi/adagrad: adaptivity τ > 0 (v starts at τ²)' },
  ];
}
