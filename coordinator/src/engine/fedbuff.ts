import { ErrorCodes, FedmqError, type RoundRecord } from '@fedmq/protocol';
import type { RoundAggregate } from '../strategy.ts';
import type { RoundMachine } from './machine.ts';
import { finiteOrNull, type Answer } from './stage.ts';
import type { AsyncOptions, StalenessFunction } from './types.ts';

/**
 * FedBuff's staleness weight s(τ): (1 + τ)^−A for `polynomial:A`, 1 for `constant`
 * (Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous Aggregation", AISTATS, §3,
 * after Xie et al. 2019's FedAsync polynomial staleness function).
 * @param tau staleness: global model versions published since the one the node trained from (≥ 0).
 */
export function stalenessWeight(f: StalenessFunction, tau: number): number {
  return f.kind === 'constant' ? 1 : (1 + tau) ** -f.exponent;
}

/**
 * Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022, Algorithm 1) on the round
 * engine. Up to `concurrency` nodes train at once, each on the model version that was current
 * when its fit task was sent (the task names version and sha256; the model stays retained until
 * no task in flight needs it). Every accepted update enters the buffer weighted by s(τ), τ being
 * its staleness; after `bufferSize` accepted updates the server takes one step (the aggregator's
 * Σ n_k·s(τ_k)·Δ_k / Σ n_k through the server optimizer), publishes the new version and records
 * the step as a round. Updates staler than `maxStaleness` are rejected (FEDMQ_TOO_STALE) and never
 * folded in. A freed slot (answer, rejection, deadline, node offline) goes to a node drawn
 * uniformly from the eligible online nodes (not excluded by a `dataMismatch` status) without a
 * task, with the run's seeded generator.
 *
 * With a central test set, step s is evaluated before step s + 1 is applied (updates keep
 * arriving and buffering meanwhile), so the checkpoint written with step s's record holds exactly
 * the state after step s, and a resumed run continues from it. Federated evaluation and
 * over-selection are for synchronous rounds (refused in async mode).
 */
export class FedBuff {
  /** The server step being buffered (the `round` of its record), from 1. */
  step: number;
  /** Rejections and missing answers of the step, by code. */
  failures: Record<string, number> = {};
  private readonly opts: AsyncOptions;
  private buffer: RoundAggregate;
  private issued = 0;
  private staleness: number[] = [];
  private bytesUp = 0;
  private bytesDown = 0;
  private stepStartedAt: number;
  private waitingPublished = false;
  private begun = false;
  /** A closed step waiting for its central evaluation. */
  private pending?: { record: RoundRecord; version: number; evalStartedAt: number };
  private stopped = false;
  /** Steps taken by this machine, and steps it must take (the run's rounds minus those of a resumed checkpoint). */
  private taken = 0;
  private readonly target: number;

  constructor(private readonly m: RoundMachine, firstStep: number) {
    this.opts = m.cfg.async!;
    this.target = m.cfg.rounds - m.history.filter((r) => r.accepted).length;
    this.step = firstStep;
    this.buffer = m.cfg.strategy.aggregator.begin(firstStep, m.global);
    this.stepStartedAt = m.now();
  }

  /** Fit tasks in flight (sent, not answered). Answered tasks stay open until the next server step, so a redelivered answer is a duplicate. */
  private inFlight(): number {
    let n = 0;
    for (const t of this.m.tasks.values()) if (t.stage === 'fit' && !t.answered) n++;
    return n;
  }

  /** After every event: wait for enough nodes once, then keep `concurrency` tasks in flight; step when the buffer is full. */
  advance(): void {
    if (this.stopped) return;
    const m = this.m;
    if (!this.begun) {
      if (m.eligibleNodes().length < m.cfg.minAvailableNodes) {
        if (!this.waitingPublished) m.enterStage(this.step, 'waiting', 0);
        this.waitingPublished = true;
        return;
      }
      this.begun = true;
      this.stepStartedAt = m.now();
      m.enterStage(this.step, 'fit', this.opts.concurrency);
    }
    this.maybeStep();
    if (this.lastStepTaken()) return;
    const busy = new Set<string>();
    for (const t of m.tasks.values()) if (!t.answered) busy.add(t.nodeId);
    let candidates = m.eligibleNodes().filter((n) => !busy.has(n));
    while (this.inFlight() < this.opts.concurrency && candidates.length > 0) {
      const pick = candidates[Math.floor(m.rng() * candidates.length)];
      candidates = candidates.filter((n) => n !== pick);
      const deadline = m.now() + m.cfg.deadlineMs;
      const task = m.sendFitTask(pick, this.step, deadline);
      m.effect({ type: 'timer', id: `task:${task.taskId}`, at: deadline });
      this.issued++;
    }
  }

  /** All steps of the run are taken (the last may still await its evaluation). */
  private lastStepTaken(): boolean {
    return this.taken >= this.target;
  }

  /**
   * An update whose task checks passed (docs/protocol.md §6, rules 1–10): the run must still be
   * taking steps (rule 11), then the staleness rule (12), then its tensors (13–17), then fold.
   * An accepted or too-stale answer ends its task (its slot goes to another node; the task stays
   * known until the next server step, so a redelivery is FEDMQ_DUPLICATE_UPDATE); a malformed one
   * leaves it open until its deadline.
   */
  onUpdate(a: Answer): void {
    if (a.kind !== 'update' || this.stopped || this.lastStepTaken()) {
      throw new FedmqError(ErrorCodes.STALE_UPDATE, `update for task ${a.task.taskId} after the last server step`, { taskId: a.task.taskId });
    }
    const m = this.m;
    const tau = m.version - a.task.version;
    if (tau > this.opts.maxStaleness) {
      this.answered(a);
      throw new FedmqError(ErrorCodes.TOO_STALE, `update of ${a.task.nodeId} trained on model v${a.task.version}, ${tau} versions behind v${m.version} (max staleness ${this.opts.maxStaleness})`, { staleness: tau, taskId: a.task.taskId });
    }
    const u = a.update;
    const delta = m.checkUpdate(u);
    this.buffer.add({ nodeId: u.nodeId, numExamples: u.numExamples, delta, loss: u.metrics.loss }, stalenessWeight(this.opts.staleness, tau));
    this.answered(a);
    this.staleness.push(tau);
    this.bytesUp += a.wireBytes;
    this.bytesDown += u.metrics.bytesDown ?? 0;
    m.notice({ type: 'accepted', nodeId: u.nodeId, round: this.step, bytes: a.wireBytes, taskId: a.task.taskId, trainMs: u.metrics.trainMs });
  }

  /** Ends a task's wait (answered, or refused as too stale): its timer and its slot. */
  private answered(a: Answer): void {
    a.task.answered = true;
    this.m.effect({ type: 'cancelTimer', id: `task:${a.task.taskId}` });
  }

  /** A task's deadline passed without an answer. */
  onTaskTimeout(taskId: number): void {
    const t = this.m.tasks.get(taskId);
    if (!t || t.answered) return;
    this.failures.timeout = (this.failures.timeout ?? 0) + 1;
    this.m.closeTasks([taskId]);
  }

  /**
   * A node went offline, or gave its tasks up to `upTo` (`failed`): those tasks in flight end (the
   * slot goes to another node).
   */
  onOffline(nodeId: string, reason: 'offline' | 'failed', upTo = Number.POSITIVE_INFINITY): void {
    for (const t of [...this.m.tasks.values()]) {
      if (t.nodeId !== nodeId || t.answered || t.taskId > upTo) continue;
      this.failures[reason] = (this.failures[reason] ?? 0) + 1;
      this.close(t.taskId);
    }
  }

  onEvaluated(e: { version: number; loss: number; accuracy: number }): void {
    const p = this.pending;
    if (!p || p.version !== e.version) return;
    this.pending = undefined;
    const evalMs = this.m.now() - p.evalStartedAt;
    const record = { ...p.record, testLoss: finiteOrNull(e.loss), testAccuracy: finiteOrNull(e.accuracy), phases: { ...p.record.phases, evalMs } };
    if (!this.m.closeRound(record)) this.stopped = true;
  }

  /** Stop: give up the tasks in flight; the run ends once a pending evaluation returns. */
  stop(): void {
    this.stopped = true;
    for (const t of [...this.m.tasks.values()]) this.close(t.taskId);
    if (!this.pending) this.m.finish('stopped');
  }

  private close(taskId: number): void {
    this.m.effect({ type: 'cancelTimer', id: `task:${taskId}` });
    this.m.closeTasks([taskId]);
  }

  /** One server step once the buffer holds K updates and the previous step's evaluation is back. */
  private maybeStep(): void {
    const m = this.m;
    if (this.pending || this.buffer.count < this.opts.bufferSize || this.lastStepTaken()) return;
    const t0 = m.now();
    const round = this.step;
    const step = m.cfg.strategy.aggregator.finish(round, m.global, this.buffer, []);
    if (step) {
      m.global = m.cfg.strategy.optimizer.step(m.global, step);
      m.publishModel(round);
    }
    const aggregateMs = m.now() - t0;
    const record: RoundRecord = {
      round, modelVersion: m.version, accepted: step !== null, mode: 'async', selected: this.issued, reported: this.buffer.count, failures: this.failures,
      trainLoss: finiteOrNull(this.buffer.trainLoss), testLoss: null, testAccuracy: null, federatedEval: null,
      staleness: { mean: this.staleness.reduce((s, x) => s + x, 0) / Math.max(1, this.staleness.length), max: Math.max(0, ...this.staleness) },
      bytesDown: this.bytesDown, bytesUp: this.bytesUp, durationMs: m.now() - this.stepStartedAt,
      phases: { trainMs: t0 - this.stepStartedAt, aggregateMs, evalMs: 0 },
    };
    // the step's answered tasks are done with: later redeliveries are stale
    this.m.closeTasks([...m.tasks.values()].filter((t) => t.answered).map((t) => t.taskId));
    this.taken++;
    this.step++;
    this.buffer = m.cfg.strategy.aggregator.begin(this.step, m.global);
    this.failures = {};
    this.issued = 0;
    this.staleness = [];
    this.bytesUp = 0;
    this.bytesDown = 0;
    this.stepStartedAt = m.now();
    if (m.cfg.centralEval) {
      m.enterStage(round, 'evaluate', 0);
      m.effect({ type: 'evaluate', version: m.version, weights: m.global });
      this.pending = { record, version: m.version, evalStartedAt: m.now() };
    } else if (!m.closeRound(record)) {
      this.stopped = true;
      return;
    }
    if (!this.stopped) m.enterStage(this.step, 'fit', this.opts.concurrency);
  }
}
