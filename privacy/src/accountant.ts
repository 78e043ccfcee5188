/**
 * The RDP privacy accountant a DP run keeps (docs/privacy.md, "Accounting"): one RDP value per
 * order, summed over the run's rounds, converted to (ε, δ) on demand; serialisable into the
 * coordinator's checkpoint so that a resumed run continues the same ε exactly. It mirrors
 * dp_accounting's `RdpAccountant` (rdp/rdp_privacy_accountant.py) for the events fedmq needs.
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { computeDelta, computeEpsilon, type DeltaAndOrder, type EpsilonAndOrder } from './convert.ts';
import { DEFAULT_RDP_ORDERS, rdpPoissonSubsampledGaussian, rdpSampledWithoutReplacementGaussian } from './rdp.ts';

/**
 * Which datasets are neighbours. `add-remove`: one differs from the other by one record (one
 * node's data) added or removed — the relation of Poisson sampling. `replace-one`: same size, one
 * record replaced — the relation of fixed-size sampling without replacement (n public).
 * dp_accounting's ADD_OR_REMOVE_ONE and REPLACE_ONE.
 */
export type NeighboringRelation = 'add-remove' | 'replace-one';

/** JSON form of an {@link RdpAccountant} (checkpointable; non-finite numbers as strings). */
export interface RdpAccountantState {
  version: 1;
  neighboring: NeighboringRelation;
  /** The orders; `"Infinity"` for +∞. */
  orders: (number | 'Infinity')[];
  /** The summed RDP at each order; `"Infinity"` for +∞. */
  rdp: (number | 'Infinity')[];
  /** Mechanism steps composed so far (information only). */
  steps: number;
}

function badConfig(message: string, details: Record<string, unknown> = {}): FedmqError {
  return new FedmqError(ErrorCodes.BAD_CONFIG, message, details);
}

function checkSteps(steps: number): void {
  if (!Number.isInteger(steps) || steps < 0) throw badConfig(`steps must be an integer ≥ 0, got ${steps}`, { steps });
}

const encode = (x: number): number | 'Infinity' => (x === Infinity ? 'Infinity' : x);

function decode(x: unknown, what: string): number {
  if (x === 'Infinity') return Infinity;
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new FedmqError(ErrorCodes.CHECKPOINT, `accountant state: ${what} must be a number or "Infinity"`, { value: x });
  return x;
}

/**
 * An RDP accountant: `orders` fixed at construction, RDP summed by composition (Mironov 2017,
 * Proposition 1). Rounds of DP-FedAvg with Poisson sampling of nodes with probability q and noise
 * multiplier σ are composed with `compose(q, σ)`; `epsilon(δ)` is then the run's ε so far.
 *
 * @example
 *   const acc = new RdpAccountant();
 *   acc.compose(0.1, 1.1);             // one round: q = 0.1, σ = 1.1
 *   acc.epsilon(1e-5);                 // ε after that round
 *   const saved = acc.toJSON();        // into the checkpoint
 *   RdpAccountant.fromJSON(saved).compose(0.1, 1.1).epsilon(1e-5); // the same as continuing acc
 */
export class RdpAccountant {
  /** The RDP orders α (dp_accounting's defaults unless given). */
  readonly orders: readonly number[];
  /** The neighbouring relation every composed event must be analysed under. */
  readonly neighboring: NeighboringRelation;
  #rdp: Float64Array;
  #steps = 0;

  /**
   * @param options.orders RDP orders, each ≥ 1 (+∞ allowed); default {@link DEFAULT_RDP_ORDERS}.
   * @param options.neighboring default `add-remove` (Poisson sampling).
   * @throws FedmqError FEDMQ_BAD_CONFIG on no orders, or an order < 1 or NaN.
   */
  constructor(options: { orders?: readonly number[]; neighboring?: NeighboringRelation } = {}) {
    const orders = options.orders ?? DEFAULT_RDP_ORDERS;
    if (orders.length === 0) throw badConfig('an RDP accountant needs at least one order');
    for (const a of orders) if (!(a >= 1)) throw badConfig(`RDP orders must be ≥ 1, got ${a}`, { order: a });
    const neighboring = options.neighboring ?? 'add-remove';
    if (neighboring !== 'add-remove' && neighboring !== 'replace-one') throw badConfig(`unknown neighbouring relation ${String(neighboring)}`);
    this.orders = Object.freeze([...orders]);
    this.neighboring = neighboring;
    this.#rdp = new Float64Array(orders.length);
  }

  /** The summed RDP at each order (a copy), in nats. */
  get rdp(): number[] {
    return [...this.#rdp];
  }

  /** Mechanism steps composed so far. */
  get steps(): number {
    return this.#steps;
  }

  /**
   * Composes `steps` rounds of the Poisson-subsampled Gaussian mechanism: each record included
   * independently with probability `q`, the sum of the included records' clipped values released
   * with noise multiplier `noiseMultiplier` ({@link rdpPoissonSubsampledGaussian}). A round that
   * releases several noisy sums of the same cohort (adaptive clipping's clipped-count bits) is one
   * call with {@link effectiveNoiseMultiplier} of their multipliers; two calls would treat the
   * releases as independently sampled, which they are not.
   *
   * @returns this.
   * @throws FedmqError FEDMQ_BAD_CONFIG on q ∉ [0, 1], σ < 0, steps not an integer ≥ 0, or a
   *   `replace-one` accountant (dp_accounting supports Poisson sampling only under add/remove).
   */
  compose(q: number, noiseMultiplier: number, steps = 1): this {
    checkSteps(steps);
    if (this.neighboring !== 'add-remove') throw badConfig('Poisson-sampled events need an add-remove accountant (dp_accounting: ADD_OR_REMOVE_ONE)');
    return this.composeRdp(rdpPoissonSubsampledGaussian(q, noiseMultiplier, this.orders), steps);
  }

  /**
   * Composes `steps` rounds of the Gaussian mechanism on a fixed-size cohort of m = q·n of n
   * records drawn without replacement ({@link rdpSampledWithoutReplacementGaussian}).
   *
   * @returns this.
   * @throws FedmqError FEDMQ_BAD_CONFIG as {@link compose}, or on an `add-remove` accountant
   *   (dp_accounting supports sampling without replacement only under REPLACE_ONE).
   */
  composeSampledWithoutReplacement(q: number, noiseMultiplier: number, steps = 1): this {
    checkSteps(steps);
    if (this.neighboring !== 'replace-one') throw badConfig('sampling without replacement needs a replace-one accountant (dp_accounting: REPLACE_ONE)');
    return this.composeRdp(rdpSampledWithoutReplacementGaussian(q, noiseMultiplier, this.orders), steps);
  }

  /**
   * Composes `steps` times a mechanism given by its RDP at this accountant's orders (same length
   * and order as `orders`), analysed under this accountant's neighbouring relation.
   *
   * @returns this.
   * @throws FedmqError FEDMQ_BAD_CONFIG on a length mismatch, a NaN or negative RDP, or steps not an
   *   integer ≥ 0.
   */
  composeRdp(rdp: readonly number[], steps = 1): this {
    checkSteps(steps);
    if (rdp.length !== this.orders.length) throw badConfig(`rdp has ${rdp.length} values for ${this.orders.length} orders`);
    for (const r of rdp) if (!(r >= 0)) throw badConfig(`RDP must be ≥ 0, got ${r}`);
    if (steps === 0) return this;
    for (let i = 0; i < rdp.length; i++) this.#rdp[i] += steps * rdp[i];
    this.#steps += steps;
    return this;
  }

  /** ε(δ) of everything composed so far, with the optimal order ({@link computeEpsilon}). */
  epsilonAndOrder(delta: number): EpsilonAndOrder {
    return computeEpsilon(this.orders, this.rdp, delta);
  }

  /**
   * ε(δ) of everything composed so far, in nats (0 before any composition).
   * @throws FedmqError FEDMQ_BAD_CONFIG for δ outside [0, 1].
   */
  epsilon(delta: number): number {
    return this.epsilonAndOrder(delta).epsilon;
  }

  /** δ(ε) of everything composed so far, with the optimal order ({@link computeDelta}). */
  deltaAndOrder(epsilon: number): DeltaAndOrder {
    return computeDelta(this.orders, this.rdp, epsilon);
  }

  /**
   * δ(ε) of everything composed so far.
   * @throws FedmqError FEDMQ_BAD_CONFIG for ε negative or NaN.
   */
  delta(epsilon: number): number {
    return this.deltaAndOrder(epsilon).delta;
  }

  /** A copy that composes independently of this one. */
  clone(): RdpAccountant {
    return RdpAccountant.fromJSON(this.toJSON());
  }

  /** The state as plain JSON (exact: JSON numbers round-trip doubles). */
  toJSON(): RdpAccountantState {
    return { version: 1, neighboring: this.neighboring, orders: this.orders.map(encode), rdp: [...this.#rdp].map(encode), steps: this.#steps };
  }

  /**
   * The accountant a {@link toJSON} state describes; it continues the same ε exactly.
   * @throws FedmqError FEDMQ_CHECKPOINT on a state that is not one (another version, lengths that
   *   differ, values that are not numbers).
   */
  static fromJSON(state: RdpAccountantState): RdpAccountant {
    const s = state as Partial<RdpAccountantState> | null;
    if (!s || s.version !== 1) throw new FedmqError(ErrorCodes.CHECKPOINT, `accountant state: unsupported version ${String(s?.version)}`);
    if (!Array.isArray(s.orders) || !Array.isArray(s.rdp) || s.orders.length !== s.rdp.length) throw new FedmqError(ErrorCodes.CHECKPOINT, 'accountant state: orders and rdp must be arrays of the same length');
    if (!Number.isInteger(s.steps) || (s.steps as number) < 0) throw new FedmqError(ErrorCodes.CHECKPOINT, 'accountant state: steps must be an integer ≥ 0');
    let acc: RdpAccountant;
    try {
      acc = new RdpAccountant({ orders: s.orders.map((a) => decode(a, 'an order')), neighboring: s.neighboring });
    } catch (err) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `accountant state: ${(err as Error).message}`, {}, { cause: err });
    }
    const rdp = s.rdp.map((r) => decode(r, 'an RDP value'));
    if (rdp.some((r) => r < 0)) throw new FedmqError(ErrorCodes.CHECKPOINT, 'accountant state: RDP must be ≥ 0');
    acc.#rdp = Float64Array.from(rdp);
    acc.#steps = s.steps as number;
    return acc;
  }
}
