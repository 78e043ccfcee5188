import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  ErrorCodes, FedmqError, Reassembler, encodeJson, globalToWire, isFedmqError, keepReconnecting, packMessage, parseTopic, topicFilter, topics, unpackMessage,
  weightsFromWire, type BackoffOptions, type CodecName, type CodecParams, type DownlinkDtype, type NamedTensor, type NodeStatus, type Reconnector,
  type RoundRecord, type StageName,
} from '@fedmq/protocol';
import { checkDataFits, createModel, type Dataset, type FederatedModel } from '@fedmq/ml';
import type { Strategy } from './strategy.ts';
import { RoundMachine } from './engine/machine.ts';
import { maxMaskedInputBytes, maxUpdateBytes } from './validate.ts';
import type { DpOptions } from './privacy/options.ts';
import { PrivacyLedger } from './privacy/ledger.ts';
import { withDp } from './privacy/dp-fedavg.ts';
import { DistributedDpLedger, ddgSecAggEncoding } from './privacy/distributed.ts';
import { fedavgEncoding, type SecAggOptions } from './engine/secagg.ts';
import type { RandomSource, SecAggGraphKind } from '@fedmq/privacy';
import type { AsyncOptions, CoordinatorCheckpoint, Effect, EngineConfig, EngineEvent, EngineNotice } from './engine/types.ts';

/** Options of {@link Coordinator}. */
export interface CoordinatorOptions {
  /** Broker URL, e.g. `mqtt://localhost:1883`. */
  brokerUrl: string;
  job: string;
  /** Identifies this run in every message; default derived from the start time. */
  runId?: string;
  /** Model architecture, by `@fedmq/ml` registry name (e.g. `mnist-2nn`). */
  model: string;
  /** Accepted rounds (sync) or server steps (async) to run (≥ 1). */
  rounds: number;
  strategy: Strategy;
  /** `sync` rounds (default) or `async` buffered aggregation (FedBuff; needs `async`). */
  mode?: 'sync' | 'async';
  /** FedBuff options (mode `async`): buffer size K, concurrency C, staleness function, max staleness S. */
  async?: AsyncOptions;
  /** Nodes that must be online before a round starts (Flower's `minAvailableNodes`). */
  minAvailableNodes: number;
  /**
   * Accepted updates a round needs to count; default 1. A round that closes (deadline, or every
   * selected node answered or went offline) with fewer keeps the global model unchanged and is
   * retried as the next round.
   */
  minAcceptedUpdates?: number;
  /** Accepted updates a round needs, as a fraction of the nodes selected, in [0, 1]; default 0. */
  minCompletionRate?: number;
  /**
   * Over-selection (Bonawitz et al. 2019, "Towards Federated Learning at Scale", §2.2): select
   * ⌈(1 + overSelection) · k⌉ nodes, k being the selector's pick, and close the fit stage as soon
   * as k updates are accepted; later updates are rejected as stale. Default 0.
   */
  overSelection?: number;
  /** Failed rounds in a row after which the run aborts (FEDMQ_ROUND_FAILED). Default 3. */
  maxRoundRetries?: number;
  /** Folder of `checkpoint.msgpack`, written atomically after every round (default: `outDir`; none when neither is set). */
  checkpointDir?: string;
  /** Continue the run saved in this checkpoint (from {@link Coordinator.loadCheckpoint}) instead of starting at round 1. */
  resume?: CoordinatorCheckpoint;
  /** Deadline of every stage that waits for nodes (fit, evaluate; each async fit task), ms after its tasks are sent. */
  deadlineMs: number;
  /** Folder for `history.json`, the checkpoint and `model/` (TensorFlow.js format); none written when omitted. */
  outDir?: string;
  /** Held-out test set for centralized evaluation after each round (a fleet usually has none: see `evaluateFraction`). */
  testData?: Dataset;
  /**
   * Federated evaluation: after every round, this fraction of the online nodes (at least one)
   * evaluates the new global model, and its own local model, on its held-out data
   * (docs/protocol.md §5.4). Default 0 (off). Sync mode only.
   */
  evaluateFraction?: number;
  /** Fraction of every node's data held out for evaluation, [0, 0.9]; default 0.1 when `evaluateFraction` > 0, else 0. */
  valFraction?: number;
  /** Batch size of federated evaluation on the nodes. Default 256. */
  evaluateBatchSize?: number;
  /** Uplink codec nodes must use (docs/codecs.md). Default `float32`. */
  codec?: CodecName;
  /** Its parameters (top-k fraction `k`, int8 `blockSize`). */
  codecParams?: CodecParams;
  /**
   * Largest MQTT payload, bytes (e.g. 128 KiB for AWS IoT Core): when set, the global model is
   * published in retained chunks on `models/{v}/chunks/{i}` and nodes send their updates in chunks
   * (docs/protocol.md §10). Unset: whole payloads.
   */
  maxPayloadBytes?: number;
  /** Encoding of the global model on the downlink: `float32` (default) or `float16` (half the bytes). */
  downlink?: DownlinkDtype;
  /** Seed of the initial model and of node selection. Default 42. */
  seed?: number;
  logger?: Logger;
  /** Extra mqtt.js options (credentials, TLS …). */
  mqtt?: IClientOptions;
  /** Reconnection after a lost connection: exponential backoff with jitter (`keepReconnecting`), or `false` for none. */
  reconnect?: BackoffOptions | false;
  /** The clock, ms since the epoch; default `Date.now`. Injected into the round engine. */
  clock?: () => number;
  /** Client-level differential privacy (docs/privacy.md); off when absent. */
  dp?: DpOptions;
  /** The randomness of DP (cohorts, noise); default the process CSPRNG. A seeded stream in tests only. */
  dpRandom?: RandomSource;
  /** Secure aggregation (docs/privacy.md, "Secure aggregation"): the coordinator learns only the sum of the round's updates. Off when absent. */
  secagg?: SecAggJobOptions;
}

/** Secure aggregation of a job (`--secagg`, docs/privacy.md). */
export interface SecAggJobOptions {
  /** `harary` (SecAgg+, default) or `complete` (the original SecAgg). */
  graph?: SecAggGraphKind;
  /** θ ∈ (0, 1]: fraction of the cohort that must survive every stage, and of each node's neighbours that must hold its shares. Default 0.5. */
  thresholdFraction?: number;
  /** k: neighbours per node (even); default from the cohort (docs/privacy.md, "Neighbours"). */
  neighbours?: number;
  /** Per-coordinate clipping range [−clip, clip] of the quantized deltas. Default 1 (not used by distributed DP, which clips in L2). */
  clip?: number;
  /** Bits of a quantization level (FedAvg) or of C/γ + 2 (distributed DP). Default 16. */
  quantBits?: number;
}

/** Events a {@link Coordinator} emits. */
export interface CoordinatorEvents {
  /**
   * The round engine entered a stage: its cohort (fit: the nodes selected; async fit: the
   * concurrency C), its deadline (ms since the epoch on the injected clock; none for a stage that
   * waits for no node) and the nodes online then — what `coordinator/stage` carries.
   */
  stage: [{ stage: StageName; round: number; cohort: number; deadline?: number; online: number }];
  round: [RoundRecord];
  /** An answer was rejected (with its code); the run goes on. */
  rejected: [{ error: FedmqError; nodeId?: string; round: number }];
  /** An update was accepted into `round` (`bytes` on the wire; `trainMs` the node's own training time). */
  accepted: [{ nodeId: string; round: number; bytes: number; taskId: number; trainMs: number }];
}

/** File name of the checkpoint in its folder. */
export const CHECKPOINT_FILE = 'checkpoint.msgpack';

/**
 * The coordinator: the round engine ({@link RoundMachine}, a pure state machine) behind thin
 * adapters — MQTT (subscriptions, publishing its effects in order, chunk reassembly), timers on
 * the injected clock, the central evaluation (tfjs), and files (checkpoint, history.json, the
 * final model). Round lifecycle, message rules and error codes: docs/protocol.md §5–6;
 * stages: docs/architecture.md.
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  readonly job: string;
  readonly runId: string;
  private readonly opts: CoordinatorOptions;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly machine: RoundMachine;
  private ran = false;
  private model?: FederatedModel;
  private client?: MqttClient;
  private reconnector?: Reconnector;
  private reassembler?: Reassembler;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private queue: Promise<void> = Promise.resolve();
  private finished?: { resolve: (h: RoundRecord[]) => void; reject: (e: unknown) => void };
  private done = false;
  /** Differential privacy of the run (accountant, clip norm), when `dp` is set. */
  readonly privacy?: PrivacyLedger;
  /** Distributed differential privacy under secure aggregation (`dp.mode` distributed): its ledger. */
  readonly distributedDp?: DistributedDpLedger;
  /** Why a run that resolved stopped early, when it was not a `stop()`: FEDMQ_PRIVACY_BUDGET. */
  stopError?: FedmqError;

  /**
   * @throws FedmqError FEDMQ_BAD_CONFIG on an invalid option or unknown model, FEDMQ_BAD_TOPIC on
   *   a bad job id, FEDMQ_CHECKPOINT when `resume` is of another job, model, strategy or seed;
   *   FedmqMlError ML_BAD_DATA when `testData` does not fit the model (features, classes).
   */
  constructor(opts: CoordinatorOptions) {
    super();
    this.opts = opts;
    this.job = opts.job;
    this.runId = opts.runId ?? `run-${Date.now().toString(36)}`;
    this.clock = opts.clock ?? Date.now;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ job: opts.job });
    const evaluateFraction = opts.evaluateFraction ?? 0;
    let strategy = opts.strategy;
    const selectorFraction = (strategy.selector as { fraction?: unknown }).fraction;
    const fraction = typeof selectorFraction === 'number' ? selectorFraction : undefined;
    if (opts.dp?.mode === 'distributed' && !opts.secagg) throw new FedmqError(ErrorCodes.SECAGG_COMPOSITION, 'distributed DP (--dp distributed) needs secure aggregation (--secagg): without it the coordinator sees every noised update');
    let model: FederatedModel;
    try {
      model = createModel(opts.model, opts.seed ?? 42);
    } catch (err) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown model ${JSON.stringify(opts.model)}`, {}, { cause: err });
    }
    try {
      const weights = opts.resume ? opts.resume.weights : model.getWeights();
      let secagg: SecAggOptions | undefined;
      if (opts.secagg) {
        const s = opts.secagg;
        const thresholdFraction = s.thresholdFraction ?? 0.5;
        const quantBits = s.quantBits ?? 16;
        let encoding: Pick<SecAggOptions, 'encoding' | 'onRelease'> = fedavgEncoding(s.clip ?? 1, quantBits);
        if (opts.dp?.mode === 'distributed') {
          if (opts.resume) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'resuming a distributed-DP run is not supported: its accountant is not in the checkpoint');
          const dims = weights.reduce((n, t) => n + t.data.length, 0);
          const expectedThreshold = Math.max(2, Math.ceil(thresholdFraction * Math.max(2, Math.ceil((fraction ?? 1) * opts.minAvailableNodes))));
          this.distributedDp = new DistributedDpLedger(opts.dp, { dims, expectedThreshold, fraction: fraction ?? 1, quantBits });
          encoding = ddgSecAggEncoding(this.distributedDp);
        }
        secagg = { graph: s.graph ?? 'harary', thresholdFraction, neighbours: s.neighbours, ...encoding };
      }
      if (opts.dp && opts.dp.mode !== 'distributed') {
        if (fraction === undefined) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'dp: the strategy must sample a fraction of the nodes (--fraction), the Poisson sampling probability q');
        this.privacy = new PrivacyLedger(opts.dp, { fraction, rounds: opts.rounds, expectedCohort: fraction * opts.minAvailableNodes }, opts.dpRandom);
        strategy = withDp(strategy, this.privacy);
      }
      const cfg: EngineConfig = {
        job: opts.job, runId: this.runId, model: opts.model, mode: opts.mode ?? 'sync', rounds: opts.rounds, strategy, privacy: this.privacy, secagg, distributedDp: this.distributedDp,
        minAvailableNodes: opts.minAvailableNodes, minAcceptedUpdates: opts.minAcceptedUpdates ?? 1, minCompletionRate: opts.minCompletionRate ?? 0,
        overSelection: opts.overSelection ?? 0, maxRoundRetries: opts.maxRoundRetries ?? 3, deadlineMs: opts.deadlineMs, codec: opts.codec ?? 'float32',
        codecParams: opts.codecParams, maxPayloadBytes: opts.maxPayloadBytes, downlink: opts.downlink ?? 'float32', seed: opts.seed ?? 42,
        centralEval: opts.testData !== undefined, evaluateFraction, valFraction: opts.valFraction ?? (evaluateFraction > 0 ? 0.1 : 0),
        evaluateBatchSize: opts.evaluateBatchSize ?? 256, async: opts.async, describe: this.describe(),
      };
      // a test set that does not fit the model fails now, not after round 1 trained
      if (opts.testData) checkDataFits(opts.testData, model.info, 'testData');
      this.machine = new RoundMachine(cfg, { weights, resume: opts.resume }, this.clock);
    } catch (err) {
      model.dispose();
      throw err;
    }
    this.model = model;
  }

  /**
   * Reads `dir/checkpoint.msgpack`.
   * @throws FedmqError FEDMQ_CHECKPOINT when the file is missing, unreadable or of another format.
   */
  static async loadCheckpoint(dir: string): Promise<CoordinatorCheckpoint> {
    let bytes: Buffer;
    try {
      bytes = await readFile(join(dir, CHECKPOINT_FILE));
    } catch (err) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `no checkpoint in ${dir}: ${(err as Error).message}`, {}, { cause: err });
    }
    let cp: CoordinatorCheckpoint;
    try {
      cp = unpackMessage(bytes) as CoordinatorCheckpoint;
    } catch (err) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `${join(dir, CHECKPOINT_FILE)} is not MessagePack`, {}, { cause: err });
    }
    if (cp?.format !== 'fedmq-checkpoint' || cp.v !== 2 || !Array.isArray(cp.weights) || !Array.isArray(cp.history)) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `${join(dir, CHECKPOINT_FILE)} is not a version 2 fedmq checkpoint`);
    }
    try {
      // stored as the global model's wire tensors: shapes, dtype and byte lengths are checked here
      cp.weights = weightsFromWire(cp.weights);
    } catch (err) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `${join(dir, CHECKPOINT_FILE)}: ${(err as Error).message}`, {}, { cause: err });
    }
    return cp;
  }

  /** Rounds (server steps) closed so far. */
  get history(): RoundRecord[] {
    return this.machine.history;
  }

  /** A copy of the current global model's weights. */
  globalWeights(): NamedTensor[] {
    return this.machine.global.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data.slice() }));
  }

  /** Online node ids (from the registry). */
  onlineNodes(): string[] {
    return this.machine.onlineNodes();
  }

  /** Every node's latest status. */
  nodes(): NodeStatus[] {
    return this.machine.registry.all();
  }

  /** How the coordinator was started, without secrets or local paths (the `config` of coordinator/status). */
  describe(): Record<string, unknown> {
    // brokerUrl may carry credentials and outDir is a local path: neither goes on the wire
    const { strategy, testData: _t, logger: _l, mqtt: _m, brokerUrl: _b, outDir: _o, checkpointDir: _c, resume, clock: _k, dpRandom: _r, dp, ...rest } = this.opts;
    const p = this.privacy;
    const privacy = dp && p ? { dp: { ...dp, noiseMultiplier: p.noiseMultiplier, delta: p.delta, q: p.q, sampling: 'poisson' } } : dp ? { dp: { ...dp, sampling: 'none' } } : {};
    return { ...rest, ...privacy, runId: this.runId, strategy: strategy.name, ...(resume ? { resumedFrom: resume.runId, resumedAtRound: resume.round } : {}) };
  }

  /**
   * Runs every round and resolves with the history. With `outDir`: `history.json` and the
   * checkpoint after each round, the final global model (`model/`, TensorFlow.js format) at the end.
   * @throws FedmqError FEDMQ_ROUND_FAILED after too many failed rounds; the MQTT error when the broker is unreachable.
   */
  async run(): Promise<RoundRecord[]> {
    if (this.ran) throw new Error('run() can be called once');
    this.ran = true;
    if (this.opts.maxPayloadBytes) {
      // one pending transfer per node, none larger than an honest update of this model and codec:
      // a node can hold at most one update's worth of the shared budget (docs/chunking.md §3)
      this.reassembler = new Reassembler({
        // with secure aggregation the updates are masked inputs (d + 1 words of b ≤ 32 bits), whatever the codec
        maxTotalBytes: this.opts.secagg ? maxMaskedInputBytes(this.machine.global) : maxUpdateBytes(this.machine.global, this.opts.codec ?? 'float32', this.opts.codecParams),
        maxPendingBytes: 1024 * 2 ** 20, maxPendingPerSender: 1, timeoutMs: this.opts.deadlineMs,
        onError: (error, info) => this.dispatch({ type: 'rejected', error, nodeId: info.sender }),
      });
    }
    const finished = new Promise<RoundRecord[]>((resolve, reject) => (this.finished = { resolve, reject }));
    await this.connect();
    if (this.opts.resume) this.log.info({ round: this.opts.resume.round, resumedFrom: this.opts.resume.runId }, 'resumed from checkpoint');
    this.dispatch({ type: 'start' });
    return finished;
  }

  /** Ends the run after the current stage; `run()` then resolves with the rounds done so far. */
  async stop(): Promise<void> {
    if (!this.done) this.dispatch({ type: 'stop' });
    await this.queue;
  }

  /**
   * Stops, ends the coordinator's persistent session and disconnects from the broker, and frees
   * the model. The session is ended by unsubscribing from its filters before the DISCONNECT
   * (MQTT 3.1.1 §3.10): a broker keeps a `clean: false` session after the client leaves and would
   * otherwise go on queueing every node's QoS 1 update for a coordinator that is not coming back.
   * A coordinator that dies without `close()` (kill, crash) keeps its session, so the broker holds
   * what arrives for `--resume` (bounded by the broker's queue limits, docs/security.md).
   */
  async close(): Promise<void> {
    if (this.client && !this.done) await this.stop();
    this.clearTimers();
    this.reassembler?.close();
    this.reconnector?.stop();
    if (this.client?.connected) {
      await this.client.unsubscribeAsync(Object.keys(this.subscriptions())).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'ending the session: unsubscribe failed'));
    }
    if (this.client) await this.client.endAsync();
    this.model?.dispose();
    this.model = undefined;
  }

  /** Feeds an event to the machine and queues its effects behind those already queued. */
  private dispatch(event: EngineEvent): void {
    if (this.done) return;
    const effects = this.machine.handle(event);
    if (effects.length === 0) return;
    this.queue = this.queue.then(() => this.execute(effects)).catch((err: unknown) => this.fail(err));
  }

  private async execute(effects: readonly Effect[]): Promise<void> {
    for (const e of effects) {
      switch (e.type) {
        case 'publish':
          await this.client!.publishAsync(e.topic, e.payload, { qos: e.qos, retain: e.retain });
          break;
        case 'timer': {
          clearTimeout(this.timers.get(e.id));
          this.timers.set(e.id, setTimeout(() => {
            this.timers.delete(e.id);
            this.dispatch({ type: 'timer', id: e.id });
          }, Math.max(0, e.at - this.clock())));
          break;
        }
        case 'cancelTimer':
          clearTimeout(this.timers.get(e.id));
          this.timers.delete(e.id);
          break;
        case 'compute': {
          try {
            const value = await e.run();
            this.dispatch({ type: 'computed', id: e.id, value });
          } catch (error) {
            this.dispatch({ type: 'computed', id: e.id, error });
          }
          break;
        }
        case 'evaluate': {
          const m = this.model!;
          m.setWeights([...e.weights]);
          const ev = await m.evaluate(this.opts.testData!);
          this.dispatch({ type: 'evaluated', version: e.version, loss: ev.loss, accuracy: ev.accuracy });
          break;
        }
        case 'persist':
          await this.writeCheckpoint(e.checkpoint);
          await this.writeHistory(e.checkpoint.history);
          break;
        case 'emit':
          this.notice(e.event);
          break;
        case 'finish':
          await this.finish(e.outcome, e.error);
          break;
      }
    }
  }

  private notice(n: EngineNotice): void {
    switch (n.type) {
      case 'stage':
        this.log.debug({ round: n.round, stage: n.stage }, 'stage');
        this.dropStaleTransfers();
        this.emit('stage', { stage: n.stage, round: n.round, cohort: n.cohort, deadline: n.deadline, online: n.online });
        break;
      case 'round':
        this.log.info({ round: n.record.round, accepted: n.record.accepted, reported: n.record.reported, selected: n.record.selected }, 'round closed');
        this.dropStaleTransfers();
        this.emit('round', n.record);
        break;
      case 'accepted':
        this.emit('accepted', { nodeId: n.nodeId, round: n.round, bytes: n.bytes, taskId: n.taskId, trainMs: n.trainMs });
        break;
      case 'rejected':
        this.log.warn({ code: n.error.code, nodeId: n.nodeId, round: n.round, ...n.error.details }, n.error.message);
        this.emit('rejected', { error: n.error, nodeId: n.nodeId, round: n.round });
        break;
    }
  }

  /** Frees the incomplete update transfers of nodes whose fit task has closed (its round or stage ended): their updates could no longer count. */
  private dropStaleTransfers(): void {
    const dropped = this.reassembler?.dropWhere((nodeId) => !this.machine.expectsUpdate(nodeId)) ?? [];
    for (const d of dropped) this.log.info({ nodeId: d.sender, transfer: d.transfer, total: d.total }, 'incomplete update transfer dropped: its task closed');
  }

  private async finish(outcome: 'done' | 'stopped' | 'failed', error?: FedmqError): Promise<void> {
    this.done = true;
    if (outcome === 'stopped' && error) {
      this.stopError = error;
      this.log.warn({ code: error.code, ...error.details }, error.message);
    }
    this.clearTimers();
    if (this.opts.outDir && this.model) {
      this.model.setWeights(this.machine.global);
      await this.model.save(join(this.opts.outDir, 'model'));
    }
    if (outcome === 'failed') this.finished?.reject(error);
    else this.finished?.resolve(this.machine.history);
  }

  /** An adapter failed (a publish, a file): the run fails with that error. */
  private fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.clearTimers();
    this.log.error({ err: (err as Error)?.message }, 'coordinator failed');
    const status = encodeJson(this.machine.status('failed'));
    this.client?.publishAsync(topics.coordinatorStatus(this.job), status, { qos: 1, retain: true }).catch(() => undefined);
    this.finished?.reject(err);
  }

  private clearTimers(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /**
   * Connects with a persistent session (`clean: false`, client id `fedmq:{job}:coordinator`): the
   * broker keeps the subscriptions and queues QoS 1 answers while the coordinator is away, and
   * reconnects use backoff with jitter.
   */
  private async connect(): Promise<void> {
    const will = { topic: topics.coordinatorStatus(this.job), payload: encodeJson(this.machine.status('offline')), qos: 1 as const, retain: true };
    this.client = await mqtt.connectAsync(this.opts.brokerUrl, {
      // ':' cannot occur in ids, so no node or other job can collide with this client id
      clientId: `fedmq:${this.job}:coordinator`,
      clean: false,
      ...this.opts.mqtt,
      reconnectPeriod: 0, // reconnection is ours: backoff with jitter
      will,
    });
    if (this.opts.reconnect !== false) {
      this.reconnector = keepReconnecting(this.client, this.opts.reconnect ?? {}, (delayMs, attempt) => {
        if (!this.done) this.log.warn({ delayMs: Math.round(delayMs), attempt }, 'broker unreachable, reconnecting');
      });
    }
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    // attached after the first connect: every later 'connect' is a reconnect
    this.client.on('connect', () => void this.onReconnect());
    await this.client.subscribeAsync(this.subscriptions());
    this.log.info({ runId: this.runId }, 'coordinator connected');
  }

  /** What the coordinator reads: every node's status, update and evaluation result, and v1 node statuses (to tell them apart). */
  private subscriptions(): Record<string, { qos: 1 }> {
    const kinds = ['nodeStatus', 'nodeUpdate', 'nodeEvaluation', 'nodeSecAgg', 'legacyNodeStatus'] as const;
    return Object.fromEntries(kinds.map((k) => [topicFilter(k, this.job), { qos: 1 as const }]));
  }

  private async onReconnect(): Promise<void> {
    try {
      await this.client!.subscribeAsync(this.subscriptions());
      this.dispatch({ type: 'reconnected' });
      this.log.info('reconnected; models, status and open tasks republished');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'resubscribe after reconnect failed');
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (!this.reassembler || !topic.endsWith('/update')) {
      this.dispatch({ type: 'message', topic, payload });
      return;
    }
    let nodeId: string | undefined;
    try {
      const t = parseTopic(topic);
      if (t.kind !== 'nodeUpdate' || t.job !== this.job) return;
      nodeId = t.nodeId;
      if (payload.length === 0) return;
      // the reassembler's pending budget is shared: only nodes with an open fit task may use it
      // (chunks announcing 256 MiB transfers on made-up node ids used to starve the real updates)
      if (!this.machine.expectsUpdate(nodeId)) throw new FedmqError(ErrorCodes.NOT_SELECTED, `update chunk from ${nodeId}, which has no open fit task`);
      // the bytes of this transfer's own chunks: other transfers on the same topic (a refused
      // fake one, say) are not counted into it
      const done = this.reassembler.pushTransfer(nodeId, payload);
      if (done) this.dispatch({ type: 'message', topic, payload: done.payload, wireBytes: done.wireBytes });
    } catch (err) {
      this.dispatch({ type: 'rejected', error: isFedmqError(err) ? err : new FedmqError(ErrorCodes.BAD_PAYLOAD, String((err as Error)?.message ?? err)), nodeId });
    }
  }

  /** Writes the checkpoint atomically: a temporary file, fsync, then rename over the old one. */
  private async writeCheckpoint(cp: CoordinatorCheckpoint): Promise<void> {
    const dir = this.opts.checkpointDir ?? this.opts.outDir;
    if (!dir) return;
    await mkdir(dir, { recursive: true });
    const file = join(dir, CHECKPOINT_FILE);
    const fh = await open(`${file}.tmp`, 'w');
    try {
      // the weights as the global model's float32 wire tensors (raw little-endian bytes), read back by weightsFromWire
      await fh.writeFile(packMessage({ ...cp, weights: globalToWire(cp.weights) }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(`${file}.tmp`, file);
  }

  private async writeHistory(history: readonly RoundRecord[]): Promise<void> {
    if (!this.opts.outDir) return;
    await mkdir(this.opts.outDir, { recursive: true });
    const file = join(this.opts.outDir, 'history.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(history, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
  }
}
