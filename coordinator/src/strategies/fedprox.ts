import type { FitConfig, NamedTensor } from '@fedmq/protocol';
import type { FitFailure, RoundAggregate, Strategy } from '../strategy.ts';
import { FedAvg, type FedAvgOptions } from './fedavg.ts';

/**
 * Default proximal coefficient μ of {@link FedProx}. Li et al. 2020 tune μ per dataset from
 * {0.001, 0.01, 0.1, 1}; 0.01 is a mild middle value. Flower's `FedProx(proximal_mu=…)` has no
 * useful default (required in `flwr.server.strategy`, 0.0 = FedAvg in `flwr.serverapp.strategy`),
 * so set it for your data when it matters.
 */
export const DEFAULT_PROXIMAL_MU = 0.01;

/** Options of {@link FedProx}: those of FedAvg plus the proximal coefficient. */
export interface FedProxOptions extends FedAvgOptions {
  /**
   * Proximal coefficient μ (finite, ≥ 0; default {@link DEFAULT_PROXIMAL_MU}) sent to every
   * selected node as `config.proximalMu`; it overrides any `fitConfig.proximalMu`. 0 makes the
   * run plain FedAvg (the key is then left out of the config). Larger μ keeps local models closer
   * to the global one.
   */
  proximalMu?: number;
}

/**
 * FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", MLSys,
 * arXiv:1812.06127, Algorithm 2): node sampling and aggregation are exactly {@link FedAvg}'s
 * (w + Σ_k (n_k/n) Δ_k); the difference is on the nodes, which minimise
 * F_k(w) + (μ/2)·‖w − w_global‖² instead of F_k(w) (see `FitOptions.proximalMu` in `@fedmq/ml`).
 * The strategy only puts `proximalMu: μ` in every round's fit config, like Flower's `FedProx`.
 *
 * Nodes must understand `proximalMu`: a node built before the field existed strips it from the
 * task while validating and silently trains plain FedAvg.
 */
export class FedProx implements Strategy {
  readonly name = 'fedprox';
  /** μ in use. */
  readonly proximalMu: number;
  private readonly fedavg: FedAvg;

  /** @throws RangeError when `proximalMu` is negative or not finite, or on an invalid FedAvg option. */
  constructor(opts: FedProxOptions) {
    const mu = opts.proximalMu ?? DEFAULT_PROXIMAL_MU;
    if (!(typeof mu === 'number' && Number.isFinite(mu) && mu >= 0)) throw new RangeError(`proximalMu must be a finite number ≥ 0, got ${String(mu)}`);
    this.proximalMu = mu;
    this.fedavg = new FedAvg({ fractionFit: opts.fractionFit, minFitNodes: opts.minFitNodes, fitConfig: opts.fitConfig });
  }

  /**
   * FedAvg's selection; the config is `fitConfig` with `proximalMu` set to μ. With μ = 0 the key
   * is left out instead (nodes read an absent `proximalMu` as 0), so the task is exactly FedAvg's.
   */
  configureFit(round: number, available: readonly string[], rng: () => number): { selected: string[]; config: FitConfig } {
    const { selected, config } = this.fedavg.configureFit(round, available, rng);
    const { proximalMu: _ignored, ...rest } = config;
    return { selected, config: this.proximalMu > 0 ? { ...rest, proximalMu: this.proximalMu } : rest };
  }

  /** FedAvg's numExamples-weighted running mean. */
  beginRound(round: number, global: readonly NamedTensor[]): RoundAggregate {
    return this.fedavg.beginRound(round, global);
  }

  /** FedAvg's w + Σ_k (n_k/n) Δ_k, or `null` when no update arrived. */
  aggregateFit(round: number, global: readonly NamedTensor[], aggregate: RoundAggregate, failures: readonly FitFailure[]): NamedTensor[] | null {
    return this.fedavg.aggregateFit(round, global, aggregate, failures);
  }
}
