import { createHash } from 'node:crypto';
import {
  ErrorCodes, EvaluateResultSchema, FedmqError, NodeStatusSchema, PROTOCOL_VERSION, Scratch, createRng, decodeJson, decodeSecAggAnswer, decodeUpdate, encodeJson, encodePacked,
  globalToWire, isFedmqError, parseTopic, splitPayload, topics, weightsSha256, withScratch,
  type CoordinatorStatus, type EvaluateResult, type EvaluateTask, type FitTask, type GlobalModelMessage, type ModelMeta, type NamedTensor,
  type NodeStatus, type RoundMetrics, type UpdateMessage, type RoundRecord, type StageName, type StageStatus, type AdvertiseKeysTask, type ShareKeysTask, type UnmaskTask,
  type NodeTask,
} from '@fedmq/protocol';
import { NodeRegistry } from '../registry.ts';
import { checkUpdateTensors } from '../validate.ts';
import type { Addable } from '../aggregate.ts';
import { sample } from '../strategies/index.ts';
import type { CoordinatorCheckpoint, Effect, EngineConfig, EngineEvent, EngineNotice } from './types.ts';
import { SYNC_ROUND, type SyncRound } from './sync.ts';
import type { Answer, OpenTask, Stage } from './stage.ts';
import { FedBuff } from './fedbuff.ts';

/** The fields every task carries (taskBase of docs/protocol.md §3.4). */
type TaskBase = Omit<EvaluateTask, 'stage' | 'batchSize'>;

/** A published model version, kept while a task may fetch it. */
interface PublishedModel {
  version: number;
  sha256: string;
  /** Whole payload on `models/{v}` (1 entry) or its chunks on `models/{v}/chunks/{i}`. */
  payloads: Buffer[];
  chunked: boolean;
}

/**
 * The coordinator's round engine as a pure state machine: `handle(event) → effects`
 * (docs/architecture.md). It keeps the node registry, the global model and its versions, the
 * open tasks, the rounds' stages and the history; it decodes and checks every message (the
 * update acceptance rules of docs/protocol.md §6) and never throws on one: a bad message is a
 * `rejected` notice with its code. Time comes only from the injected `clock`.
 *
 * Synchronous mode runs {@link SYNC_ROUND} per round; async mode runs {@link FedBuff}.
 */
export class RoundMachine {
  readonly cfg: EngineConfig;
  /** Rounds (server steps) closed, in order. */
  readonly history: RoundRecord[] = [];
  readonly registry = new NodeRegistry();
  private readonly clock: () => number;
  /** The run's selection generator (seeded; draws counted for the checkpoint). */
  readonly rng: () => number;
  /** Federated evaluation's cohort generator (its own stream, so fit selection does not depend on it). */
  readonly evalRng: () => number;
  private rngDraws = 0;
  private evalRngDraws = 0;
  /** The current global model. */
  global: NamedTensor[];
  /** Its version (1 for the initial model of a run). */
  version: number;
  private failedInARow = 0;
  /** Last round (server step) closed. */
  lastRound = 0;
  private taskCounter = 0;
  readonly tasks = new Map<number, OpenTask>();
  private readonly models = new Map<number, PublishedModel>();
  private readonly scratch = new Scratch();
  private out: Effect[] = [];
  private started = false;
  private finished = false;
  /** A stop was asked for: the open stage closed, the run ends after the round. */
  stopping = false;
  private sync?: { r: SyncRound; index: number };
  /** The stages of a synchronous round: {@link SYNC_ROUND}'s, or with secure aggregation its secagg stages. */
  private readonly stages: readonly Stage<SyncRound>[];
  private fedbuff?: FedBuff;
  /** Nodes excluded from selection because their status says their data does not fit the model (reported once each). */
  private readonly unfit = new Set<string>();

  /**
   * @param init the initial global model (the adapter builds it from the model registry and the seed), and optionally a checkpoint to continue (its weights are used then).
   * @throws FedmqError FEDMQ_BAD_CONFIG on an invalid configuration; FEDMQ_CHECKPOINT when the checkpoint is not of this job.
   */
  constructor(cfg: EngineConfig, init: { weights: NamedTensor[]; resume?: CoordinatorCheckpoint }, clock: () => number) {
    validateConfig(cfg);
    this.cfg = cfg;
    this.stages = cfg.secagg ? SYNC_ROUND.secaggStages : SYNC_ROUND.stages;
    this.clock = clock;
    const base = createRng(cfg.seed);
    this.rng = () => {
      this.rngDraws++;
      return base();
    };
    const evalBase = createRng(cfg.seed ^ 0x5eed_e7a1);
    this.evalRng = () => {
      this.evalRngDraws++;
      return evalBase();
    };
    // a resumed run continues from the checkpoint's model
    this.global = (init.resume?.weights ?? init.weights).map((t) => ({ name: t.name, shape: [...t.shape], data: t.data.slice() }));
    this.version = 0;
    const cp = init.resume;
    if (cp) {
      if (cp.job !== cfg.job || cp.model !== cfg.model || cp.strategy !== cfg.strategy.name || cp.seed !== cfg.seed || cp.mode !== cfg.mode) {
        throw new FedmqError(ErrorCodes.CHECKPOINT, `checkpoint of job ${cp.job} (model ${cp.model}, strategy ${cp.strategy}, seed ${cp.seed}, mode ${cp.mode}) does not match job ${cfg.job} (model ${cfg.model}, strategy ${cfg.strategy.name}, seed ${cfg.seed}, mode ${cfg.mode})`);
      }
      for (let i = 0; i < cp.rngDraws; i++) this.rng();
      for (let i = 0; i < cp.evalRngDraws; i++) this.evalRng();
      if (cp.strategyState) {
        try {
          cfg.strategy.setState(cp.strategyState);
        } catch (err) {
          throw new FedmqError(ErrorCodes.CHECKPOINT, `checkpoint's strategy state does not fit ${cfg.strategy.name}: ${(err as Error).message}`, {}, { cause: err });
        }
      }
      if (cfg.privacy) {
        if (!cp.privacy) throw new FedmqError(ErrorCodes.CHECKPOINT, 'the checkpoint is of a run without differential privacy; a DP run cannot continue it (its ε would not count the rounds already run)');
        cfg.privacy.setState(cp.privacy);
      } else if (cp.privacy) {
        throw new FedmqError(ErrorCodes.CHECKPOINT, 'the checkpoint is of a run with differential privacy; resume it with the same --dp options');
      }
      this.history.push(...cp.history);
      this.lastRound = cp.round;
      this.version = cp.modelVersion - 1; // start republishes the checkpoint's model as the next version
      this.failedInARow = cp.failedInARow;
      this.taskCounter = cp.taskId;
    }
  }

  /** The injected clock, ms. */
  now(): number {
    return this.clock();
  }

  /**
   * Feeds one event in and returns the effects to carry out, in order. Never throws on a bad
   * message (it becomes a `rejected` notice); throws only on a bug.
   */
  handle(event: EngineEvent): Effect[] {
    this.out = [];
    if (this.finished) return this.out;
    switch (event.type) {
      case 'start':
        this.start();
        break;
      case 'message':
        this.onMessage(event.topic, event.payload, event.wireBytes ?? event.payload.byteLength);
        break;
      case 'rejected':
        this.reject(event.error, event.nodeId);
        break;
      case 'timer':
        this.onTimer(event.id);
        break;
      case 'evaluated':
        this.withStage((s, r) => s.onEvaluated?.(this, r, event));
        this.fedbuff?.onEvaluated(event);
        break;
      case 'computed':
        this.withStage((s, r) => s.onComputed?.(this, r, event.id, event.value, event.error));
        break;
      case 'reconnected':
        this.republish();
        break;
      case 'stop':
        this.stop();
        break;
    }
    this.advance();
    return this.out;
  }

  /** True while `nodeId` has an open, unanswered fit task: only then may it use the chunk reassembly budget. */
  expectsUpdate(nodeId: string): boolean {
    for (const t of this.tasks.values()) if (t.nodeId === nodeId && t.stage === 'fit' && !t.answered) return true;
    return false;
  }

  /** Online node ids, sorted. */
  onlineNodes(): string[] {
    return this.registry.online();
  }

  /** Online nodes whose status does not say their data does not fit the job's model, sorted: the ones rounds wait for and select from. */
  eligibleNodes(): string[] {
    return this.registry.eligible(this.cfg.model);
  }

  /** The round in progress (sync), or the server step being buffered (async), or the last one closed. */
  currentRound(): number {
    return this.sync?.r.round ?? this.fedbuff?.step ?? this.lastRound;
  }

  // ---- services for stages ------------------------------------------------------------------

  /** Queues an effect. */
  effect(e: Effect): void {
    this.out.push(e);
  }

  /** Queues a notice for the adapter's listeners. */
  notice(event: EngineNotice): void {
    this.out.push({ type: 'emit', event });
  }

  /** Publishes a JSON or binary payload. */
  publish(topic: string, payload: Buffer, retain: boolean): void {
    this.out.push({ type: 'publish', topic, payload, qos: 1, retain });
  }

  /** Publishes `coordinator/stage` and emits a `stage` notice. */
  enterStage(round: number, stage: StageName, cohort: number, deadline?: number): void {
    const msg: StageStatus = {
      v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, round, stage, cohort, online: this.registry.online().length, deadline, ts: this.now(),
    };
    this.publish(topics.stage(this.cfg.job), encodeJson(msg), true);
    this.notice({ type: 'stage', round, stage, cohort, deadline, online: msg.online });
  }

  /** Schedules the stage deadline timer of the current sync stage. */
  deadline(round: number, stage: StageName, at: number): void {
    this.out.push({ type: 'timer', id: `stage:${round}:${stage}`, at });
  }

  /** Sends a fit task for the current global model to `nodeId` (`cohort`: nodes sent one in this round, sync mode; `secagg`: the sealed shares of a secure-aggregation round). */
  sendFitTask(nodeId: string, round: number, deadline: number, cohort?: number, secagg?: FitTask['secagg']): OpenTask {
    return this.sendTask({
      ...this.taskBase(nodeId, round, deadline), stage: 'fit', cohort, config: this.cfg.strategy.fitConfig(round), codec: this.cfg.codec, codecParams: this.cfg.codecParams,
      maxPayloadBytes: this.cfg.maxPayloadBytes, updateKind: 'delta', dp: this.cfg.privacy?.fitDp(), secagg,
    });
  }

  /**
   * Sends a secure-aggregation stage task (advertise-keys, share-keys, unmask; docs/protocol.md §12.3) naming the current model.
   */
  sendSecAggTask(
    nodeId: string, round: number, deadline: number,
    body: Omit<AdvertiseKeysTask, keyof TaskBase> | Omit<ShareKeysTask, keyof TaskBase> | Omit<UnmaskTask, keyof TaskBase>,
  ): OpenTask {
    return this.sendTask({ ...this.taskBase(nodeId, round, deadline), ...body });
  }

  /** Sends an evaluate task for the current global model to `nodeId`. */
  sendEvaluateTask(nodeId: string, round: number, deadline: number): OpenTask {
    return this.sendTask({ ...this.taskBase(nodeId, round, deadline), stage: 'evaluate', batchSize: this.cfg.evaluateBatchSize });
  }

  /** The fields every task carries (docs/protocol.md §3.4), with a fresh task id, naming the current global model. */
  private taskBase(nodeId: string, round: number, deadline: number): TaskBase {
    const m = this.currentModel();
    return {
      v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, nodeId, taskId: ++this.taskCounter, round, modelVersion: this.version, modelSha256: m.sha256,
      modelChunks: m.chunked ? m.payloads.length : undefined, deadline, timeoutMs: this.cfg.deadlineMs, valFraction: this.cfg.valFraction, ts: this.now(),
    };
  }

  private sendTask(task: NodeTask): OpenTask {
    const payload = encodeJson(task);
    const open: OpenTask = {
      taskId: task.taskId, nodeId: task.nodeId, stage: task.stage, round: task.round, version: task.modelVersion, sentAt: this.now(), deadline: task.deadline,
      answered: false, payload,
    };
    this.tasks.set(task.taskId, open);
    this.publish(topics.nodeTask(this.cfg.job, task.nodeId), payload, false);
    return open;
  }

  /** Closes tasks (they no longer accept answers) and retires model versions no task needs. */
  closeTasks(ids: Iterable<number>): void {
    for (const id of ids) this.tasks.delete(id);
    this.retireModels();
  }

  /**
   * Publishes the global model as the next version, retained on `models/{v}` (or in chunks), and
   * its meta; older versions that no open task names are cleared.
   */
  publishModel(round: number): void {
    this.version++;
    const tensors = globalToWire(this.global, this.cfg.downlink);
    const sha = weightsSha256(tensors);
    const msg: GlobalModelMessage = {
      v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, version: this.version, round, model: this.cfg.model, sha256: sha, tensors, ts: this.now(),
    };
    const payload = encodePacked(msg);
    const max = this.cfg.maxPayloadBytes;
    // a deterministic transfer id: the run and version identify the transfer
    const transfer = createHash('sha256').update(`${this.cfg.runId}:${this.version}`).digest('hex').slice(0, 32);
    const published: PublishedModel = { version: this.version, sha256: sha, payloads: max ? splitPayload(payload, max, transfer) : [payload], chunked: !!max };
    this.models.set(this.version, published);
    this.publishModelPayloads(published);
    const meta: ModelMeta = {
      v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, version: this.version, round, model: this.cfg.model, bytes: payload.length,
      params: this.global.reduce((n, t) => n + t.data.length, 0), sha256: sha, chunks: max ? published.payloads.length : undefined, ts: msg.ts,
    };
    this.publish(topics.modelMeta(this.cfg.job), encodeJson(meta), true);
    this.retireModels();
  }

  private publishModelPayloads(p: PublishedModel): void {
    if (!p.chunked) this.publish(topics.model(this.cfg.job, p.version), p.payloads[0], true);
    else p.payloads.forEach((c, i) => this.publish(topics.modelChunk(this.cfg.job, p.version, i), c, true));
  }

  /** Clears the retained topics of versions that are not current and that no open task names. */
  private retireModels(): void {
    for (const [v, p] of this.models) {
      if (v === this.version) continue;
      let used = false;
      for (const t of this.tasks.values()) if (t.version === v) used = true;
      if (used) continue;
      const empty = Buffer.alloc(0);
      if (!p.chunked) this.publish(topics.model(this.cfg.job, v), empty, true);
      else p.payloads.forEach((_, i) => this.publish(topics.modelChunk(this.cfg.job, v, i), empty, true));
      this.models.delete(v);
    }
  }

  private currentModel(): PublishedModel {
    const m = this.models.get(this.version);
    if (!m) throw new Error(`bug: model v${this.version} was not published`);
    return m;
  }

  /** Counts a rejected message in the round in progress and reports it. */
  reject(err: unknown, nodeId?: string): void {
    const error = isFedmqError(err) ? err : new FedmqError(ErrorCodes.BAD_PAYLOAD, String((err as Error)?.message ?? err));
    const failures = this.sync?.r.failures ?? this.fedbuff?.failures;
    if (failures) failures[error.code] = (failures[error.code] ?? 0) + 1;
    this.notice({ type: 'rejected', error, nodeId, round: this.currentRound() });
  }

  /**
   * Closes a round (server step): records it, publishes its metrics, checkpoints, and either
   * ends the run (all rounds done, too many failures, stop) or lets the caller start the next.
   * @returns true when the run goes on.
   */
  closeRound(record: RoundRecord): boolean {
    this.history.push(record);
    this.lastRound = record.round;
    this.failedInARow = record.accepted ? 0 : this.failedInARow + 1;
    const metrics: RoundMetrics = { v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, ...record, ts: this.now() };
    const payload = encodeJson(metrics);
    this.publish(topics.roundMetrics(this.cfg.job, record.round), payload, true);
    this.publish(topics.latestMetrics(this.cfg.job), payload, true);
    this.out.push({ type: 'persist', checkpoint: this.checkpoint() });
    this.notice({ type: 'round', record });
    if (this.failedInARow > this.cfg.maxRoundRetries) {
      this.finish('failed', new FedmqError(
        ErrorCodes.ROUND_FAILED,
        `${this.failedInARow} rounds in a row failed (last: round ${record.round}, ${record.reported} of ${record.selected} selected nodes reported; failures ${JSON.stringify(record.failures)}); the global model is that of round ${record.round - this.failedInARow}`,
        { round: record.round, failures: record.failures },
      ));
      return false;
    }
    if (this.history.filter((r) => r.accepted).length >= this.cfg.rounds) {
      this.finish('done');
      return false;
    }
    if (this.stopping) {
      this.finish('stopped');
      return false;
    }
    return true;
  }

  /** The checkpoint of the state after the last closed round. */
  checkpoint(): CoordinatorCheckpoint {
    return {
      format: 'fedmq-checkpoint', v: 2, job: this.cfg.job, runId: this.cfg.runId, model: this.cfg.model, seed: this.cfg.seed, mode: this.cfg.mode,
      round: this.lastRound, modelVersion: this.version, failedInARow: this.failedInARow, rngDraws: this.rngDraws, evalRngDraws: this.evalRngDraws,
      taskId: this.taskCounter, strategy: this.cfg.strategy.name, strategyState: this.cfg.strategy.getState(), history: [...this.history],
      weights: this.global.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data.slice() })), privacy: this.cfg.privacy?.getState(), ts: this.now(),
    };
  }

  /** Ends the run: final status, cancel the open tasks' timers, `finish` effect. */
  finish(outcome: 'done' | 'stopped' | 'failed', error?: FedmqError): void {
    if (this.finished) return;
    this.finished = true;
    for (const t of this.tasks.values()) this.out.push({ type: 'cancelTimer', id: `task:${t.taskId}` });
    this.tasks.clear();
    this.sync = undefined;
    // a run that spent its privacy budget ended as planned: done
    const final = encodeJson(this.status(outcome === 'done' || error?.code === ErrorCodes.PRIVACY_BUDGET ? 'done' : 'failed'));
    this.publish(topics.coordinatorStatus(this.cfg.job), final, true);
    this.publish(topics.legacyCoordinatorStatus(this.cfg.job), final, true);
    this.out.push({ type: 'finish', outcome, error });
  }

  /** The `coordinator/status` message of `state`. */
  status(state: CoordinatorStatus['state']): CoordinatorStatus {
    return {
      v: PROTOCOL_VERSION, job: this.cfg.job, runId: this.cfg.runId, state, mode: this.cfg.mode, round: this.history.filter((r) => r.accepted).length,
      rounds: this.cfg.rounds, config: this.cfg.describe, ts: this.now(),
    };
  }

  /**
   * Checks an update's tensors against the global model and the job's codec (docs/protocol.md §6,
   * rules 13–17), misaligned bytes copied into one reused scratch: views ready to fold.
   * @throws FedmqError FEDMQ_WRONG_CODEC, FEDMQ_MODEL_MISMATCH, FEDMQ_BAD_TENSOR, FEDMQ_NON_FINITE.
   */
  checkUpdate(u: UpdateMessage): Addable[] {
    return withScratch(this.scratch, () => checkUpdateTensors(u, this.global, this.cfg.codec));
  }

  /** k of `items` for federated evaluation, drawn from its own generator. */
  sampleForEvaluation(items: readonly string[], k: number): string[] {
    return sample(items, k, this.evalRng);
  }

  // ---- internals ----------------------------------------------------------------------------

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.publish(topics.coordinatorStatus(this.cfg.job), encodeJson(this.status('running')), true);
    // a v1 node reading this refuses it with FEDMQ_UNSUPPORTED_VERSION: it learns it speaks another version
    this.publish(topics.legacyCoordinatorStatus(this.cfg.job), encodeJson(this.status('running')), true);
    this.publishModel(this.lastRound);
    if (this.cfg.mode === 'async') this.fedbuff = new FedBuff(this, this.lastRound + 1);
    else this.beginSyncRound();
  }

  private beginSyncRound(): void {
    const round = this.lastRound + 1;
    // differential privacy: a round that would exceed the budget is not run (the last round's checkpoint is written)
    const ledger = this.cfg.privacy ?? this.cfg.distributedDp;
    if (ledger?.wouldExceedBudget()) {
      this.finish('stopped', ledger.budgetError(round));
      return;
    }
    const r = SYNC_ROUND.newRound(this, round);
    this.sync = { r, index: 0 };
    this.stages[0].enter(this, r);
  }

  /** Runs the current sync stage's callback, if a round is in progress. */
  private withStage(f: (stage: Stage<SyncRound>, r: SyncRound) => void): void {
    if (!this.sync) return;
    f(this.stages[this.sync.index], this.sync.r);
  }

  /** Moves through completed stages; closes the round after the last. */
  private advance(): void {
    if (this.fedbuff && !this.finished) {
      this.fedbuff.advance();
      return;
    }
    while (this.sync && !this.finished) {
      const { r } = this.sync;
      const stage = this.stages[this.sync.index];
      if (!stage.isComplete(this, r)) return;
      this.out.push({ type: 'cancelTimer', id: `stage:${r.round}:${stage.name}` });
      stage.exit(this, r);
      this.sync.index++;
      if (this.sync.index < this.stages.length) {
        this.stages[this.sync.index].enter(this, r);
        continue;
      }
      this.sync = undefined;
      if (this.closeRound(SYNC_ROUND.record(this, r))) this.beginSyncRound();
    }
  }

  private onTimer(id: string): void {
    if (id.startsWith('task:')) {
      this.fedbuff?.onTaskTimeout(Number(id.slice(5)));
      return;
    }
    const s = this.sync;
    if (!s) return;
    const stage = this.stages[s.index];
    if (id !== `stage:${s.r.round}:${stage.name}`) return; // a stale timer of a closed stage
    s.r.closed.add(stage.name);
  }

  private stop(): void {
    this.stopping = true;
    if (this.fedbuff) {
      this.fedbuff.stop();
      return;
    }
    const s = this.sync;
    if (!s) {
      this.finish('stopped');
      return;
    }
    const stage = this.stages[s.index];
    // waiting for nodes before any task went out: nothing of this round happened
    if (stage.name === 'waiting') {
      this.sync = undefined;
      this.finish('stopped');
      return;
    }
    s.r.closed.add(stage.name);
  }

  private republish(): void {
    if (!this.started) return;
    this.publish(topics.coordinatorStatus(this.cfg.job), encodeJson(this.status(this.finished ? 'done' : 'running')), true);
    for (const p of this.models.values()) this.publishModelPayloads(p);
    for (const t of this.tasks.values()) if (!t.answered) this.publish(topics.nodeTask(this.cfg.job, t.nodeId), t.payload, false);
  }

  private onMessage(topic: string, payload: Uint8Array, wireBytes: number): void {
    let nodeId: string | undefined;
    let kind: string | undefined;
    try {
      const t = parseTopic(topic);
      kind = t.kind;
      if (t.job !== this.cfg.job) return;
      switch (t.kind) {
        case 'nodeStatus':
          nodeId = t.nodeId;
          this.onStatus(t.nodeId, payload);
          return;
        case 'legacyNodeStatus': {
          if (payload.byteLength === 0) return;
          nodeId = t.nodeId;
          const s = decodeJson(NodeStatusSchema, payload, `node ${t.nodeId}'s protocol v1 status`); // a v1 node: FEDMQ_UNSUPPORTED_VERSION
          if (s.job !== this.cfg.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `status for job ${s.job} on job ${this.cfg.job}'s v1 topic`);
          if (s.nodeId !== t.nodeId) throw new FedmqError(ErrorCodes.SCHEMA, `status of ${s.nodeId} on the v1 topic of ${t.nodeId}`);
          return; // a v2 node announcing itself on the v1 topic too (it saw a v1 coordinator): nothing to do
        }
        case 'nodeUpdate':
          nodeId = t.nodeId;
          this.onUpdate(t.nodeId, payload, wireBytes);
          return;
        case 'nodeEvaluation':
          nodeId = t.nodeId;
          this.onEvaluation(t.nodeId, payload, wireBytes);
          return;
        case 'nodeSecAgg':
          nodeId = t.nodeId;
          this.onSecAgg(t.nodeId, payload, wireBytes);
          return;
        default:
          return; // the coordinator's own topics
      }
    } catch (err) {
      if (kind === 'nodeUpdate' || kind === 'nodeEvaluation' || kind === 'nodeSecAgg') this.reject(err, nodeId);
      else this.notice({ type: 'rejected', error: isFedmqError(err) ? err : new FedmqError(ErrorCodes.BAD_PAYLOAD, String(err)), nodeId, round: this.currentRound() });
    }
  }

  private onStatus(nodeId: string, payload: Uint8Array): void {
    if (payload.byteLength === 0) {
      this.registry.remove(nodeId);
      return;
    }
    const s: NodeStatus = decodeJson(NodeStatusSchema, payload, 'node status');
    if (s.job !== this.cfg.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `status for job ${s.job} on job ${this.cfg.job}'s topic`);
    if (s.nodeId !== nodeId) throw new FedmqError(ErrorCodes.SCHEMA, `status of ${s.nodeId} on the topic of ${nodeId}`);
    this.registry.update(s);
    this.noteFit(s);
    // an open task of this node that the status speaks of
    const open = [...this.tasks.values()].find((t) => t.nodeId === nodeId && !t.answered && (s.taskId === undefined || t.taskId <= s.taskId));
    // back after a lost link (its Will said offline) and still working on the task: its QoS 1 answer may yet arrive
    const back = (s.state === 'training' || s.state === 'uploading' || s.state === 'evaluating') && (s.taskId === undefined || s.taskId === open?.taskId);
    // idle after the task without having answered it (answers are published before the status, in order): it gave the task up
    const gaveUp = s.state === 'idle' && s.taskId !== undefined && open !== undefined;
    const presence = back ? 'back' : gaveUp ? 'gave-up' : s.state === 'offline' ? 'offline' : undefined;
    if (presence) {
      this.withStage((stage, r) => stage.onPresence?.(this, r, nodeId, presence));
      if (presence === 'offline') this.fedbuff?.onOffline(nodeId, 'offline');
      if (presence === 'gave-up') this.fedbuff?.onOffline(nodeId, 'failed', s.taskId);
    }
  }

  /**
   * A status saying the node's data does not fit the job's model excludes it from selection
   * ({@link eligibleNodes}); the first such status is reported once as a FEDMQ_MODEL_MISMATCH
   * rejection, counted in the round in progress. A later status without it makes it eligible again.
   */
  private noteFit(s: NodeStatus): void {
    const m = s.dataMismatch;
    if (m?.model !== this.cfg.model) {
      this.unfit.delete(s.nodeId);
      return;
    }
    if (this.unfit.has(s.nodeId)) return;
    this.unfit.add(s.nodeId);
    this.reject(new FedmqError(
      ErrorCodes.MODEL_MISMATCH,
      `node ${s.nodeId} excluded from selection: its data does not fit model ${m.model} (${m.code}: ${m.message})`,
      { nodeId: s.nodeId, model: m.model, nodeCode: m.code },
    ), s.nodeId);
  }

  /** The common checks of an answer (docs/protocol.md §6, rules 5–10). */
  private openTask(nodeId: string, msg: { job: string; nodeId: string; runId: string; taskId: number; round: number; modelVersion: number }, stage: OpenTask['stage']): OpenTask {
    if (msg.job !== this.cfg.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `answer for job ${msg.job}`);
    if (msg.nodeId !== nodeId) throw new FedmqError(ErrorCodes.SCHEMA, `answer of ${msg.nodeId} on the topic of ${nodeId}`);
    const task = this.tasks.get(msg.taskId);
    if (msg.runId !== this.cfg.runId || !task || task.stage !== stage) {
      throw new FedmqError(ErrorCodes.STALE_UPDATE, `answer to ${stage} task ${msg.taskId} of run ${msg.runId} (round ${msg.round}, model v${msg.modelVersion}): no such task is open in run ${this.cfg.runId}`, { updateRound: msg.round, taskId: msg.taskId });
    }
    if (task.nodeId !== nodeId) throw new FedmqError(ErrorCodes.NOT_SELECTED, `task ${task.taskId} was sent to ${task.nodeId}, not to ${nodeId}`, { taskId: task.taskId });
    if (task.answered) throw new FedmqError(ErrorCodes.DUPLICATE_UPDATE, `${nodeId} already answered task ${task.taskId} (round ${task.round})`, { taskId: task.taskId });
    if (msg.round !== task.round || msg.modelVersion !== task.version) {
      throw new FedmqError(ErrorCodes.STALE_UPDATE, `answer to task ${task.taskId} names round ${msg.round}, model v${msg.modelVersion}; the task was round ${task.round}, model v${task.version}`, { taskId: task.taskId });
    }
    return task;
  }

  private onUpdate(nodeId: string, payload: Uint8Array, wireBytes: number): void {
    const update = decodeUpdate(payload);
    const task = this.openTask(nodeId, update, 'fit');
    const answer: Answer = { kind: 'update', task, update, wireBytes };
    if (this.fedbuff) this.fedbuff.onUpdate(answer);
    else this.dispatch(answer);
  }

  private onSecAgg(nodeId: string, payload: Uint8Array, wireBytes: number): void {
    const answer = decodeSecAggAnswer(payload);
    const task = this.openTask(nodeId, answer, answer.stage);
    this.dispatch({ kind: 'secagg', task, answer, wireBytes });
  }

  private onEvaluation(nodeId: string, payload: Uint8Array, wireBytes: number): void {
    const result = decodeJson(EvaluateResultSchema, payload, 'evaluation result');
    const task = this.openTask(nodeId, result, 'evaluate');
    this.dispatch({ kind: 'evaluation', task, result, wireBytes });
  }

  private dispatch(answer: Answer): void {
    const s = this.sync;
    const stage = s && this.stages[s.index];
    if (!s || !stage || stage.accepts !== answer.kind || answer.task.round !== s.r.round || (answer.kind === 'secagg' && answer.task.stage !== stage.name)) {
      throw new FedmqError(ErrorCodes.STALE_UPDATE, `answer to task ${answer.task.taskId} arrived after its stage closed`, { taskId: answer.task.taskId });
    }
    stage.onAnswer!(this, s.r, answer);
    answer.task.answered = true;
  }

}

/**
 * Checks an {@link EngineConfig}.
 * @throws FedmqError FEDMQ_BAD_CONFIG naming the first bad field.
 */
export function validateConfig(c: EngineConfig): void {
  const bad = (msg: string) => {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, msg);
  };
  topics.model(c.job, 1); // FEDMQ_BAD_TOPIC on a bad job id
  const int = (name: string, v: number, min: number) => {
    if (!(Number.isInteger(v) && v >= min)) bad(`${name} must be an integer ≥ ${min}, got ${v}`);
  };
  int('rounds', c.rounds, 1);
  int('minAvailableNodes', c.minAvailableNodes, 1);
  int('minAcceptedUpdates', c.minAcceptedUpdates, 1);
  int('maxRoundRetries', c.maxRoundRetries, 0);
  int('evaluateBatchSize', c.evaluateBatchSize, 1);
  if (!(c.deadlineMs > 0 && Number.isFinite(c.deadlineMs))) bad(`deadlineMs must be positive, got ${c.deadlineMs}`);
  if (!(c.minCompletionRate >= 0 && c.minCompletionRate <= 1)) bad(`minCompletionRate must be in [0, 1], got ${c.minCompletionRate}`);
  if (!(c.overSelection >= 0 && Number.isFinite(c.overSelection))) bad(`overSelection must be ≥ 0, got ${c.overSelection}`);
  if (!(c.evaluateFraction >= 0 && c.evaluateFraction <= 1)) bad(`evaluateFraction must be in [0, 1], got ${c.evaluateFraction}`);
  if (!(c.valFraction >= 0 && c.valFraction <= 0.9)) bad(`valFraction must be in [0, 0.9], got ${c.valFraction}`);
  if (c.evaluateFraction > 0 && c.valFraction === 0) bad('federated evaluation (evaluateFraction > 0) needs held-out data: valFraction > 0');
  if (c.privacy && c.evaluateFraction > 0) bad('federated evaluation publishes the nodes\' un-noised accuracy and loss; differential privacy cannot account for it (use a central test set)');
  if (c.privacy && c.overSelection > 0) bad('over-selection changes who is sampled after the fact; differential privacy needs the Poisson cohort as drawn (overSelection 0)');
  if ((c.privacy !== undefined) !== (c.strategy.aggregator.name === 'dp-fedavg')) bad('differential privacy needs both the strategy made by withDp (Poisson selector, DP-FedAvg aggregator) and its ledger as `privacy`');
  if (c.secagg) validateSecAgg(c);
  if (c.mode === 'async') {
    const a = c.async;
    if (!a) return bad('mode async needs its FedBuff options (bufferSize, concurrency, staleness, maxStaleness)');
    int('bufferSize', a.bufferSize, 1);
    int('concurrency', a.concurrency, 1);
    int('maxStaleness', a.maxStaleness, 0);
    if (a.staleness.kind === 'polynomial' && !(a.staleness.exponent >= 0 && Number.isFinite(a.staleness.exponent))) bad(`staleness exponent must be ≥ 0, got ${a.staleness.exponent}`);
    if (c.evaluateFraction > 0) bad('federated evaluation runs between synchronous rounds; it is not available in async mode (use a central test set)');
    if (c.overSelection > 0) bad('over-selection is for synchronous rounds; async mode keeps `concurrency` nodes busy instead');
    if (!c.strategy.aggregator.streaming) bad(`aggregator ${c.strategy.aggregator.name} keeps every update; async mode needs a streaming aggregator (mean, norm-bounding)`);
    if (c.privacy) bad('differential privacy runs synchronous rounds: its accountant assumes one Poisson-sampled cohort per release, which FedBuff\'s buffers are not');
  } else if (c.mode !== 'sync') {
    bad(`mode must be sync or async, got ${String(c.mode)}`);
  }
}


/**
 * What composes with secure aggregation (docs/privacy.md, "What composes with secure
 * aggregation"): the coordinator sees only the sum of the survivors' quantized inputs, so every
 * part of the job that needs an individual update, or a sum it could not unmask, is refused.
 * @throws FedmqError FEDMQ_SECAGG_COMPOSITION naming the first combination that does not compose; FEDMQ_BAD_CONFIG on bad secagg options
 */
export function validateSecAgg(c: EngineConfig): void {
  const s = c.secagg!;
  const no = (msg: string) => {
    throw new FedmqError(ErrorCodes.SECAGG_COMPOSITION, msg);
  };
  if (!(s.thresholdFraction > 0 && s.thresholdFraction <= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `secure aggregation's threshold fraction must be in (0, 1], got ${s.thresholdFraction}`);
  if (s.neighbours !== undefined && !(Number.isInteger(s.neighbours) && s.neighbours >= 2 && s.neighbours % 2 === 0)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `secure aggregation's neighbours must be an even integer ≥ 2, got ${s.neighbours}`);
  }
  if (c.mode !== 'sync') no('secure aggregation runs synchronous rounds: FedBuff folds single updates as they arrive, which a masked input cannot be');
  if (c.codec === 'topk' || c.codec === 'topk-int8') no(`codec ${c.codec} sends each node's own coordinates; masked sums need every node to send the same coordinates (a dense codec; top-k only with coordinates chosen by a shared seed, not implemented)`);
  if (c.strategy.aggregator.name !== 'mean') no(`aggregator ${c.strategy.aggregator.name} needs each update (robust rules and clipping see individual updates); secure aggregation gives only their sum: use the mean (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad, FedProx)`);
  if (c.privacy) no(`differential privacy mode ${c.privacy.mode} needs individual updates at the coordinator; with secure aggregation use --dp distributed`);
  if (c.overSelection > 0) no('over-selection closes the fit stage once k updates arrived; secure aggregation needs every selected node\'s key shares (overSelection 0)');
}
