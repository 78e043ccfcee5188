import type { FitConfig } from '@fedmq/protocol';
import { z } from 'zod';
import type { FitConfigContributor } from '../strategy.ts';
import { numberParam, type FitConfigDescriptor } from './descriptor.ts';

/**
 * Default proximal coefficient μ of {@link ProximalContributor}. Li et al. 2020 tune μ per dataset
 * from {0.001, 0.01, 0.1, 1}; 0.01 is a mild middle value. Flower's `FedProx(proximal_mu=…)` has
 * no useful default (required in `flwr.server.strategy`, 0.0 = FedAvg in `flwr.serverapp.strategy`),
 * so set it for your data when it matters.
 */
export const DEFAULT_PROXIMAL_MU = 0.01;

/** Options of {@link ProximalContributor}. */
export interface ProximalOptions {
  /**
   * Proximal coefficient μ (finite, ≥ 0; default {@link DEFAULT_PROXIMAL_MU}) sent to every
   * selected node as `config.proximalMu`; it overrides any `proximalMu` of the base fit config.
   * 0 makes the run plain FedAvg (the key is then left out of the config). Larger μ keeps local
   * models closer to the global one.
   */
  proximalMu?: number;
}

/**
 * FedProx's fit-config part (Li et al. 2020, "Federated Optimization in Heterogeneous Networks",
 * MLSys, arXiv:1812.06127, Algorithm 2): the nodes minimise F_k(w) + (μ/2)·‖w − w_global‖²
 * instead of F_k(w) (see `FitOptions.proximalMu` in `@fedmq/ml`); the server side is FedAvg's
 * (the `fedprox` preset is mean + sgd + proximal). This contributor only puts `proximalMu: μ` in
 * every round's fit config, like Flower's `FedProx`.
 *
 * Nodes must understand `proximalMu`: a node built before the field existed strips it from the
 * task while validating and silently trains plain FedAvg.
 */
export class ProximalContributor implements FitConfigContributor {
  readonly name = 'proximal';
  /** μ in use. */
  readonly proximalMu: number;

  /** @throws RangeError when `proximalMu` is negative or not finite. */
  constructor(opts: ProximalOptions = {}) {
    const mu = opts.proximalMu ?? DEFAULT_PROXIMAL_MU;
    if (!(typeof mu === 'number' && Number.isFinite(mu) && mu >= 0)) throw new RangeError(`proximalMu must be a finite number ≥ 0, got ${String(mu)}`);
    this.proximalMu = mu;
  }

  /**
   * `config` with `proximalMu` set to μ; with μ = 0 the key is left out instead (nodes read an
   * absent `proximalMu` as 0), so the task is exactly FedAvg's. `config` is not modified.
   */
  contribute(config: FitConfig): FitConfig {
    const { proximalMu: _ignored, ...rest } = config;
    return this.proximalMu > 0 ? { ...rest, proximalMu: this.proximalMu } : rest;
  }
}

const params = z.object({ proximalMu: numberParam.nonNegative().default(DEFAULT_PROXIMAL_MU) });

/** Descriptor of {@link ProximalContributor} (part of the `fedprox` preset). */
export const proximalDescriptor: FitConfigDescriptor<typeof params> = {
  kind: 'fitConfig',
  name: 'proximal',
  title: 'proximal term μ in the nodes\' local loss (FedProx)',
  paper: 'Li et al. 2020, arXiv:1812.06127',
  params,
  flags: [{ flag: '--proximal-mu <mu>', key: 'proximalMu', help: 'fedprox: proximal term μ ≥ 0 of the local loss (0 = FedAvg)' }],
  create: (p) => new ProximalContributor(p),
};
