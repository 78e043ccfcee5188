/**
 * Calibration: ε of a planned DP-FedAvg run, and the smallest noise multiplier that keeps a run
 * within a target (ε, δ) (docs/privacy.md, "Accounting"; `fedmq privacy epsilon|noise`).
 * dp_accounting's counterpart is `mechanism_calibration.calibrate_dp_mechanism` (a bracketed
 * bisection); this is a bisection on σ with the RDP accountant of accountant.ts.
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { RdpAccountant } from './accountant.ts';

function badConfig(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.BAD_CONFIG, message, details);
}

/** A planned run: `rounds` rounds, each node sampled with probability `q` (Poisson) each round. */
export interface RunPlan {
  /** Sampling probability per round, in (0, 1] (the run's `--fraction`). */
  q: number;
  /** Rounds, an integer ≥ 1 (one composition per round). */
  rounds: number;
  /** δ, in (0, 1). */
  delta: number;
  /** RDP orders; default dp_accounting's (DEFAULT_RDP_ORDERS). */
  orders?: readonly number[];
}

function checkPlan(p: RunPlan): void {
  if (!(p.q > 0 && p.q <= 1)) throw badConfig(`q must be in (0, 1], got ${p.q}`, { q: p.q });
  if (!Number.isInteger(p.rounds) || p.rounds < 1) throw badConfig(`rounds must be an integer ≥ 1, got ${p.rounds}`, { rounds: p.rounds });
  if (!(p.delta > 0 && p.delta < 1)) throw badConfig(`delta must be in (0, 1), got ${p.delta}`, { delta: p.delta });
}

/**
 * ε(δ) after `rounds` rounds of the Poisson-subsampled Gaussian with noise multiplier σ.
 *
 * @returns ε in nats (+∞ for σ = 0).
 * @throws FedmqError FEDMQ_BAD_CONFIG on q ∉ (0, 1], rounds not an integer ≥ 1, δ ∉ (0, 1), or
 *   σ negative or not a finite number.
 */
export function epsilonFor(plan: RunPlan & { noiseMultiplier: number }): number {
  checkPlan(plan);
  if (!(plan.noiseMultiplier >= 0 && Number.isFinite(plan.noiseMultiplier))) throw badConfig(`noise multiplier must be a finite number ≥ 0, got ${plan.noiseMultiplier}`, { noiseMultiplier: plan.noiseMultiplier });
  return new RdpAccountant({ orders: plan.orders }).compose(plan.q, plan.noiseMultiplier, plan.rounds).epsilon(plan.delta);
}

/** The largest noise multiplier {@link noiseMultiplierFor} searches up to. */
export const MAX_NOISE_MULTIPLIER = 1e6;

/**
 * The smallest noise multiplier σ such that `rounds` rounds with sampling probability `q` are
 * (targetEpsilon, delta)-DP by the RDP accountant: a bracket by doubling/halving from σ = 1, then
 * bisection until the bracket is narrower than `relativeTolerance`·σ. The σ returned always meets
 * the target (it is the bracket's upper end); ε(σ) decreases in σ, so any σ below it by more than
 * the tolerance does not.
 *
 * @param plan.targetEpsilon target ε > 0, in nats.
 * @param plan.relativeTolerance default 1e-6.
 * @returns σ > 0.
 * @throws FedmqError FEDMQ_BAD_CONFIG on invalid input (as {@link epsilonFor}; targetEpsilon not
 *   a finite number > 0; a tolerance outside (0, 0.1]) or an impossible target: one that needs
 *   σ > {@link MAX_NOISE_MULTIPLIER}.
 */
export function noiseMultiplierFor(plan: RunPlan & { targetEpsilon: number; relativeTolerance?: number }): number {
  checkPlan(plan);
  const target = plan.targetEpsilon;
  if (!(target > 0 && Number.isFinite(target))) throw badConfig(`target epsilon must be a finite number > 0, got ${target}`, { targetEpsilon: target });
  const tol = plan.relativeTolerance ?? 1e-6;
  if (!(tol > 0 && tol <= 0.1)) throw badConfig(`relative tolerance must be in (0, 0.1], got ${tol}`);
  const fits = (sigma: number) => epsilonFor({ ...plan, noiseMultiplier: sigma }) <= target;

  let lo: number;
  let hi: number;
  if (fits(1)) {
    hi = 1;
    lo = 0.5;
    // ε → ∞ as σ → 0, so this ends; 2^-60 is far below any σ a run would use
    while (fits(lo)) {
      hi = lo;
      lo /= 2;
      if (lo < 2 ** -60) return hi;
    }
  } else {
    lo = 1;
    hi = 2;
    while (!fits(hi)) {
      lo = hi;
      hi *= 2;
      if (hi > MAX_NOISE_MULTIPLIER) {
        throw badConfig(`no noise multiplier up to ${MAX_NOISE_MULTIPLIER} reaches ε = ${target} at δ = ${plan.delta} in ${plan.rounds} rounds with q = ${plan.q}`, {
          targetEpsilon: target, delta: plan.delta, rounds: plan.rounds, q: plan.q,
        });
      }
    }
  }
  while (hi - lo > tol * hi) {
    const mid = (lo + hi) / 2;
    if (fits(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}
