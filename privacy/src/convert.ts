/**
 * RDP → (ε, δ)-DP, as dp_accounting's `compute_epsilon` and `compute_delta`
 * (python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant.py of google/differential-privacy,
 * read at commit b5b0286e313b64a692abfc8c528d54ef47d960a0).
 *
 * An (α, ρ)-RDP mechanism is (ε, δ)-DP for
 *   ε = ρ + log((α − 1)/α) − (log δ + log α)/(α − 1)
 * (Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for Differential Privacy", arXiv:2004.00010
 * Proposition 12 (v4); also Asoodeh et al., arXiv:2001.05990 Eq. 20), an improvement on Mironov
 * 2017 Proposition 3 (ε = ρ + log(1/δ)/(α − 1)). The best order wins. dp_accounting uses it only
 * for α > 1.01 (it is numerically unstable as α → 1), and also the KL bound δ ≤ √(1 − e^(−ρ)) at
 * every order (ε = 0 when it already gives δ).
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

function badConfig(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.BAD_CONFIG, message, details);
}

function checkLists(orders: readonly number[], rdp: readonly number[]): void {
  if (orders.length !== rdp.length) throw badConfig(`orders and rdp must have the same length (${orders.length} ≠ ${rdp.length})`);
  if (orders.length === 0) throw badConfig('at least one RDP order is needed');
  for (let i = 0; i < orders.length; i++) {
    if (!(orders[i] >= 1)) throw badConfig(`Rényi divergence order must be at least 1, got ${orders[i]}`, { order: orders[i] });
    if (Number.isNaN(rdp[i])) throw badConfig(`RDP at order ${orders[i]} is NaN`, { order: orders[i] });
  }
}

/** The index of the first smallest value (numpy's argmin). */
function argmin(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] < values[best]) best = i;
  return best;
}

/** An ε with the RDP order that gives it. */
export interface EpsilonAndOrder {
  /** ε ≥ 0 in nats; +∞ when no order gives a finite bound. */
  epsilon: number;
  /** The order α at which the bound is attained (0 when δ = 0, as dp_accounting). */
  order: number;
}

/** A δ with the RDP order that gives it. */
export interface DeltaAndOrder {
  /** δ in [0, 1]. */
  delta: number;
  /** The order α at which the bound is attained. */
  order: number;
}

/**
 * The smallest ε such that a mechanism with RDP `rdp[i]` at `orders[i]` (for all i) is
 * (ε, δ)-DP, and its order (dp_accounting `compute_epsilon`, with its special cases: δ = 0 → ε = 0
 * when all RDP are 0, else ∞, order 0; a negative RDP — numerical trouble of an extreme mechanism —
 * gives ε = 0 at that order; δ² + expm1(−ρ) > 0 (the KL bound) gives 0; orders ≤ 1.01 give ∞
 * otherwise). At order +∞ (pure DP) the bound is its limit, ε = ρ (dp_accounting's formula gives
 * NaN there; its default orders do not include ∞).
 *
 * @param orders RDP orders, each ≥ 1 (may include +∞).
 * @param rdp RDP at each order, in nats (may include +∞).
 * @param delta δ in [0, 1].
 * @throws FedmqError FEDMQ_BAD_CONFIG on lists of different or zero length, an order < 1, a NaN
 *   RDP, or δ outside [0, 1].
 */
export function computeEpsilon(orders: readonly number[], rdp: readonly number[], delta: number): EpsilonAndOrder {
  if (!(delta >= 0 && delta <= 1)) throw badConfig(`delta must be in [0, 1], got ${delta}`, { delta });
  if (delta === 0) return { epsilon: rdp.every((r) => r === 0) ? 0 : Infinity, order: 0 };
  checkLists(orders, rdp);
  const eps = orders.map((a, i) => {
    const r = rdp[i];
    if (r < 0) return 0;
    if (delta ** 2 + Math.expm1(-r) > 0) return 0;
    if (a === Infinity) return r; // the limit α → ∞ of the bound below: pure ρ-DP (NaN in IEEE arithmetic otherwise)
    if (a > 1.01) return r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    return Infinity;
  });
  const best = argmin(eps);
  return { epsilon: Math.max(0, eps[best]), order: orders[best] };
}

/**
 * The smallest δ such that a mechanism with RDP `rdp[i]` at `orders[i]` is (ε, δ)-DP, and its order
 * (dp_accounting `compute_delta`): per order, the minimum of the KL bound √(1 − e^(−ρ)) and, for
 * α > 1.01, exp((α − 1)(ρ − ε + log(1 − 1/α)) − log α) (Canonne, Kamath, Steinke 2020,
 * Proposition 12); a negative RDP gives δ = 0 at that order; capped at 1.
 *
 * @param orders RDP orders, each ≥ 1.
 * @param rdp RDP at each order, in nats.
 * @param epsilon ε ≥ 0, in nats.
 * @throws FedmqError FEDMQ_BAD_CONFIG on lists of different or zero length, an order < 1, a NaN
 *   RDP, or ε negative or NaN.
 */
export function computeDelta(orders: readonly number[], rdp: readonly number[], epsilon: number): DeltaAndOrder {
  if (!(epsilon >= 0)) throw badConfig(`epsilon must be ≥ 0, got ${epsilon}`, { epsilon });
  checkLists(orders, rdp);
  const logDeltas = orders.map((a, i) => {
    const r = rdp[i];
    let logDelta: number;
    if (r < 0) return -Infinity;
    else if (r === 0) logDelta = -Infinity;
    else logDelta = 0.5 * Math.log1p(-Math.exp(-r));
    if (a === Infinity) {
      // the limit α → ∞ of the bound below: pure ρ-DP gives δ = 0 for ε ≥ ρ, nothing otherwise
      if (r <= epsilon) logDelta = -Infinity;
    } else if (a > 1.01) {
      // Python's min(logdelta, bound): the bound only when smaller (not when NaN, as for ρ = ε = ∞)
      const bound = (a - 1) * (r - epsilon + Math.log1p(-1 / a)) - Math.log(a);
      if (bound < logDelta) logDelta = bound;
    }
    return logDelta;
  });
  const best = argmin(logDeltas);
  return { delta: Math.min(Math.exp(logDeltas[best]), 1), order: orders[best] };
}
