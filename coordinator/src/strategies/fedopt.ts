import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import type { FitFailure, JsonValue, RoundAggregate, Strategy, StrategyState } from '../strategy.ts';
import { FedAvg, MeanAggregate, type FedAvgOptions } from './fedavg.ts';

/** Server hyperparameters of {@link FedOpt}, all resolved (no defaults at this level). */
export interface FedOptHyperparameters {
  /** Server learning rate η, > 0 and finite. */
  eta: number;
  /** First-moment decay β1, in [0, 1). */
  beta1: number;
  /** Second-moment decay β2, in [0, 1) (unused by FedAdagrad). */
  beta2: number;
  /** Adaptivity τ, > 0 and finite: added to √v_t, and v_{−1} = τ². */
  tau: number;
}

/** One per-tensor array of a {@link StrategyState}: the tensor's name and its values as plain numbers. */
export type StateTensor = { name: string; data: number[] };

/**
 * {@link StrategyState} of {@link FedOpt} (FedAdam, FedYogi, FedAdagrad), part of the checkpoint:
 * - `strategy`: the strategy's name (`fedadam`, `fedyogi`, `fedadagrad`), checked by `setState`;
 * - `steps`: server steps taken so far (rounds that produced a new model);
 * - `m`, `v`: the first and second moments m_{t}, v_{t}, one {@link StateTensor} per model tensor
 *   in model order (float64 values), or both `null` before the first step.
 */
export type FedOptState = { strategy: string; steps: number; m: StateTensor[] | null; v: StateTensor[] | null };

/**
 * m ← β1·m + (1 − β1)·Δ in place (Reddi et al. 2021, arXiv:2003.00295, Algorithm 2).
 * @param m first moment of one tensor (float64, updated in place).
 * @param delta the pseudo-gradient Δ_t of the same tensor, same length.
 */
export function updateFirstMoment(m: Float64Array, delta: Float32Array, beta1: number): void {
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
 * Base of the adaptive federated optimizers of Reddi et al. 2021 ("Adaptive Federated
 * Optimization", ICLR 2021, arXiv:2003.00295, Algorithm 2): the round's pseudo-gradient Δ_t is
 * the numExamples-weighted mean of the node deltas (folded by {@link MeanAggregate}, as FedAvg),
 * and the server applies
 *
 *   m_t = β1·m_{t−1} + (1 − β1)·Δ_t,   v_t = (rule of the subclass),
 *   x_{t+1} = x_t + η·m_t / (√v_t + τ),
 *
 * with m_{−1} = 0 and v_{−1} = τ² (the paper's initialisation "v_{−1} ≥ τ²"; Flower starts from
 * v = 0 instead, which differs only by τ² in the first rounds). No Adam bias correction, as in the
 * paper (Flower's FedAdam adds one). The client learning rate η_l of the paper is
 * `fitConfig.learningRate`.
 *
 * Node sampling and the fit config are FedAvg's ({@link FedAvg.configureFit}). State (m, v) is
 * kept in float64, one array per model tensor (O(model) memory), and is part of the checkpoint
 * through {@link getState} / {@link setState}.
 */
export abstract class FedOpt implements Strategy {
  /** Name used by `--strategy`, also stored in the state. */
  abstract readonly name: string;
  /** Server learning rate η. */
  readonly eta: number;
  /** First-moment decay β1. */
  readonly beta1: number;
  /** Second-moment decay β2. */
  readonly beta2: number;
  /** Adaptivity τ. */
  readonly tau: number;
  private readonly fedavg: FedAvg;
  private names: string[] = [];
  private m: Float64Array[] | null = null;
  private v: Float64Array[] | null = null;
  private steps = 0;

  /**
   * @throws RangeError on a bad `fractionFit` / `minFitNodes` (as {@link FedAvg}), or when η or τ
   * is not a positive finite number, or β1 or β2 is outside [0, 1).
   */
  protected constructor(opts: FedAvgOptions, hp: FedOptHyperparameters) {
    this.fedavg = new FedAvg(opts);
    if (!(hp.eta > 0 && Number.isFinite(hp.eta))) throw new RangeError(`eta must be a positive finite number, got ${hp.eta}`);
    if (!(hp.beta1 >= 0 && hp.beta1 < 1)) throw new RangeError(`beta1 must be in [0, 1), got ${hp.beta1}`);
    if (!(hp.beta2 >= 0 && hp.beta2 < 1)) throw new RangeError(`beta2 must be in [0, 1), got ${hp.beta2}`);
    if (!(hp.tau > 0 && Number.isFinite(hp.tau))) throw new RangeError(`tau must be a positive finite number, got ${hp.tau}`);
    this.eta = hp.eta;
    this.beta1 = hp.beta1;
    this.beta2 = hp.beta2;
    this.tau = hp.tau;
  }

  /**
   * The second-moment rule v_{t−1} → v_t of one tensor, in place.
   * @param v v_{t−1} on entry, v_t on return (float64).
   * @param delta Δ_t of the same tensor.
   */
  protected abstract updateSecondMoment(v: Float64Array, delta: Float32Array): void;

  /** FedAvg's sampling: max(⌈C·K⌉, minFitNodes) distinct nodes of the K available (all when fewer). */
  configureFit(round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    return this.fedavg.configureFit(round, available, rng);
  }

  /** A numExamples-weighted running mean of the round's deltas ({@link MeanAggregate}). */
  beginRound(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new MeanAggregate(global);
  }

  /**
   * One server optimizer step with Δ_t = the round's weighted mean delta, or `null` (model and
   * state unchanged) when no update was accepted.
   * @returns new float32 tensors with the names and shapes of `global`.
   * @throws RangeError when the state (restored or from earlier rounds) does not match the
   * model's tensor names and sizes.
   */
  aggregateFit(_round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): NamedTensor[] | null {
    if (aggregate.count === 0) return null;
    const delta = aggregate.sum.mean();
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
      return { name: g.name, shape: [...g.shape], data: adaptiveStep(g.data, m[t], v[t], this.eta, this.tau) };
    });
    this.steps++;
    return next;
  }

  /** A copy of the moments, as documented in {@link FedOptState}. */
  getState(): FedOptState {
    return {
      strategy: this.name,
      steps: this.steps,
      m: this.m === null ? null : tensorsToState(this.names, this.m),
      v: this.v === null ? null : tensorsToState(this.names, this.v),
    };
  }

  /**
   * Restores a {@link FedOptState}; its tensors are checked against the model at the next
   * {@link aggregateFit}.
   * @throws TypeError when `state` is not a {@link FedOptState} of this strategy's name, or `m`
   * and `v` do not have the same tensors.
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

/** Per-tensor arrays as {@link StateTensor}s (a copy, plain numbers). */
export function tensorsToState(names: readonly string[], arrays: readonly Float64Array[]): StateTensor[] {
  return arrays.map((a, t) => ({ name: names[t], data: Array.from(a) }));
}

/**
 * Parses a `StateTensor[] | null` field of a {@link StrategyState}.
 * @param what the field, for error messages.
 * @returns `null` for `null`, else the names and float64 copies of the values.
 * @throws TypeError when the field is missing or malformed (not an array of `{name, data}` with
 * finite numbers).
 */
export function tensorsFromState(value: JsonValue | undefined, what: string): { names: string[]; arrays: Float64Array[] } | null {
  if (value === null) return null;
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of {name, data} or null`);
  const names: string[] = [];
  const arrays: Float64Array[] = [];
  for (const t of value) {
    if (t === null || typeof t !== 'object' || Array.isArray(t) || typeof t.name !== 'string' || !Array.isArray(t.data)) {
      throw new TypeError(`${what} must be an array of {name, data} or null`);
    }
    const data = t.data;
    const a = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const x = data[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new TypeError(`${what}: tensor ${t.name} has a non-finite value at ${i}`);
      a[i] = x;
    }
    names.push(t.name);
    arrays.push(a);
  }
  return { names, arrays };
}

/**
 * Checks that per-tensor state arrays fit the model: same tensor count, names and sizes, in order.
 * @throws RangeError otherwise (for example a checkpoint of another model).
 */
export function checkStateMatchesModel(names: readonly string[], arrays: readonly Float64Array[], global: readonly NamedTensor[]): void {
  const ok = arrays.length === global.length && global.every((g, t) => g.name === names[t] && g.data.length === arrays[t].length);
  if (!ok) {
    const have = arrays.map((a, t) => `${names[t]}[${a.length}]`).join(', ');
    const want = global.map((g) => `${g.name}[${g.data.length}]`).join(', ');
    throw new RangeError(`strategy state has tensors (${have}) but the model has (${want})`);
  }
}

/**
 * Checks the `strategy` field of a state.
 * @throws TypeError when `state` is not an object or its `strategy` is not `name`.
 */
export function checkStateName(state: StrategyState, name: string): void {
  if (state === null || typeof state !== 'object' || Array.isArray(state)) throw new TypeError(`${name} state must be an object`);
  if (state.strategy !== name) throw new TypeError(`state is of strategy ${JSON.stringify(state.strategy)}, not ${name}`);
}
