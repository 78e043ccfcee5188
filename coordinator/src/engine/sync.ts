import type { EvaluateResult, FederatedEval, RoundRecord, StageName } from '@fedmq/protocol';
import type { FitFailure, RoundAggregate } from '../strategy.ts';
import { sample } from '../strategies/index.ts';
import type { RoundMachine } from './machine.ts';
import { failureList, finiteOrNull, nearestRank, type Stage } from './stage.ts';
import { SECAGG_STAGES, type SecAggRound } from './secagg.ts';

/**
 * A synchronous round (McMahan et al. 2017, arXiv:1602.05629, Algorithm 1) as five stages:
 *
 * | stage | cohort | waits for | completes when | deadline |
 * |---|---|---|---|---|
 * | `waiting` | — | node statuses | ≥ minAvailableNodes online and eligible | none |
 * | `select` | the eligible online nodes | — | at once: the selector's pick (+ over-selection) | — |
 * | `fit` | the selected nodes | Updates | target accepted, or every selected node answered, went offline or gave its task up | deadlineMs |
 * | `aggregate` | the nodes that answered | — | at once: aggregator + server optimizer, new model published | — |
 * | `evaluate` | ⌈evaluateFraction · eligible online⌉ nodes | EvaluateResults and the central evaluation | every cohort node answered or went offline, and the central evaluation returned | deadlineMs |
 *
 * Eligible: online, and not excluded because its status says its data does not fit the model
 * (NodeStatus `dataMismatch`, see `RoundMachine.eligibleNodes`).
 *
 * With secure aggregation (docs/architecture.md) the round becomes waiting → select →
 * advertise-keys → share-keys → fit (masked input) → unmask → aggregate → evaluate, each new stage
 * with a cohort that only shrinks.
 */

/** The state of one synchronous round, shared by its stages. */
export interface SyncRound {
  round: number;
  /** Stages closed early: deadline timer fired, or stop. */
  closed: Set<StageName>;
  /** When the select stage began, ms. */
  startedAt: number;
  selected: string[];
  /** Accepted updates that close the fit stage early (the selector's pick, before over-selection). */
  target: number;
  /** Fit task id per selected node. */
  fitTasks: Map<string, number>;
  reported: Set<string>;
  /** Selected nodes that went offline before answering. */
  dropped: Set<string>;
  /** Selected nodes that gave their task up (idle without an answer: training failed). */
  gaveUp: Set<string>;
  failures: Record<string, number>;
  fitFailures: FitFailure[];
  aggregate?: RoundAggregate;
  bytesUp: number;
  bytesDown: number;
  trainMs: number;
  aggregateMs: number;
  accepted: boolean;
  evalStartedAt: number;
  evalMs: number;
  /** Central evaluation still running. */
  centralPending: boolean;
  testLoss: number | null;
  testAccuracy: number | null;
  evalCohort: string[];
  evalTasks: Map<string, number>;
  evalDropped: Set<string>;
  evalResults: EvaluateResult[];
  /** Secure aggregation's state (secure-aggregation rounds only). */
  sa?: SecAggRound;
}

const waiting: Stage<SyncRound> = {
  name: 'waiting',
  enter(m, r) {
    // the waiting stage is published only when the round has to wait
    if (m.eligibleNodes().length < m.cfg.minAvailableNodes) m.enterStage(r.round, 'waiting', 0);
  },
  isComplete: (m, r) => m.eligibleNodes().length >= m.cfg.minAvailableNodes || r.closed.has('waiting'),
  exit() {},
};

const select: Stage<SyncRound> = {
  name: 'select',
  enter(m, r) {
    r.startedAt = m.now();
    const online = m.eligibleNodes();
    const picked = m.cfg.strategy.selector.select(r.round, online, m.rng);
    r.target = picked.length;
    const extra = Math.ceil(m.cfg.overSelection * picked.length);
    if (extra === 0) r.selected = picked;
    else {
      const chosen = new Set(picked);
      const rest = online.filter((n) => !chosen.has(n));
      r.selected = [...picked, ...sample(rest, Math.min(extra, rest.length), m.rng)].sort();
    }
  },
  isComplete: () => true,
  exit() {},
};

const fit: Stage<SyncRound> = {
  name: 'fit',
  accepts: 'update',
  enter(m, r) {
    const deadline = m.now() + m.cfg.deadlineMs;
    r.aggregate = m.cfg.strategy.aggregator.begin(r.round, m.global);
    m.enterStage(r.round, 'fit', r.selected.length, deadline);
    for (const nodeId of r.selected) r.fitTasks.set(nodeId, m.sendFitTask(nodeId, r.round, deadline, r.selected.length).taskId);
    m.deadline(r.round, 'fit', deadline);
  },
  onAnswer(m, r, a) {
    if (a.kind !== 'update') return;
    const u = a.update;
    const delta = m.checkUpdate(u);
    r.aggregate!.add({ nodeId: u.nodeId, numExamples: u.numExamples, delta, loss: u.metrics.loss, unclipped: u.dp?.unclipped });
    r.reported.add(u.nodeId);
    r.dropped.delete(u.nodeId);
    r.bytesUp += a.wireBytes;
    r.bytesDown += u.metrics.bytesDown ?? 0;
    m.notice({ type: 'accepted', nodeId: u.nodeId, round: r.round, bytes: a.wireBytes, taskId: a.task.taskId, trainMs: u.metrics.trainMs });
  },
  onPresence(_m, r, nodeId, presence) {
    // (the machine reports `gave-up` only for a status naming this round's task or a later one)
    if (!r.fitTasks.has(nodeId) || r.reported.has(nodeId)) return;
    r.dropped.delete(nodeId);
    if (presence === 'offline') r.dropped.add(nodeId);
    if (presence === 'gave-up') r.gaveUp.add(nodeId);
  },
  isComplete: (_m, r) => r.closed.has('fit') || r.reported.size >= r.target || r.reported.size + r.dropped.size + r.gaveUp.size >= r.selected.length,
  exit(m, r) {
    // over-selected nodes still training when the target was reached are not failures
    const early = r.reported.size >= r.target && r.target < r.selected.length;
    const missing = early ? [] : r.selected.filter((n) => !r.reported.has(n) && !r.dropped.has(n) && !r.gaveUp.has(n));
    if (missing.length > 0) r.failures.timeout = (r.failures.timeout ?? 0) + missing.length;
    if (r.dropped.size > 0) r.failures.offline = (r.failures.offline ?? 0) + r.dropped.size;
    if (r.gaveUp.size > 0) r.failures.failed = (r.failures.failed ?? 0) + r.gaveUp.size;
    r.fitFailures = failureList(missing, r.dropped, r.gaveUp);
    m.closeTasks(r.fitTasks.values());
    r.trainMs = m.now() - r.startedAt;
  },
};

const aggregate: Stage<SyncRound> = {
  name: 'aggregate',
  enter(m, r) {
    const t0 = m.now();
    m.enterStage(r.round, 'aggregate', r.reported.size);
    const agg = r.aggregate!;
    const needed = Math.max(m.cfg.minAcceptedUpdates, Math.ceil(m.cfg.minCompletionRate * r.selected.length));
    const enough = agg.count >= needed;
    const step = enough ? m.cfg.strategy.aggregator.finish(r.round, m.global, agg, r.fitFailures) : null;
    if (step) {
      m.global = m.cfg.strategy.optimizer.step(m.global, step);
      m.publishModel(r.round);
    }
    r.accepted = step !== null;
    r.aggregateMs = m.now() - t0;
  },
  isComplete: () => true,
  exit() {},
};

const evaluate: Stage<SyncRound> = {
  name: 'evaluate',
  accepts: 'evaluation',
  enter(m, r) {
    r.evalStartedAt = m.now();
    const online = m.eligibleNodes();
    const k = m.cfg.evaluateFraction > 0 ? Math.min(online.length, Math.max(1, Math.ceil(m.cfg.evaluateFraction * online.length))) : 0;
    r.evalCohort = k > 0 ? m.sampleForEvaluation(online, k) : [];
    if (!m.cfg.centralEval && k === 0) return;
    const deadline = k > 0 ? m.now() + m.cfg.deadlineMs : undefined;
    m.enterStage(r.round, 'evaluate', k, deadline);
    if (m.cfg.centralEval) {
      r.centralPending = true;
      m.effect({ type: 'evaluate', version: m.version, weights: m.global });
    }
    for (const nodeId of r.evalCohort) r.evalTasks.set(nodeId, m.sendEvaluateTask(nodeId, r.round, deadline!).taskId);
    if (deadline !== undefined) m.deadline(r.round, 'evaluate', deadline);
  },
  onAnswer(_m, r, a) {
    if (a.kind !== 'evaluation') return;
    r.evalResults.push(a.result);
    r.evalDropped.delete(a.result.nodeId);
    r.bytesUp += a.wireBytes;
    r.bytesDown += a.result.bytesDown ?? 0;
  },
  onPresence(_m, r, nodeId, presence) {
    if (!r.evalTasks.has(nodeId) || r.evalResults.some((x) => x.nodeId === nodeId)) return;
    if (presence === 'back') r.evalDropped.delete(nodeId);
    else r.evalDropped.add(nodeId);
  },
  onEvaluated(_m, r, e) {
    if (!r.centralPending) return;
    r.centralPending = false;
    r.testLoss = finiteOrNull(e.loss);
    r.testAccuracy = finiteOrNull(e.accuracy);
  },
  isComplete(_m, r) {
    if (r.centralPending) return false;
    return r.closed.has('evaluate') || r.evalResults.length + r.evalDropped.size >= r.evalCohort.length;
  },
  exit(m, r) {
    m.closeTasks(r.evalTasks.values());
    r.evalMs = m.now() - r.evalStartedAt;
  },
};

/**
 * Federated evaluation of a round from the nodes' results: numExamples-weighted loss and accuracy,
 * the per-node accuracy spread (nearest rank), the mean of the worst decile (at least one node),
 * and the fraction of nodes whose local model beat the global one.
 * @returns null when no node answered.
 */
export function federatedEval(results: readonly EvaluateResult[]): FederatedEval | null {
  if (results.length === 0) return null;
  let n = 0;
  let loss = 0;
  let acc = 0;
  for (const r of results) {
    n += r.numExamples;
    loss += r.numExamples * r.global.loss;
    acc += r.numExamples * r.global.accuracy;
  }
  const accs = results.map((r) => r.global.accuracy).sort((a, b) => a - b);
  const worst = accs.slice(0, Math.max(1, Math.floor(accs.length / 10)));
  const withLocal = results.filter((r) => r.local !== null);
  return {
    loss: loss / n, accuracy: acc / n, numExamples: n, nodes: results.length,
    worstDecileAccuracy: worst.reduce((s, x) => s + x, 0) / worst.length,
    localBetterFraction: withLocal.length === 0 ? null : withLocal.filter((r) => r.local!.accuracy > r.global.accuracy).length / withLocal.length,
    accuracySpread: { min: accs[0], p10: nearestRank(accs, 0.1), median: nearestRank(accs, 0.5), p90: nearestRank(accs, 0.9), max: accs[accs.length - 1] },
  };
}

/** The synchronous round: its stages in order, its fresh state, and its record. */
export const SYNC_ROUND = {
  stages: [waiting, select, fit, aggregate, evaluate] as readonly Stage<SyncRound>[],
  /** With secure aggregation: the fit and aggregate stages become advertise-keys → share-keys → fit (masked input) → unmask → aggregate (unmasking). */
  secaggStages: [
    waiting, select, SECAGG_STAGES.advertiseKeys, SECAGG_STAGES.shareKeys, SECAGG_STAGES.maskedInput, SECAGG_STAGES.unmask, SECAGG_STAGES.secureAggregate, evaluate,
  ] as readonly Stage<SyncRound>[],
  newRound(_m: RoundMachine, round: number): SyncRound {
    return {
      round, closed: new Set(), startedAt: 0, selected: [], target: 0, fitTasks: new Map(), reported: new Set(), dropped: new Set(), gaveUp: new Set(), failures: {},
      fitFailures: [], bytesUp: 0, bytesDown: 0, trainMs: 0, aggregateMs: 0, accepted: false, evalStartedAt: 0, evalMs: 0, centralPending: false,
      testLoss: null, testAccuracy: null, evalCohort: [], evalTasks: new Map(), evalDropped: new Set(), evalResults: [],
    };
  },
  record(m: RoundMachine, r: SyncRound): RoundRecord {
    return {
      round: r.round, modelVersion: m.version, accepted: r.accepted, mode: 'sync', selected: r.selected.length, reported: r.reported.size, failures: r.failures,
      trainLoss: m.cfg.privacy || m.cfg.secagg ? null : finiteOrNull(r.aggregate?.trainLoss ?? Number.NaN), /* DP: the nodes' losses are not noised, so not published */ testLoss: r.testLoss, testAccuracy: r.testAccuracy, federatedEval: federatedEval(r.evalResults),
      bytesDown: r.bytesDown, bytesUp: r.bytesUp, durationMs: m.now() - r.startedAt,
      phases: { trainMs: r.trainMs, aggregateMs: r.aggregateMs, evalMs: r.evalMs }, privacy: m.cfg.privacy?.record() ?? m.cfg.distributedDp?.record(),
      secagg: r.sa ? {
        graph: m.cfg.secagg!.graph, neighbours: r.sa.neighbours, threshold: r.sa.threshold, bits: r.sa.bits, dims: r.sa.dims,
        recovered: r.sa.result?.recovered.length ?? 0, aborted: r.sa.aborted?.code ?? null, stages: r.sa.stages,
      } : undefined,
    };
  },
};
