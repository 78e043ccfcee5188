/**
 * ALIE, "A Little Is Enough" (Baruch, Baruch & Goldberg, NeurIPS 2019, arXiv:1902.06156,
 * Section 4 and Algorithm 1): colluding malicious nodes each train honestly, share their honest
 * deltas, and all send the same crafted delta μ_j − z·σ_j per coordinate j, where μ_j and σ_j are
 * the mean and standard deviation of the colluders' honest deltas. The shift is small (under one
 * standard deviation for typical n and f), so it stays among the honest updates where median,
 * trimmed mean and Krum look for them, and yet it moves the aggregate in the same direction every
 * round.
 *
 * In the simulator the colluders live in different worker threads: each posts its honest delta to
 * the main thread ({@link AlieColluder}, worker side), where an {@link AlieCollusion} waits for
 * every malicious node that received a fit task in the round (each announces itself when its task
 * arrives: a v2 node does not learn who else was selected), computes the crafted delta ({@link alieDelta}) and
 * sends it back to each of them.
 *
 * Single colluder: with one malicious node in a round σ = 0, so ALIE sends that node's honest
 * delta — the attack needs at least two colluders to do anything.
 */
import { ErrorCodes, FedmqError, type NamedTensor } from '@fedmq/protocol';
import type { FromWorker, ToWorker } from './protocol.ts';

// Acklam's rational approximation of the inverse normal CDF (P. J. Acklam, "An algorithm for
// computing the inverse normal cumulative distribution function", 2003; relative error < 1.15e-9).
const A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
const B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
const C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
const D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const P_LOW = 0.02425;

/**
 * Φ⁻¹(p), the quantile function of the standard normal distribution, by Acklam's algorithm
 * (relative error below 1.15·10⁻⁹ on (0, 1)). Φ⁻¹(0) = −∞, Φ⁻¹(1) = +∞.
 * @throws FedmqError FEDMQ_BAD_CONFIG when p is outside [0, 1] or NaN.
 */
export function inverseNormalCdf(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `a probability must be in [0, 1], got ${p}`);
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  if (p < P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1);
  }
  if (p > 1 - P_LOW) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q) / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1);
}

/**
 * ALIE's z for a round with `n` selected nodes of which `f` are malicious (Baruch et al. 2019,
 * Algorithm 1, lines 1–2): the colluders need s = ⌊n/2 + 1⌋ − f honest "supporters" for a
 * majority, and z_max = Φ⁻¹((n − s)/n) is the largest shift for which that many honest updates
 * are expected to lie further from the mean. E.g. n = 10, f = 2: s = 4, z = Φ⁻¹(0.6) ≈ 0.2533.
 *
 * Outside the paper's setting (f ≥ ⌊n/2 + 1⌋: the colluders are a majority and need no supporter)
 * s is taken as 1 and the probability as at least ½, so z stays finite and ≥ 0.
 * @throws FedmqError FEDMQ_BAD_CONFIG unless n ≥ 1 and 1 ≤ f ≤ n are integers.
 */
export function alieZ(n: number, f: number): number {
  if (!(Number.isInteger(n) && Number.isInteger(f) && n >= 1 && f >= 1 && f <= n)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `ALIE needs 1 ≤ f ≤ n malicious of n selected nodes, got f = ${f}, n = ${n}`);
  }
  const s = Math.max(1, Math.floor(n / 2 + 1) - f);
  return inverseNormalCdf(Math.max(0.5, (n - s) / n));
}

/**
 * The crafted ALIE delta (Baruch et al. 2019, Algorithm 1, lines 3–5) from the colluders' honest
 * deltas: per coordinate j, μ_j − z·σ_j, where μ_j is the (unweighted) mean and σ_j the sample
 * standard deviation (divisor k − 1, the unbiased estimate that public ALIE implementations take
 * with `torch.std`) over the k honest deltas; σ = 0 for k = 1, so a lone colluder sends its honest
 * delta. Computed in float64, returned as new float32 tensors with the names and shapes of the
 * first delta. The sign: the paper's argument bounds the shift symmetrically (any value within
 * z·σ of the mean is as inconspicuous); μ − zσ, as common implementations send, pushes each
 * coordinate against the colluders' mean step.
 * @throws FedmqError FEDMQ_BAD_CONFIG with no deltas, a non-finite z, or deltas whose tensor
 *   names or sizes differ.
 */
export function alieDelta(honest: readonly (readonly NamedTensor[])[], z: number): NamedTensor[] {
  const k = honest.length;
  if (k === 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'ALIE needs at least one honest delta');
  if (!Number.isFinite(z)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `ALIE's z must be finite, got ${z}`);
  return honest[0].map((t, ti) => {
    const cols = honest.map((d) => d[ti]);
    for (const c of cols) {
      if (!c || c.name !== t.name || c.data.length !== t.data.length) {
        throw new FedmqError(ErrorCodes.BAD_CONFIG, `ALIE: the colluders' deltas differ at tensor ${JSON.stringify(t.name)}`);
      }
    }
    const out = new Float32Array(t.data.length);
    for (let j = 0; j < out.length; j++) {
      let sum = 0;
      for (let i = 0; i < k; i++) sum += cols[i].data[j];
      const mean = sum / k;
      let ss = 0;
      for (let i = 0; i < k; i++) ss += (cols[i].data[j] - mean) ** 2;
      const sd = k > 1 ? Math.sqrt(ss / (k - 1)) : 0;
      out[j] = mean - z * sd;
    }
    return { name: t.name, shape: [...t.shape], data: out };
  });
}

/** One colluder's honest delta for a round, as a worker posts it to the main thread. */
export interface AlieSubmission {
  nodeId: string;
  /** The run and round of the task (rounds restart at 1 in a new run of the job). */
  runId: string;
  round: number;
  /** n: nodes sent a fit task in the round (the task's `cohort`); the colluders announced count when absent. */
  cohort?: number;
  /** The fit task's deadline (epoch ms) and duration (ms). */
  deadline: number;
  timeoutMs: number;
  delta: NamedTensor[];
}

/** What an {@link AlieCollusion} crafted for one round (its `onCrafted` hook). */
export interface AlieRound {
  runId: string;
  round: number;
  /** Nodes selected in the round, and how many of them are malicious. */
  n: number;
  f: number;
  z: number;
  /** Colluders that posted in time, their honest deltas (same order), and what each of them sends. */
  nodeIds: string[];
  honest: NamedTensor[][];
  crafted: NamedTensor[];
}

/** Options of {@link AlieCollusion}. */
export interface AlieCollusionOptions {
  /** Ids of the malicious nodes (all rounds). */
  malicious: ReadonlySet<string>;
  /** Overrides z (default {@link alieZ}(n, f) per round). */
  z?: number;
  /**
   * Share of the round's timeoutMs kept for encoding and publishing: the collusion answers once
   * every malicious node that announced a fit task has posted, or at `deadline − reserveFraction·timeoutMs` with
   * those that have (a colluder may drop out or fail). Default 0.1.
   */
  reserveFraction?: number;
  /**
   * How long after a round's first honest delta the collusion keeps listening for colluders that
   * announce a fit task of that round, ms (default 1000). A v2 node learns nothing of the others'
   * tasks, so a colluder whose task arrives a little later would otherwise be left out of the
   * round's crafted delta. 0 answers as soon as every colluder announced so far has posted.
   */
  settleMs?: number;
  /** Called with every crafted round, before its state is dropped (observability, tests). */
  onCrafted?: (r: AlieRound) => void;
}

interface PendingRound {
  n: number;
  /** When the first colluder posted, ms. */
  firstPostAt: number;
  settle?: ReturnType<typeof setTimeout>;
  expected: Set<string>;
  posted: Map<string, { delta: NamedTensor[]; reply: (delta: NamedTensor[]) => void }>;
  timer?: ReturnType<typeof setTimeout>;
}

/**
 * The simulator's ALIE collusion point (main thread). {@link announce} learns which malicious
 * nodes received a fit task in a round, {@link submit} collects their honest deltas; when all of
 * them have posted, or the wait ends (see {@link AlieCollusionOptions.reserveFraction}), it computes the crafted delta
 * from those that posted and replies to each. A round's state is dropped once answered, so memory
 * is O(f × model) for the open rounds only; a colluder posting after its round was answered gets
 * its honest delta back at once (as a lone colluder would).
 */
export class AlieCollusion {
  private readonly opts: AlieCollusionOptions;
  /** Colluders that announced a fit task, per round key. */
  private readonly announced = new Map<string, Set<string>>();
  private readonly open = new Map<string, PendingRound>();
  /** Keys of answered rounds, oldest first, bounded. */
  private readonly answered = new Set<string>();

  constructor(opts: AlieCollusionOptions) {
    if (opts.z !== undefined && !Number.isFinite(opts.z)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `ALIE's z must be finite, got ${opts.z}`);
    this.opts = opts;
  }

  /** Rounds waiting for colluders. */
  get pendingRounds(): number {
    return this.open.size;
  }

  /** A malicious node received a fit task of `runId`/`round`: the round waits for its delta too. */
  announce(a: { nodeId: string; runId: string; round: number }): void {
    const key = `${a.runId}/${a.round}`;
    if (this.answered.has(key) || !this.opts.malicious.has(a.nodeId)) return;
    const set = this.announced.get(key) ?? new Set<string>();
    set.add(a.nodeId);
    this.announced.set(key, set);
    this.open.get(key)?.expected.add(a.nodeId);
    if (this.announced.size > 64) this.announced.delete(this.announced.keys().next().value!);
  }

  /**
   * Takes one colluder's honest delta; `reply` is called exactly once with what it must send
   * (synchronously when it is the round's last expected colluder, else later). Throws nothing:
   * a malformed group (differing tensors) is answered with each node's own honest delta.
   */
  submit(s: AlieSubmission, reply: (delta: NamedTensor[]) => void): void {
    const key = `${s.runId}/${s.round}`;
    if (this.answered.has(key)) {
      reply(s.delta);
      return;
    }
    let r = this.open.get(key);
    if (!r) {
      const expected = new Set(this.announced.get(key) ?? []);
      expected.add(s.nodeId);
      r = { n: s.cohort ?? expected.size, firstPostAt: Date.now(), expected, posted: new Map() };
      this.open.set(key, r);
    }
    const earlier = r.posted.get(s.nodeId);
    earlier?.reply(earlier.delta); // a repeat replaces the first post, which gets its own delta back
    r.posted.set(s.nodeId, { delta: s.delta, reply });
    if ([...r.expected].every((id) => r.posted.has(id))) {
      const left = r.firstPostAt + (this.opts.settleMs ?? 1000) - Date.now();
      if (left <= 0) {
        this.answer(key, s.runId, s.round);
        return;
      }
      // everyone announced so far has posted: answer once the settle window is over, unless a late colluder announces
      clearTimeout(r.settle);
      const round = r;
      r.settle = setTimeout(() => {
        if ([...round.expected].every((id) => round.posted.has(id))) this.answer(key, s.runId, s.round);
      }, left);
      r.settle.unref?.();
    }
    if (!r.timer) {
      const waitMs = Math.max(0, s.deadline - Date.now() - (this.opts.reserveFraction ?? 0.1) * s.timeoutMs);
      r.timer = setTimeout(() => this.answer(key, s.runId, s.round), waitMs);
      r.timer.unref?.();
    }
  }

  private answer(key: string, runId: string, round: number): void {
    const r = this.open.get(key);
    if (!r) return;
    this.open.delete(key);
    this.announced.delete(key);
    clearTimeout(r.timer);
    clearTimeout(r.settle);
    this.answered.add(key);
    if (this.answered.size > 64) this.answered.delete(this.answered.values().next().value!);
    const nodeIds = [...r.posted.keys()];
    const honest = nodeIds.map((id) => r.posted.get(id)!.delta);
    const f = r.expected.size;
    const n = Math.max(r.n, f);
    const z = this.opts.z ?? alieZ(n, f);
    let crafted: NamedTensor[];
    try {
      crafted = alieDelta(honest, z);
    } catch {
      for (const p of r.posted.values()) p.reply(p.delta);
      return;
    }
    this.opts.onCrafted?.({ runId, round, n, f, z, nodeIds, honest, crafted });
    for (const p of r.posted.values()) p.reply(crafted);
  }

  /** Drops every open round without answering (the workers are being stopped). */
  close(): void {
    for (const r of this.open.values()) {
      clearTimeout(r.timer);
      clearTimeout(r.settle);
    }
    this.open.clear();
    this.announced.clear();
  }
}

/** Context a colluder needs from its fit task (as `EdgeNode`'s `transformDelta` receives it). */
export interface AlieTaskContext {
  runId: string;
  cohort?: number;
  deadline: number;
  timeoutMs: number;
}

/**
 * The worker side of ALIE: {@link transform} is a malicious node's `transformDelta`; it posts the
 * honest delta to the main thread (transferring its buffers) and resolves with the crafted delta
 * when {@link receive} gets the main thread's answer.
 */
export class AlieColluder {
  private readonly waiting = new Map<string, { resolve: (d: NamedTensor[]) => void; reject: (e: Error) => void }>();

  /** `post` sends a message to the main thread with a transfer list. */
  constructor(private readonly post: (m: FromWorker, transfer: ArrayBuffer[]) => void) {}

  /** Tells the main thread that `nodeId` received a fit task of `runId`/`round` (before it trains). */
  announce(nodeId: string, runId: string, round: number): void {
    this.post({ type: 'alie-task', nodeId, runId, round }, []);
  }

  /** Sends `delta` to be combined with the other colluders' and resolves with what to send. */
  transform(nodeId: string, delta: NamedTensor[], round: number, ctx: AlieTaskContext): Promise<NamedTensor[]> {
    const key = `${nodeId}/${ctx.runId}/${round}`;
    // own whole buffers, so transferring them detaches nothing else
    const tensors = delta.map((t) => ({
      name: t.name, shape: [...t.shape],
      data: t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength && t.data.buffer instanceof ArrayBuffer ? t.data : t.data.slice(),
    }));
    return new Promise((resolve, reject) => {
      this.waiting.get(key)?.reject(new FedmqError(ErrorCodes.TRAINING_FAILED, `ALIE: ${key} posted twice`));
      this.waiting.set(key, { resolve, reject });
      this.post(
        { type: 'alie', nodeId, runId: ctx.runId, round, cohort: ctx.cohort, deadline: ctx.deadline, timeoutMs: ctx.timeoutMs, tensors },
        tensors.map((t) => t.data.buffer as ArrayBuffer),
      );
    });
  }

  /** Handles a main-thread message; ignores those that are not ALIE answers. */
  receive(m: ToWorker): void {
    if (m.type !== 'alie') return;
    const key = `${m.nodeId}/${m.runId}/${m.round}`;
    const w = this.waiting.get(key);
    this.waiting.delete(key);
    w?.resolve(m.tensors);
  }

  /** Fails every pending transform (the worker is stopping). */
  close(): void {
    for (const w of this.waiting.values()) w.reject(new FedmqError(ErrorCodes.TRAINING_FAILED, 'ALIE: the simulation stopped'));
    this.waiting.clear();
  }
}
