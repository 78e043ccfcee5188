import { pino, type Logger } from 'pino';
import { z } from 'zod';
import type { FitFailure } from '../strategy.ts';
import { CollectingAggregator, checkVectors, type CollectAggregate } from './collect.ts';
import { numberParam, type AggregatorDescriptor } from './descriptor.ts';

/**
 * Krum scores and Multi-Krum selection (Blanchard et al. 2017, "Machine Learning with
 * Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS, Section 4): the score of vector i is
 * Σ ‖V_i − V_j‖² over its n − f − 2 nearest other vectors j (squared L2, float64); the m vectors
 * of lowest score are selected (ties broken by index). m = 1 is Krum.
 *
 * Guarantee checked by the tests: with n ≥ 2f + 3 and m ≤ n − f, each selected vector is within
 * √(n − f − 2) · D of some honest vector, D the honest vectors' L2 diameter, whatever the f others.
 *
 * @param vectors n vectors of one length.
 * @param f assumed number of Byzantine vectors, integer ≥ 0.
 * @param m vectors to select, integer in [1, n − f].
 * @returns indices into `vectors` of the m selected, best score first.
 * @throws RangeError when `vectors` is empty or lengths differ, f is not an integer ≥ 0,
 *   n < 2f + 3, or m is not an integer in [1, n − f].
 */
export function krumSelect(vectors: readonly ArrayLike<number>[], f: number, m: number): number[] {
  const d = checkVectors(vectors);
  const n = vectors.length;
  checkKrumF(f);
  if (n < 2 * f + 3) throw new RangeError(`Krum needs n ≥ 2f + 3 vectors: n = ${n}, f = ${f} (need ${2 * f + 3})`);
  if (!(Number.isInteger(m) && m >= 1 && m <= n - f)) throw new RangeError(`m must be an integer in [1, n − f] = [1, ${n - f}], got ${m}`);
  const dist = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = vectors[i];
    for (let j = i + 1; j < n; j++) {
      const b = vectors[j];
      let s = 0;
      for (let c = 0; c < d; c++) {
        const x = a[c] - b[c];
        s += x * x;
      }
      dist[i * n + j] = s;
      dist[j * n + i] = s;
    }
  }
  const near = n - f - 2;
  const scores = new Float64Array(n);
  const row = new Float64Array(n - 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0, r = 0; j < n; j++) if (j !== i) row[r++] = dist[i * n + j];
    row.sort();
    let s = 0;
    for (let r = 0; r < near; r++) s += row[r];
    scores[i] = s;
  }
  return [...scores.keys()].sort((a, b) => scores[a] - scores[b] || a - b).slice(0, m);
}

function checkKrumF(f: number): void {
  if (!(Number.isInteger(f) && f >= 0)) throw new RangeError(`krumF must be an integer ≥ 0, got ${f}`);
}

/** Options of {@link KrumAggregator}. */
export interface KrumOptions {
  /** f, the number of Byzantine updates tolerated per round, integer ≥ 0. */
  krumF: number;
  /**
   * The strategy's minFitNodes, checked to be ≥ 2f + 3 when given (a round of fewer updates is
   * refused anyway, so a smaller minFitNodes is a configuration error).
   */
  minFitNodes?: number;
  /** Where refused rounds are reported (warn, with `{round, received, krumF, required}`). Default: a silent pino logger. */
  logger?: Logger;
}

/** Options of {@link MultiKrumAggregator}. */
export interface MultiKrumOptions extends KrumOptions {
  /**
   * m, the number of best-scored updates averaged, integer ≥ 1. Default: n − f of the round
   * (n = updates received). Capped at n − f in a round where fewer updates arrived.
   */
  multiKrumM?: number;
}

/**
 * Multi-Krum aggregation (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine
 * Tolerant Gradient Descent", NeurIPS, Sections 4 and 5): the step is the unweighted mean of the
 * m deltas of lowest Krum score (see {@link krumSelect}), float64. Unweighted as in the paper
 * (numExamples weights would let one node claim a huge n_k).
 *
 * Refusal: the constructor throws when minFitNodes is given and < 2f + 3. A round where fewer
 * than 2f + 3 updates actually arrived (timeouts, rejected updates) cannot be aggregated safely:
 * `finish` then returns `null` (the global model is kept) and logs the reason at warn level on
 * `logger`; it does not throw, so the run continues. Memory O(n × model), see
 * {@link CollectAggregate}; time O(n² × model) per round.
 */
export class MultiKrumAggregator extends CollectingAggregator {
  readonly name: string = 'multi-krum';
  /** f in use. */
  readonly krumF: number;
  /** m in use, or undefined for n − f of each round. */
  readonly multiKrumM: number | undefined;
  private readonly log: Logger;

  /**
   * @throws RangeError when `krumF` is not an integer ≥ 0, `minFitNodes` < 2·krumF + 3, or
   *   `multiKrumM` is given and not an integer ≥ 1.
   */
  constructor(opts: MultiKrumOptions) {
    super();
    checkKrumF(opts.krumF);
    this.krumF = opts.krumF;
    if (opts.minFitNodes !== undefined && opts.minFitNodes < 2 * opts.krumF + 3) {
      throw new RangeError(`Krum needs n ≥ 2f + 3: minFitNodes = ${opts.minFitNodes} < ${2 * opts.krumF + 3} for --krum-f ${opts.krumF}`);
    }
    if (opts.multiKrumM !== undefined && !(Number.isInteger(opts.multiKrumM) && opts.multiKrumM >= 1)) {
      throw new RangeError(`multiKrumM must be an integer ≥ 1, got ${opts.multiKrumM}`);
    }
    this.multiKrumM = opts.multiKrumM;
    this.log = opts.logger ?? pino({ level: 'silent' });
  }

  /** Mean of the m selected deltas, or `null` (logged) when fewer than 2f + 3 arrived. */
  protected combine(aggregate: CollectAggregate, round: number, _failures: readonly FitFailure[]): Float64Array | null {
    const n = aggregate.count;
    const f = this.krumF;
    if (n < 2 * f + 3) {
      this.log.warn({ round, received: n, krumF: f, required: 2 * f + 3 }, `${this.name}: fewer than 2f + 3 updates; global model unchanged`);
      return null;
    }
    const m = Math.min(this.multiKrumM ?? n - f, n - f);
    const vs = aggregate.vectors;
    const picked = krumSelect(vs, f, m);
    const out = new Float64Array(aggregate.size);
    for (const k of picked) {
      const v = vs[k];
      for (let i = 0; i < out.length; i++) out[i] += v[i];
    }
    for (let i = 0; i < out.length; i++) out[i] /= m;
    return out;
  }
}

/**
 * Krum aggregation (Blanchard et al. 2017, "Machine Learning with Adversaries: Byzantine Tolerant
 * Gradient Descent", NeurIPS, Section 4): the step is the single delta of lowest Krum score.
 * {@link MultiKrumAggregator} with m = 1; same refusal rules.
 */
export class KrumAggregator extends MultiKrumAggregator {
  override readonly name: string = 'krum';

  /** @throws RangeError as {@link MultiKrumAggregator}. */
  constructor(opts: KrumOptions) {
    super({ ...opts, multiKrumM: 1 });
  }
}

/** `--krum-f`, shared by Krum and Multi-Krum (required: no default). */
export const KRUM_F_FLAG = { flag: '--krum-f <f>', key: 'krumF', help: 'krum/multi-krum: f, Byzantine updates tolerated per round (needs minFitNodes ≥ 2f + 3)' } as const;

const params = z.object({ krumF: numberParam.integer(0) });

/** Descriptor of {@link KrumAggregator} (`--aggregator krum`); `--krum-f` is required. */
export const krumDescriptor: AggregatorDescriptor<typeof params> = {
  kind: 'aggregator',
  name: 'krum',
  title: 'Krum (the single best-scored update)',
  paper: 'Blanchard et al. 2017, "Machine Learning with Adversaries", NeurIPS',
  streaming: false,
  params,
  flags: [KRUM_F_FLAG],
  create: (p, ctx) => new KrumAggregator({ krumF: p.krumF, minFitNodes: ctx.minFitNodes, logger: ctx.logger }),
};
