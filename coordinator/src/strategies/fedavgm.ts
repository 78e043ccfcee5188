import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import type { FitFailure, RoundAggregate, Strategy, StrategyState } from '../strategy.ts';
import { FedAvg, MeanAggregate, type FedAvgOptions } from './fedavg.ts';
import { checkStateMatchesModel, checkStateName, tensorsFromState, tensorsToState, type StateTensor } from './fedopt.ts';

/** Options of {@link FedAvgM}: FedAvg's plus the server optimizer (names as Flower's `FedAvgM`, camelCase). */
export interface FedAvgMOptions extends FedAvgOptions {
  /** Server learning rate η, > 0. Default 1.0. */
  serverLearningRate?: number;
  /** Server momentum β, in [0, 1). Default 0.9 (Flower's default is 0, which is plain FedAvg). */
  serverMomentum?: number;
}

/**
 * {@link StrategyState} of {@link FedAvgM}, part of the checkpoint: `strategy` is `'fedavgm'`;
 * `momentum` is the momentum buffer v_t, one {@link StateTensor} per model tensor in model order
 * (float64 values), or `null` before the first step.
 */
export type FedAvgMState = { strategy: string; momentum: StateTensor[] | null };

/**
 * v ← β·v + Δ in place, then x + η·v: one server SGD-with-momentum step of one tensor
 * (Hsu et al. 2019, arXiv:1909.06335, Section 3).
 * @param v momentum of the tensor (float64, updated in place).
 * @returns a new float32 array; `x` is not modified.
 */
export function momentumStep(x: Float32Array, v: Float64Array, delta: Float32Array, eta: number, beta: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < out.length; i++) {
    v[i] = beta * v[i] + delta[i];
    out[i] = x[i] + eta * v[i];
  }
  return out;
}

/**
 * Federated Averaging with server momentum (Hsu, Qi & Brown 2019, "Measuring the Effects of
 * Non-Identical Data Distribution for Federated Visual Classification", arXiv:1909.06335): with
 * Δ_t the round's numExamples-weighted mean delta (as FedAvg),
 *
 *   v_t = β·v_{t−1} + Δ_t,   x_{t+1} = x_t + η·v_t,   v_0 = 0,
 *
 * which is Flower's `FedAvgM` (PyTorch SGD momentum on the pseudo-gradient −Δ_t, no Nesterov)
 * with η = `serverLearningRate` and β = `serverMomentum`. With β = 0 and η = 1 it is FedAvg
 * exactly. Sampling and fit config are FedAvg's; the momentum (float64, one array per tensor,
 * O(model) memory) is part of the checkpoint via {@link getState} / {@link setState}.
 */
export class FedAvgM implements Strategy {
  readonly name = 'fedavgm';
  /** Server learning rate η. */
  readonly serverLearningRate: number;
  /** Server momentum β. */
  readonly serverMomentum: number;
  private readonly fedavg: FedAvg;
  private names: string[] = [];
  private momentum: Float64Array[] | null = null;

  /**
   * @throws RangeError on a bad `fractionFit` / `minFitNodes` (as {@link FedAvg}), when
   * `serverLearningRate` is not a positive finite number, or `serverMomentum` is outside [0, 1).
   */
  constructor(opts: FedAvgMOptions) {
    this.fedavg = new FedAvg(opts);
    const eta = opts.serverLearningRate ?? 1.0;
    const beta = opts.serverMomentum ?? 0.9;
    if (!(eta > 0 && Number.isFinite(eta))) throw new RangeError(`serverLearningRate must be a positive finite number, got ${eta}`);
    if (!(beta >= 0 && beta < 1)) throw new RangeError(`serverMomentum must be in [0, 1), got ${beta}`);
    this.serverLearningRate = eta;
    this.serverMomentum = beta;
  }

  /** FedAvg's sampling: max(⌈C·K⌉, minFitNodes) distinct nodes of the K available (all when fewer). */
  configureFit(round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    return this.fedavg.configureFit(round, available, rng);
  }

  /** A numExamples-weighted running mean of the round's deltas ({@link MeanAggregate}). */
  beginRound(_round: number, global: readonly NamedTensor[]): RoundAggregate {
    return new MeanAggregate(global);
  }

  /**
   * One momentum step with Δ_t = the round's weighted mean delta, or `null` (model and momentum
   * unchanged) when no update was accepted.
   * @returns new float32 tensors with the names and shapes of `global`.
   * @throws RangeError when the momentum (restored or from earlier rounds) does not match the
   * model's tensor names and sizes.
   */
  aggregateFit(_round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, _failures: readonly FitFailure[]): NamedTensor[] | null {
    if (aggregate.count === 0) return null;
    const delta = aggregate.sum.mean();
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
      data: momentumStep(g.data, v[t], delta[t].data, this.serverLearningRate, this.serverMomentum),
    }));
  }

  /** A copy of the momentum, as documented in {@link FedAvgMState}. */
  getState(): FedAvgMState {
    return { strategy: this.name, momentum: this.momentum === null ? null : tensorsToState(this.names, this.momentum) };
  }

  /**
   * Restores a {@link FedAvgMState}; its tensors are checked against the model at the next
   * {@link aggregateFit}.
   * @throws TypeError when `state` is not a {@link FedAvgMState} (wrong `strategy` or malformed `momentum`).
   */
  setState(state: StrategyState): void {
    checkStateName(state, this.name);
    const m = tensorsFromState(state.momentum, 'fedavgm state: momentum');
    this.names = m?.names ?? [];
    this.momentum = m?.arrays ?? null;
  }
}
