import { ErrorCodes, FedmqError, isFedmqError, type SecAggAnswer, type SecAggEncoding, type StageName } from '@fedmq/protocol';
import {
  SecAggServer, defaultNeighbours, neighbourGraph, nodeThreshold, secaggBits, secaggDecodeMean, secaggDims, unpackBits, type SecAggGraphKind, type SecAggResult,
} from '@fedmq/privacy';
import { addable } from '../aggregate.ts';
import type { RoundMachine } from './machine.ts';
import { failureList, type Answer, type Stage } from './stage.ts';
import type { SyncRound } from './sync.ts';

/**
 * Secure aggregation as stages of the synchronous round (docs/architecture.md, "Stages";
 * Bonawitz et al. 2017 with the SecAgg+ graph of Bell et al. 2020; docs/protocol.md §12):
 *
 * | stage | cohort | waits for | then |
 * |---|---|---|---|
 * | `advertise-keys` | U0 = the selected nodes | two public keys each | U1 = those that answered |
 * | `share-keys` | U1 | sealed shares for each neighbour in U1 | U2 |
 * | `fit` (masked input) | U2 | an Update carrying the masked input | U3; the masked inputs are summed as they come |
 * | `unmask` | U3 | the shares to remove the masks | U4 |
 * | `aggregate` | — | the unmasking (self masks of U3, pairwise masks of U2 \ U3) | mean delta → strategy |
 *
 * Each stage has the job's deadline; a cohort below the threshold t = max(2, ⌈θ·|U0|⌉) at the end
 * of a stage aborts the round with FEDMQ_SECAGG_ABORT: nothing is unmasked, the model is kept.
 */

/** Secure aggregation options of a job (EngineConfig.secagg). */
export interface SecAggOptions {
  /** `harary`: SecAgg+ (Bell et al. 2020); `complete`: SecAgg (Bonawitz et al. 2017). */
  graph: SecAggGraphKind;
  /** θ in (0, 1]: global threshold ⌈θ·n⌉, a node's ⌊θ·k⌋ + 1 of its k neighbours. */
  thresholdFraction: number;
  /** k (even); default from the cohort ({@link defaultNeighbours}). */
  neighbours?: number;
  /** How nodes encode their delta (fedavg quantization, or the distributed discrete Gaussian). */
  encoding: (cohort: number, maxExamples: number, threshold: number) => { encoding: SecAggEncoding; bits: number };
  /** Distributed DP: the round's sum was unmasked (its privacy cost is spent). */
  onRelease?: () => void;
}

/** The default quantization encoding for a cohort (FedAvg weighting inside the masked vector). */
export function fedavgEncoding(clip: number, levelBits: number): Pick<SecAggOptions, 'encoding'> {
  return {
    encoding: (cohort, maxExamples) => {
      const encoding: SecAggEncoding = { kind: 'fedavg', clip, levelBits, maxExamples };
      return { encoding, bits: secaggBits(cohort, encoding) };
    },
  };
}

/** One secure-aggregation stage's record: its cohort (nodes sent a task), how many answered, and its wall time. */
export interface SecAggStageRecord {
  stage: StageName;
  cohort: number;
  answered: number;
  durationMs: number;
}

/** The secure-aggregation state of one round. */
export interface SecAggRound {
  server?: SecAggServer;
  encoding?: SecAggEncoding;
  bits: number;
  dims: number;
  neighbours: number;
  threshold: number;
  /** The nodes the current stage is for: U0, then the cohort the server returned when the previous stage closed (U1, U2, U3). */
  cohort: string[];
  /** Node → open task id of the current stage. */
  tasks: Map<string, number>;
  answered: Set<string>;
  /** Cohort nodes of the current stage that went offline. */
  gone: Set<string>;
  /** Cohort nodes of the current stage that gave their task up (idle after it without an answer). */
  gaveUp: Set<string>;
  stageStart: number;
  stages: SecAggStageRecord[];
  aborted?: FedmqError;
  computing: boolean;
  result?: SecAggResult;
}

export function newSecAggRound(): SecAggRound {
  return { bits: 0, dims: 0, neighbours: 0, threshold: 0, cohort: [], tasks: new Map(), answered: new Set(), gone: new Set(), gaveUp: new Set(), stageStart: 0, stages: [], computing: false };
}

function abort(m: RoundMachine, r: SyncRound, err: unknown): void {
  const sa = r.sa!;
  const error = isFedmqError(err) ? err : new FedmqError(ErrorCodes.SECAGG_ABORT, String((err as Error)?.message ?? err));
  sa.aborted ??= error;
  r.failures[error.code] = (r.failures[error.code] ?? 0) + 1;
  m.notice({ type: 'rejected', error, round: r.round });
}

/** Opens a stage for the round's current cohort: tasks out via `send`, deadline set. */
function open(m: RoundMachine, r: SyncRound, stage: StageName, send: (nodeId: string, deadline: number) => number): void {
  const sa = r.sa!;
  sa.tasks.clear();
  sa.answered.clear();
  sa.gone.clear();
  sa.gaveUp.clear();
  sa.stageStart = m.now();
  const deadline = m.now() + m.cfg.deadlineMs;
  m.enterStage(r.round, stage, sa.cohort.length, deadline);
  for (const nodeId of sa.cohort) sa.tasks.set(nodeId, send(nodeId, deadline));
  m.deadline(r.round, stage, deadline);
}

/**
 * Closes a stage (unless the round aborted): its tasks, its record, the missing counted; then
 * `closeServer` ends the server's stage, whose cohort becomes the next stage's (an abort below the
 * threshold is recorded).
 */
function close(m: RoundMachine, r: SyncRound, stage: StageName, closeServer?: (server: SecAggServer) => string[]): void {
  const sa = r.sa!;
  if (sa.aborted) return;
  const missing = missingOf(sa);
  if (missing.length > 0) r.failures.timeout = (r.failures.timeout ?? 0) + missing.length;
  if (sa.gone.size > 0) r.failures.offline = (r.failures.offline ?? 0) + sa.gone.size;
  if (sa.gaveUp.size > 0) r.failures.failed = (r.failures.failed ?? 0) + sa.gaveUp.size;
  m.closeTasks(sa.tasks.values());
  sa.stages.push({ stage, cohort: sa.tasks.size, answered: sa.answered.size, durationMs: m.now() - sa.stageStart });
  if (!closeServer) return;
  try {
    sa.cohort = closeServer(sa.server!);
  } catch (err) {
    abort(m, r, err);
  }
}

/** Counts an accepted answer of the current stage. */
function answered(r: SyncRound, nodeId: string, wireBytes: number): void {
  r.sa!.answered.add(nodeId);
  r.bytesUp += wireBytes;
}

/** Cohort nodes of the current stage that neither answered, went offline nor gave up (the deadline's). */
function missingOf(sa: SecAggRound): string[] {
  return [...sa.tasks.keys()].filter((n) => !sa.answered.has(n) && !sa.gone.has(n) && !sa.gaveUp.has(n));
}

const presence: Stage<SyncRound>['onPresence'] = (_m, r, nodeId, p) => {
  const sa = r.sa!;
  if (!sa.tasks.has(nodeId) || sa.answered.has(nodeId)) return;
  sa.gone.delete(nodeId);
  sa.gaveUp.delete(nodeId);
  if (p === 'offline') sa.gone.add(nodeId);
  if (p === 'gave-up') sa.gaveUp.add(nodeId);
};

const stageDone = (r: SyncRound, stage: StageName) => {
  const sa = r.sa!;
  return !!sa.aborted || r.closed.has(stage) || sa.answered.size + sa.gone.size + sa.gaveUp.size >= sa.tasks.size;
};

function secaggAnswer<S extends SecAggAnswer['stage']>(a: Answer, stage: S): Extract<SecAggAnswer, { stage: S }> {
  if (a.kind !== 'secagg' || a.answer.stage !== stage) throw new FedmqError(ErrorCodes.STALE_UPDATE, `a ${a.kind} answer during ${stage}`);
  return a.answer as Extract<SecAggAnswer, { stage: S }>;
}

const advertiseKeys: Stage<SyncRound> = {
  name: 'advertise-keys',
  accepts: 'secagg',
  enter(m, r) {
    const sa = (r.sa = newSecAggRound());
    const o = m.cfg.secagg!;
    const u0 = r.selected;
    try {
      // each node Shamir-shares its secrets among ≥ 2 neighbours with t_i ≥ 2: a cohort of at least 3
      if (u0.length < 3) throw new FedmqError(ErrorCodes.SECAGG_ABORT, `secure aggregation needs at least 3 selected nodes, got ${u0.length}`);
      const params = m.global.reduce((s, t) => s + t.data.length, 0);
      const maxExamples = Math.max(1, ...u0.map((n) => m.registry.get(n)?.numExamples ?? 1));
      sa.threshold = Math.max(2, Math.ceil(o.thresholdFraction * u0.length));
      const { encoding, bits } = o.encoding(u0.length, maxExamples, sa.threshold);
      sa.encoding = encoding;
      sa.bits = bits;
      sa.dims = secaggDims(params, encoding);
      const k = o.graph === 'complete' ? u0.length - 1 : Math.min(u0.length - 1, o.neighbours ?? defaultNeighbours(u0.length, o.thresholdFraction));
      const graph = neighbourGraph(u0, k, o.graph);
      sa.neighbours = k;
      const thresholds = new Map(u0.map((n) => [n, Math.min(graph.get(n)!.length, nodeThreshold(graph.get(n)!.length, o.thresholdFraction))]));
      sa.server = new SecAggServer({ ctx: { job: m.cfg.job, runId: m.cfg.runId, round: r.round }, bits, dims: sa.dims, graph, thresholds, threshold: sa.threshold });
    } catch (err) {
      abort(m, r, err);
      return;
    }
    const server = sa.server;
    sa.cohort = u0;
    open(m, r, 'advertise-keys', (nodeId, deadline) => {
      const q = server.advertiseRequest(nodeId);
      return m.sendSecAggTask(nodeId, r.round, deadline, { stage: 'advertise-keys', neighbours: q.neighbours, threshold: q.threshold, bits: q.bits, dims: q.dims, encoding: sa.encoding! }).taskId;
    });
  },
  onAnswer(_m, r, a) {
    const ans = secaggAnswer(a, 'advertise-keys');
    r.sa!.server!.onAdvertise(ans.nodeId, { encPublicKey: ans.encPublicKey, maskPublicKey: ans.maskPublicKey });
    answered(r, ans.nodeId, a.wireBytes);
  },
  onPresence: presence,
  isComplete: (_m, r) => stageDone(r, 'advertise-keys'),
  exit: (m, r) => close(m, r, 'advertise-keys', (server) => server.closeAdvertise()),
};

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

const shareKeys: Stage<SyncRound> = {
  name: 'share-keys',
  accepts: 'secagg',
  enter(m, r) {
    const sa = r.sa!;
    if (sa.aborted) return;
    const server = sa.server!;
    open(m, r, 'share-keys', (nodeId, deadline) => {
      const q = server.shareKeysRequest(nodeId);
      return m.sendSecAggTask(nodeId, r.round, deadline, {
        stage: 'share-keys', peers: q.peers.map((p) => ({ nodeId: p.nodeId, encPublicKey: b64(p.encPublicKey), maskPublicKey: b64(p.maskPublicKey) })),
      }).taskId;
    });
  },
  onAnswer(_m, r, a) {
    const ans = secaggAnswer(a, 'share-keys');
    r.sa!.server!.onShareKeys(ans.nodeId, { shares: ans.shares.map((s) => ({ from: ans.nodeId, to: s.to, ciphertext: s.ciphertext })) });
    answered(r, ans.nodeId, a.wireBytes);
  },
  onPresence: presence,
  isComplete: (_m, r) => stageDone(r, 'share-keys'),
  exit: (m, r) => close(m, r, 'share-keys', (server) => server.closeShareKeys()),
};

/** The fit stage of a secure-aggregation round: U2's masked inputs, folded into the server's sum. */
export const maskedInput: Stage<SyncRound> = {
  name: 'fit',
  accepts: 'update',
  enter(m, r) {
    const sa = r.sa!;
    if (sa.aborted) return;
    const server = sa.server!;
    r.target = sa.cohort.length;
    r.aggregate = m.cfg.strategy.aggregator.begin(r.round, m.global);
    open(m, r, 'fit', (nodeId, deadline) => {
      const q = server.maskedInputRequest(nodeId);
      const task = m.sendFitTask(nodeId, r.round, deadline, sa.cohort.length, { shares: q.shares.map((s) => ({ from: s.from, ciphertext: b64(s.ciphertext) })) });
      r.fitTasks.set(nodeId, task.taskId);
      return task.taskId;
    });
  },
  onAnswer(m, r, a) {
    if (a.kind !== 'update') return;
    const sa = r.sa!;
    const u = a.update;
    if (!u.secagg || u.tensors.length > 0) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, `update of ${u.nodeId} in a secure-aggregation round must carry only its masked input (secagg.data, no tensors)`, { nodeId: u.nodeId });
    const words = unpackBits(u.secagg.data, sa.dims, sa.bits);
    sa.server!.onMaskedInput(u.nodeId, words);
    answered(r, u.nodeId, a.wireBytes);
    r.reported.add(u.nodeId);
    r.bytesDown += u.metrics.bytesDown ?? 0;
    m.notice({ type: 'accepted', nodeId: u.nodeId, round: r.round, bytes: a.wireBytes, taskId: a.task.taskId, trainMs: u.metrics.trainMs });
  },
  onPresence: presence,
  isComplete: (_m, r) => stageDone(r, 'fit'),
  exit(m, r) {
    const sa = r.sa!;
    r.trainMs = m.now() - r.startedAt;
    if (!sa.aborted) r.fitFailures = failureList(missingOf(sa), sa.gone, sa.gaveUp);
    close(m, r, 'fit', (server) => server.closeMaskedInput());
  },
};

const unmask: Stage<SyncRound> = {
  name: 'unmask',
  accepts: 'secagg',
  enter(m, r) {
    const sa = r.sa!;
    if (sa.aborted) return;
    const server = sa.server!;
    open(m, r, 'unmask', (nodeId, deadline) => {
      const q = server.unmaskRequest(nodeId);
      return m.sendSecAggTask(nodeId, r.round, deadline, { stage: 'unmask', survivors: q.survivors, dropped: q.dropped }).taskId;
    });
  },
  onAnswer(_m, r, a) {
    const ans = secaggAnswer(a, 'unmask');
    r.sa!.server!.onUnmask(ans.nodeId, { selfMaskShares: ans.selfMaskShares, maskKeyShares: ans.maskKeyShares });
    answered(r, ans.nodeId, a.wireBytes);
  },
  onPresence: presence,
  isComplete: (_m, r) => stageDone(r, 'unmask'),
  exit: (m, r) => close(m, r, 'unmask'),
};

/** Aggregate of a secure-aggregation round: unmask (asynchronously, a `compute` effect), then the strategy's step on the mean delta. */
export const secureAggregate: Stage<SyncRound> = {
  name: 'aggregate',
  enter(m, r) {
    const sa = r.sa!;
    r.accepted = false;
    if (sa.aborted || !sa.server) return;
    m.enterStage(r.round, 'aggregate', sa.cohort.length); // U3: the inputs in the sum
    sa.stageStart = m.now();
    sa.computing = true;
    const server = sa.server;
    m.effect({ type: 'compute', id: `secagg:${r.round}`, run: () => server.finish() });
  },
  onComputed(m, r, id, value, error) {
    const sa = r.sa!;
    if (id !== `secagg:${r.round}` || !sa.computing) return;
    sa.computing = false;
    if (error !== undefined) {
      abort(m, r, error);
      return;
    }
    const result = value as SecAggResult;
    sa.result = result;
    m.cfg.secagg!.onRelease?.();
    const t0 = m.now();
    const count = result.survivors.length;
    const needed = Math.max(m.cfg.minAcceptedUpdates, Math.ceil(m.cfg.minCompletionRate * r.selected.length));
    if (count < needed) return;
    let mean: Float64Array;
    try {
      mean = secaggDecodeMean(result.sum, count, sa.encoding!, sa.bits);
    } catch (err) {
      abort(m, r, err);
      return;
    }
    // the mean delta as one FitResult of weight 1: the aggregator's weighted mean is that mean
    let off = 0;
    const delta = m.global.map((t) => {
      const v = mean.subarray(off, off + t.data.length);
      off += t.data.length;
      return addable({ data: v });
    });
    r.aggregate!.add({ nodeId: `secagg:${count}`, numExamples: 1, delta, loss: Number.NaN });
    const step = m.cfg.strategy.aggregator.finish(r.round, m.global, r.aggregate!, r.fitFailures);
    if (step) {
      m.global = m.cfg.strategy.optimizer.step(m.global, step);
      m.publishModel(r.round);
    }
    r.accepted = step !== null;
    r.aggregateMs = m.now() - t0;
    sa.stages.push({ stage: 'aggregate', cohort: count, answered: count, durationMs: m.now() - sa.stageStart });
  },
  isComplete: (_m, r) => !r.sa!.computing,
  exit() {},
};

/** The secure-aggregation stages that replace `fit` and `aggregate` in a synchronous round. */
export const SECAGG_STAGES = { advertiseKeys, shareKeys, maskedInput, unmask, secureAggregate };
