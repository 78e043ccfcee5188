import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  ErrorCodes, FedmqError, NodeStatusSchema, packMessage, unpackMessage, weightsFromWire, PROTOCOL_VERSION, decodeJson, decodeUpdate, encodeJson, encodePacked, isFedmqError, parseTopic,
  topics, weightsSha256, type CoordinatorStatus, Reassembler, Scratch, globalToWire, splitPayload, withScratch, type CodecParams, type DownlinkDtype, type GlobalModelMessage, type ModelMeta, type UpdateCodecName, type NamedTensor, type RoundMetrics,
  type RoundTask, keepReconnecting, type BackoffOptions, type Reconnector,
} from '@fedmq/protocol';
import { createModel, createRng, type Dataset, type FederatedModel } from '@fedmq/ml';
import { NodeRegistry } from './registry.ts';
import type { FitFailure, RoundAggregate, Strategy, StrategyState } from './strategy.ts';
import { sample } from './strategies/fedavg.ts';
import { checkUpdateTensors } from './validate.ts';

/** Options of {@link Coordinator}. */
export interface CoordinatorOptions {
  /** Broker URL, e.g. `mqtt://localhost:1883`. */
  brokerUrl: string;
  job: string;
  /** Identifies this run in every message; default derived from the start time. */
  runId?: string;
  /** Model architecture, by `@fedmq/ml` registry name (e.g. `mnist-2nn`). */
  model: string;
  /** Rounds to run (≥ 1). */
  rounds: number;
  strategy: Strategy;
  /** Nodes that must be online before a round starts (Flower's `minAvailableNodes`). */
  minNodes: number;
  /**
   * Accepted updates a round needs to count (Flower's `minFitClients`); default 1. A round that
   * closes (deadline, or every selected node reported or went offline) with fewer keeps the global
   * model unchanged and is retried as the next round.
   */
  minFitNodes?: number;
  /** Accepted updates a round needs, as a fraction of the nodes selected, in [0, 1]; default 0. */
  minCompletionRate?: number;
  /**
   * Over-selection (Bonawitz et al. 2019, "Towards Federated Learning at Scale", §2.2): select
   * ⌈(1 + overSelection) · k⌉ nodes, k being the strategy's pick, and close the round as soon as k
   * updates are accepted; later updates are rejected as stale. Default 0.
   */
  overSelection?: number;
  /** Failed rounds in a row after which the run aborts (FEDMQ_ROUND_FAILED). Default 3. */
  maxRoundRetries?: number;
  /**
   * Folder of `checkpoint.msgpack`, written atomically after every round (default: `outDir`; none
   * when neither is set). See {@link Coordinator.loadCheckpoint} and the `resume` option.
   */
  checkpointDir?: string;
  /** Continue the run saved in this checkpoint (from {@link Coordinator.loadCheckpoint}) instead of starting at round 1. */
  resume?: CoordinatorCheckpoint;
  /** Round deadline, ms after the task is published: updates after it are not accepted. */
  deadlineMs: number;
  /** Folder for `history.json` and `model/` (TensorFlow.js format); none written when omitted. */
  outDir?: string;
  /** Held-out test set for centralized evaluation after each round. */
  testData?: Dataset;
  /** Uplink codec nodes must use (docs/codecs.md). Default `float32`. */
  codec?: UpdateCodecName;
  /** Its parameters (top-k fraction `k`, int8 `blockSize`). */
  codecParams?: CodecParams;
  /**
   * Largest MQTT payload, bytes (e.g. 128 KiB for AWS IoT Core): when set, the global model is
   * published in retained chunks on `model/chunks/{i}` and nodes send their updates in chunks
   * (docs/chunking.md). Unset: whole payloads.
   */
  maxPayloadBytes?: number;
  /** Encoding of the global model on the downlink: `float32` (default) or `float16` (half the bytes). */
  downlink?: DownlinkDtype;
  /** Seed of the initial model and of node selection. Default 42. */
  seed?: number;
  logger?: Logger;
  /** Extra mqtt.js options (credentials, TLS …). */
  mqtt?: IClientOptions;
  /**
   * Reconnection after a lost connection: exponential backoff with jitter (default: first attempt
   * within 0.5 s, cap 30 s; `keepReconnecting` in @fedmq/protocol), or `false` for none.
   */
  reconnect?: BackoffOptions | false;
}

/** One round of the run, as written to `history.json`. */
export interface RoundRecord {
  round: number;
  modelVersion: number;
  /** False when the round failed (fewer accepted updates than required, or the strategy refused): model unchanged. */
  accepted: boolean;
  /** Nodes selected / updates accepted. */
  selected: number;
  reported: number;
  /** Rejected updates and missing nodes by error code (`timeout`, `offline`). */
  failures: Record<string, number>;
  /** numExamples-weighted mean of the nodes' training losses (null when none reported). */
  trainLoss: number | null;
  testLoss: number | null;
  testAccuracy: number | null;
  /** Bytes delivered to nodes (model + task × online nodes) and received from them (updates). */
  bytesDown: number;
  bytesUp: number;
  /** Wall time from the task to the round's metrics, ms. */
  durationMs: number;
  /** Training phase (task → round closed), ms. */
  trainMs: number;
  /** Aggregation phase (strategy + publishing the new model), ms. */
  aggregateMs: number;
  /** Evaluation phase, ms. */
  evalMs: number;
}

/** Events a {@link Coordinator} emits. */
export interface CoordinatorEvents {
  phase: [{ state: CoordinatorStatus['state']; round: number }];
  round: [RoundRecord];
  /** An update was rejected (with its code); the run goes on. */
  rejected: [{ error: FedmqError; nodeId?: string; round: number }];
  accepted: [{ nodeId: string; round: number; bytes: number }];
}

/**
 * Everything a coordinator needs to continue a run after a crash, as saved after each round in
 * `checkpoint.msgpack` (MessagePack; the weights as the global model's float32 wire tensors,
 * docs/protocol.md §4).
 */
export interface CoordinatorCheckpoint {
  format: 'fedmq-checkpoint';
  /** Format version, 1. */
  v: 1;
  job: string;
  /** The run that wrote it. */
  runId: string;
  model: string;
  seed: number;
  /** Last round closed (accepted or failed). */
  round: number;
  modelVersion: number;
  /** Failed rounds in a row at the end of `history`. */
  failedInARow: number;
  /** Draws taken from the run's seeded generator (node selection), to continue its sequence. */
  rngDraws: number;
  strategy: string;
  /** The strategy's state (`Strategy.getState`), null for stateless strategies. */
  strategyState: StrategyState | null;
  history: RoundRecord[];
  /** The global model after `round`. */
  weights: NamedTensor[];
  /** Wall-clock time of the write, ms since the epoch. */
  ts: number;
}

/** File name of the checkpoint in its folder. */
export const CHECKPOINT_FILE = 'checkpoint.msgpack';

interface OpenRound {
  round: number;
  selected: Set<string>;
  /** Accepted updates that close the round early (the strategy's pick, before over-selection). */
  target: number;
  reported: Set<string>;
  dropped: Set<string>;
  failures: Record<string, number>;
  aggregate: RoundAggregate;
  bytesUp: number;
  deadline: number;
  close: () => void;
}

/**
 * The coordinator (docs/protocol.md, "Round lifecycle"): keeps a registry of nodes from their
 * retained status messages, and for each round samples nodes with the strategy, publishes the
 * retained versioned global model and the round task, folds each valid update into the running
 * aggregate as it arrives (memory O(model)), closes the round when every selected node reported,
 * dropped offline, or the deadline passed, applies the strategy, evaluates the new global model on
 * the test set, and publishes the round's metrics (retained JSON).
 *
 * Invalid updates are rejected with a coded reason, counted in the round's `failures`, and never
 * folded in; a duplicate update (QoS 1 redelivery included) is folded in once.
 */
export class Coordinator extends EventEmitter<CoordinatorEvents> {
  readonly job: string;
  readonly runId: string;
  readonly history: RoundRecord[] = [];
  private readonly opts: CoordinatorOptions;
  private readonly log: Logger;
  private readonly registry = new NodeRegistry();
  private readonly rng: () => number;
  private rngDraws = 0;
  private failedInARow = 0;
  private lastRound = 0;
  private readonly nodeWaiters = new Set<() => void>();
  private client?: MqttClient;
  private reconnector?: Reconnector;
  private model?: FederatedModel;
  private global: NamedTensor[] = [];
  private version = 0;
  private modelPayloads: Buffer[] = [];
  private reassembler?: Reassembler;
  /** Bytes of update chunks received per node in the open round. */
  private chunkBytes = new Map<string, number>();
  private readonly scratch = new Scratch();
  private taskPayload?: Buffer;
  private open?: OpenRound;
  private stopped = false;

  constructor(opts: CoordinatorOptions) {
    super();
    topics.model(opts.job); // validates the job id
    if (!(Number.isInteger(opts.rounds) && opts.rounds >= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `rounds must be an integer ≥ 1, got ${opts.rounds}`);
    if (!(Number.isInteger(opts.minNodes) && opts.minNodes >= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `minNodes must be an integer ≥ 1, got ${opts.minNodes}`);
    if (!(opts.deadlineMs > 0)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `deadlineMs must be positive, got ${opts.deadlineMs}`);
    this.opts = opts;
    this.job = opts.job;
    this.runId = opts.runId ?? `run-${Date.now().toString(36)}`;
    const rate = opts.minCompletionRate ?? 0;
    if (!(rate >= 0 && rate <= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `minCompletionRate must be in [0, 1], got ${rate}`);
    const minFit = opts.minFitNodes ?? 1;
    if (!(Number.isInteger(minFit) && minFit >= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `minFitNodes must be an integer ≥ 1, got ${minFit}`);
    if (!((opts.overSelection ?? 0) >= 0)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `overSelection must be ≥ 0, got ${opts.overSelection}`);
    const retries = opts.maxRoundRetries ?? 3;
    if (!(Number.isInteger(retries) && retries >= 0)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `maxRoundRetries must be an integer ≥ 0, got ${retries}`);
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ job: opts.job });
    const base = createRng(opts.seed ?? 42);
    this.rng = () => {
      this.rngDraws++;
      return base();
    };
    const cp = opts.resume;
    if (cp) {
      if (cp.job !== opts.job || cp.model !== opts.model || cp.strategy !== opts.strategy.name || cp.seed !== (opts.seed ?? 42)) {
        throw new FedmqError(ErrorCodes.CHECKPOINT, `checkpoint of job ${cp.job} (model ${cp.model}, strategy ${cp.strategy}, seed ${cp.seed}) does not match job ${opts.job} (model ${opts.model}, strategy ${opts.strategy.name}, seed ${opts.seed ?? 42})`);
      }
      for (let i = 0; i < cp.rngDraws; i++) this.rng();
      if (cp.strategyState) {
        if (!opts.strategy.setState) throw new FedmqError(ErrorCodes.CHECKPOINT, `strategy ${opts.strategy.name} cannot restore a saved state`);
        opts.strategy.setState(cp.strategyState);
      }
      this.history.push(...cp.history);
      this.lastRound = cp.round;
      this.version = cp.modelVersion - 1; // publishModel() republishes the checkpoint's model as the next version
      this.failedInARow = cp.failedInARow;
    }
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
    if (cp?.format !== 'fedmq-checkpoint' || cp.v !== 1 || !Array.isArray(cp.weights) || !Array.isArray(cp.history)) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `${join(dir, CHECKPOINT_FILE)} is not a version 1 fedmq checkpoint`);
    }
    try {
      // stored as the global model's wire tensors: shapes, dtype and byte lengths are checked here
      cp.weights = weightsFromWire(cp.weights);
    } catch (err) {
      throw new FedmqError(ErrorCodes.CHECKPOINT, `${join(dir, CHECKPOINT_FILE)}: ${(err as Error).message}`, {}, { cause: err });
    }
    return cp;
  }

  /** A copy of the current global model's weights. */
  globalWeights(): NamedTensor[] {
    return this.global.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data.slice() }));
  }

  /** Online node ids (from the registry). */
  onlineNodes(): string[] {
    return this.registry.online();
  }

  /**
   * Runs every round and resolves with the history. With `outDir`: writes `history.json` after
   * each round, and at the end the final global model (`model/`, TensorFlow.js format) and
   * `report.html`.
   * @throws FedmqError FEDMQ_BAD_CONFIG when the model is unknown; the MQTT error when the broker is unreachable.
   */
  async run(): Promise<RoundRecord[]> {
    try {
      this.model = createModel(this.opts.model, this.opts.seed ?? 42);
    } catch (err) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown model ${JSON.stringify(this.opts.model)}`, {}, { cause: err });
    }
    this.global = this.opts.resume ? this.opts.resume.weights.map((t) => ({ ...t, data: t.data.slice() })) : this.model.getWeights();
    if (this.opts.maxPayloadBytes) {
      this.reassembler = new Reassembler({
        maxTotalBytes: 256 * 2 ** 20, maxPendingBytes: 1024 * 2 ** 20, timeoutMs: this.opts.deadlineMs,
        onError: (error, info) => this.reject(error, info.sender),
      });
    }
    await this.connect();
    // a whole model retained by an earlier run would be read before the chunks: clear it
    if (this.opts.maxPayloadBytes) await this.client!.publishAsync(topics.model(this.job), Buffer.alloc(0), { qos: 1, retain: true });
    try {
      await this.publishModel(this.lastRound);
      if (this.opts.resume) this.log.info({ round: this.lastRound, resumedFrom: this.opts.resume.runId }, 'resumed from checkpoint');
      const maxRetries = this.opts.maxRoundRetries ?? 3;
      while (this.history.filter((r) => r.accepted !== false).length < this.opts.rounds && !this.stopped) {
        const round = this.lastRound + 1;
        await this.waitForNodes(round);
        if (this.stopped) break;
        const record = await this.runRound(round);
        this.lastRound = round;
        this.failedInARow = record.accepted ? 0 : this.failedInARow + 1;
        this.history.push(record);
        await this.publishMetrics(record);
        await this.writeCheckpoint();
        await this.writeHistory();
        this.emit('round', record);
        if (this.failedInARow > maxRetries) {
          throw new FedmqError(ErrorCodes.ROUND_FAILED, `${this.failedInARow} rounds in a row failed (last: round ${round}, ${record.reported} of ${record.selected} selected nodes reported; failures ${JSON.stringify(record.failures)}); the global model is that of round ${round - this.failedInARow}`, { round, failures: record.failures });
        }
      }
      if (this.opts.outDir) {
        this.model.setWeights(this.global); // evaluation may not have run (no test set)
        await this.model.save(join(this.opts.outDir, 'model'));
        await this.writeReport();
      }
      await this.publishStatus(this.stopped ? 'failed' : 'done', this.history.length);
      await this.client!.publishAsync(topics.task(this.job), Buffer.alloc(0), { qos: 1, retain: true });
      return this.history;
    } catch (err) {
      await this.publishStatus('failed', this.open?.round ?? this.history.length).catch(() => undefined);
      throw err;
    }
  }

  /** Ends the run after the current phase; `run()` then resolves with the rounds done so far. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.open?.close();
    for (const w of this.nodeWaiters) w();
  }

  /** Disconnects from the broker and frees the model. */
  async close(): Promise<void> {
    await this.stop();
    this.reassembler?.close();
    this.reconnector?.stop();
    if (this.client) await this.client.endAsync();
    this.model?.dispose();
  }

  /**
   * Connects with a persistent session (`clean: false`, client id `fedmq:{job}:coordinator`): the
   * broker keeps the subscriptions and queues QoS 1 updates while the coordinator is away, and
   * reconnects use backoff with jitter.
   */
  private async connect(): Promise<void> {
    const will = { topic: topics.coordinatorStatus(this.job), payload: encodeJson(this.status('offline', 0)), qos: 1 as const, retain: true };
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
        if (!this.stopped) this.log.warn({ delayMs: Math.round(delayMs), attempt }, 'broker unreachable, reconnecting');
      });
    }
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    // attached after the first connect: every later 'connect' is a reconnect
    this.client.on('connect', () => void this.republish());
    await this.client.subscribeAsync(this.subscriptions());
    this.log.info({ broker: this.opts.brokerUrl, runId: this.runId }, 'coordinator connected');
  }

  /** What the coordinator reads: every node's status and update. */
  private subscriptions(): Record<string, { qos: 1 }> {
    return { [topics.allNodeStatus(this.job)]: { qos: 1 }, [topics.allNodeUpdates(this.job)]: { qos: 1 } };
  }

  /**
   * After a reconnect: a restarted broker may have lost its retained messages, so publish the
   * global model and the open round's task again (nodes ignore what they already have).
   */
  private async republish(): Promise<void> {
    try {
      await this.client!.subscribeAsync(this.subscriptions());
      await this.publishModelPayloads();
      if (this.open && this.taskPayload) await this.client!.publishAsync(topics.task(this.job), this.taskPayload, { qos: 1, retain: true });
      this.log.info({ round: this.open?.round }, 'reconnected; global model and task republished');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'republish after reconnect failed');
    }
  }

  private status(state: CoordinatorStatus['state'], round: number, deadline?: number): CoordinatorStatus {
    // brokerUrl may carry credentials and outDir is a local path: neither goes on the wire
    const { strategy, testData: _t, logger: _l, mqtt: _m, brokerUrl: _b, outDir: _o, checkpointDir: _c, resume, ...rest } = this.opts;
    return {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, state, round, rounds: this.opts.rounds, deadline, ts: Date.now(),
      config: { ...rest, strategy: strategy.name, ...(resume ? { resumedFrom: resume.runId, resumedAtRound: resume.round } : {}) },
    };
  }

  private async publishStatus(state: CoordinatorStatus['state'], round: number, deadline?: number): Promise<void> {
    this.emit('phase', { state, round });
    await this.client!.publishAsync(topics.coordinatorStatus(this.job), encodeJson(this.status(state, round, deadline)), { qos: 1, retain: true });
  }

  private async publishModel(round: number): Promise<void> {
    this.version++;
    const tensors = globalToWire(this.global, this.opts.downlink);
    const msg: GlobalModelMessage = {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, version: this.version, round, model: this.opts.model,
      sha256: weightsSha256(tensors), tensors, ts: Date.now(),
    };
    const payload = encodePacked(msg);
    const max = this.opts.maxPayloadBytes;
    this.modelPayloads = max ? splitPayload(payload, max) : [payload];
    await this.publishModelPayloads();
    const meta: ModelMeta = {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, version: this.version, round, model: this.opts.model, bytes: payload.length,
      params: this.global.reduce((n, t) => n + t.data.length, 0), sha256: msg.sha256, ts: msg.ts,
      chunks: this.opts.maxPayloadBytes ? this.modelPayloads.length : undefined,
    };
    await this.client!.publishAsync(topics.modelMeta(this.job), encodeJson(meta), { qos: 1, retain: true });
    this.log.debug({ version: this.version, bytes: payload.length }, 'global model published');
  }

  /** Publishes the global model, whole on `model` or in retained chunks on `model/chunks/{i}`. */
  private async publishModelPayloads(): Promise<void> {
    const c = this.client!;
    if (!this.opts.maxPayloadBytes) {
      if (this.modelPayloads[0]) await c.publishAsync(topics.model(this.job), this.modelPayloads[0], { qos: 1, retain: true });
      return;
    }
    for (const [i, chunk] of this.modelPayloads.entries()) await c.publishAsync(topics.modelChunk(this.job, i), chunk, { qos: 1, retain: true });
  }

  private waitForNodes(round: number): Promise<void> {
    if (this.registry.online().length >= this.opts.minNodes) return Promise.resolve();
    this.log.info({ round, online: this.registry.online().length, minNodes: this.opts.minNodes }, 'waiting for nodes');
    void this.publishStatus('waiting', round);
    return new Promise((resolve) => {
      const check = () => {
        if (this.stopped || this.registry.online().length >= this.opts.minNodes) {
          this.nodeWaiters.delete(check);
          resolve();
        }
      };
      this.nodeWaiters.add(check);
    });
  }

  private async runRound(round: number): Promise<RoundRecord> {
    const started = performance.now();
    const online = this.registry.online();
    const { selected: picked, config } = this.opts.strategy.configureFit(round, online, this.rng);
    const selected = this.overSelect(picked, online);
    const deadline = Date.now() + this.opts.deadlineMs;
    const task: RoundTask = {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, round, modelVersion: this.version, selected, deadline,
      timeoutMs: this.opts.deadlineMs, config, codec: this.opts.codec ?? 'float32', codecParams: this.opts.codecParams,
      maxPayloadBytes: this.opts.maxPayloadBytes, updateKind: 'delta', ts: Date.now(),
    };
    const taskPayload = encodeJson(task);
    this.taskPayload = taskPayload;
    const bytesDown = (this.modelPayloads.reduce((n, p) => n + p.length, 0) + taskPayload.length) * online.length;
    this.chunkBytes.clear();
    const log = this.log.child({ round });
    const closed = new Promise<void>((resolve) => {
      const timer = setTimeout(() => resolve(), this.opts.deadlineMs);
      this.open = {
        round, selected: new Set(selected), target: picked.length, reported: new Set(), dropped: new Set(), failures: {},
        aggregate: this.opts.strategy.beginRound(round, this.global), bytesUp: 0, deadline,
        close: () => { clearTimeout(timer); resolve(); },
      };
    });
    await this.publishStatus('training', round, deadline);
    await this.client!.publishAsync(topics.task(this.job), taskPayload, { qos: 1, retain: true });
    log.info({ selected: selected.length, online: online.length, config }, 'round started');
    await closed;
    const open = this.open!;
    this.open = undefined;
    const trainMs = performance.now() - started;
    // over-selected nodes still training when the target was reached are not failures
    const early = open.reported.size >= open.target && open.target < open.selected.size;
    const missing = early ? [] : [...open.selected].filter((n) => !open.reported.has(n) && !open.dropped.has(n));
    if (missing.length > 0) open.failures.timeout = (open.failures.timeout ?? 0) + missing.length;
    if (open.dropped.size > 0) open.failures.offline = (open.failures.offline ?? 0) + open.dropped.size;
    const failures: FitFailure[] = [
      ...missing.map((nodeId) => ({ nodeId, reason: 'timeout' })),
      ...[...open.dropped].map((nodeId) => ({ nodeId, reason: 'offline' })),
    ];

    const aggregateStart = performance.now();
    await this.publishStatus('aggregating', round);
    const needed = Math.max(this.opts.minFitNodes ?? 1, Math.ceil((this.opts.minCompletionRate ?? 0) * selected.length));
    const enough = open.aggregate.count >= needed;
    const next = enough ? this.opts.strategy.aggregateFit(round, this.global, open.aggregate, failures) : null;
    if (next) {
      this.global = next;
      await this.publishModel(round);
    } else if (!enough) {
      log.warn({ accepted: open.aggregate.count, needed, selected: selected.length, failures: open.failures }, 'round failed: too few updates; global model unchanged, retrying');
    } else {
      log.warn({ accepted: open.aggregate.count, strategy: this.opts.strategy.name }, 'round failed: the strategy kept the global model; retrying');
    }

    const aggregateMs = performance.now() - aggregateStart;
    const evalStart = performance.now();
    let testLoss: number | null = null;
    let testAccuracy: number | null = null;
    if (this.opts.testData) {
      await this.publishStatus('evaluating', round);
      this.model!.setWeights(this.global);
      const ev = await this.model!.evaluate(this.opts.testData);
      testLoss = finiteOrNull(ev.loss);
      testAccuracy = finiteOrNull(ev.accuracy);
    }
    const evalMs = performance.now() - evalStart;
    return {
      round, modelVersion: this.version, accepted: next !== null, selected: selected.length, reported: open.reported.size, failures: open.failures,
      trainLoss: finiteOrNull(open.aggregate.trainLoss), testLoss, testAccuracy,
      bytesDown, bytesUp: open.bytesUp,
      durationMs: performance.now() - started, trainMs, aggregateMs, evalMs,
    };
  }

  private async publishMetrics(r: RoundRecord): Promise<void> {
    const msg: RoundMetrics = {
      v: PROTOCOL_VERSION, job: this.job, runId: this.runId, round: r.round, modelVersion: r.modelVersion, accepted: r.accepted, selected: r.selected,
      reported: r.reported, failures: r.failures, trainLoss: r.trainLoss, testLoss: r.testLoss, testAccuracy: r.testAccuracy,
      bytesDown: r.bytesDown, bytesUp: r.bytesUp, durationMs: r.durationMs,
      phases: { trainMs: r.trainMs, aggregateMs: r.aggregateMs, evalMs: r.evalMs }, ts: Date.now(),
    };
    const payload = encodeJson(msg);
    await this.client!.publishAsync(topics.roundMetrics(this.job, r.round), payload, { qos: 1, retain: true });
    await this.client!.publishAsync(topics.latestMetrics(this.job), payload, { qos: 1, retain: true });
  }

  /** `selected` plus ⌈overSelection · |selected|⌉ more of the other online nodes, drawn with the run's generator. */
  private overSelect(selected: string[], online: readonly string[]): string[] {
    const extra = Math.ceil((this.opts.overSelection ?? 0) * selected.length);
    if (extra === 0) return selected;
    const chosen = new Set(selected);
    const rest = online.filter((n) => !chosen.has(n));
    return [...selected, ...sample(rest, Math.min(extra, rest.length), this.rng)].sort();
  }

  /** Writes the checkpoint atomically: a temporary file, fsync, then rename over the old one. */
  private async writeCheckpoint(): Promise<void> {
    const dir = this.opts.checkpointDir ?? this.opts.outDir;
    if (!dir) return;
    const cp: CoordinatorCheckpoint = {
      format: 'fedmq-checkpoint', v: 1, job: this.job, runId: this.runId, model: this.opts.model, seed: this.opts.seed ?? 42,
      round: this.lastRound, modelVersion: this.version, failedInARow: this.failedInARow, rngDraws: this.rngDraws,
      strategy: this.opts.strategy.name, strategyState: this.opts.strategy.getState?.() ?? null, history: this.history,
      weights: this.global,
      ts: Date.now(),
    };
    await mkdir(dir, { recursive: true });
    const file = join(dir, CHECKPOINT_FILE);
    const fh = await open(`${file}.tmp`, 'w');
    try {
      // the weights as the global model's float32 wire tensors (raw little-endian bytes), read back by weightsFromWire
      await fh.writeFile(packMessage({ ...cp, weights: globalToWire(this.global) }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(`${file}.tmp`, file);
  }

  private async writeHistory(): Promise<void> {
    if (!this.opts.outDir) return;
    await mkdir(this.opts.outDir, { recursive: true });
    const file = join(this.opts.outDir, 'history.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(this.history, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
  }

  /** Writes `outDir/report.html`: a self-contained page with the run's charts and configuration. */
  private async writeReport(): Promise<void> {
    // loaded only here: the monitor package brings the terminal UI libraries along
    const { renderReport } = await import('@fedmq/monitor');
    const html = renderReport({
      job: this.job, runId: this.runId, config: this.status('done', this.history.length).config ?? {}, history: this.history,
      nodes: this.registry.all(),
    });
    const file = join(this.opts.outDir!, 'report.html');
    await writeFile(`${file}.tmp`, html);
    await rename(`${file}.tmp`, file);
  }

  private onMessage(topic: string, payload: Buffer): void {
    let nodeId: string | undefined;
    try {
      const t = parseTopic(topic);
      if (t.job !== this.job) return;
      if (t.kind === 'nodeStatus') {
        nodeId = t.nodeId;
        this.onStatus(t.nodeId, payload);
      } else if (t.kind === 'nodeUpdate') {
        nodeId = t.nodeId;
        if (!this.reassembler) {
          this.onUpdate(t.nodeId, payload, payload.length);
          return;
        }
        if (payload.length === 0) return;
        // the reassembler's pending budget is shared: only the open round's selected nodes may use it
        // (chunks announcing 256 MiB transfers on made-up node ids used to starve the real updates)
        const open = this.open;
        if (!open) throw new FedmqError(ErrorCodes.STALE_UPDATE, 'update chunk while no round is open');
        if (!open.selected.has(t.nodeId)) throw new FedmqError(ErrorCodes.NOT_SELECTED, `${t.nodeId} was not selected for round ${open.round}`);
        this.chunkBytes.set(t.nodeId, (this.chunkBytes.get(t.nodeId) ?? 0) + payload.length);
        const whole = this.reassembler.push(t.nodeId, payload);
        if (whole) this.onUpdate(t.nodeId, whole, this.chunkBytes.get(t.nodeId) ?? whole.length);
      }
    } catch (err) {
      if (topic.endsWith('/update')) this.reject(err, nodeId);
      else this.log.warn({ code: (err as FedmqError).code, nodeId, topic }, (err as Error)?.message);
    }
  }

  /** Counts a rejected update (or chunked transfer) in the open round's failures and reports it. */
  private reject(err: unknown, nodeId?: string): void {
    const error = isFedmqError(err) ? err : new FedmqError(ErrorCodes.BAD_PAYLOAD, String((err as Error)?.message ?? err));
    const round = this.open?.round ?? this.history.length;
    if (this.open) this.open.failures[error.code] = (this.open.failures[error.code] ?? 0) + 1;
    this.log.warn({ code: error.code, nodeId, round, ...error.details }, error.message);
    this.emit('rejected', { error, nodeId, round });
  }

  private onStatus(nodeId: string, payload: Buffer): void {
    if (payload.length === 0) {
      this.registry.remove(nodeId);
      return;
    }
    const s = decodeJson(NodeStatusSchema, payload, 'node status');
    if (s.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `status for job ${s.job} on job ${this.job}'s topic`);
    if (s.nodeId !== nodeId) throw new FedmqError(ErrorCodes.SCHEMA, `status of ${s.nodeId} on the topic of ${nodeId}`);
    this.registry.update(s);
    const open = this.open;
    if (s.state === 'offline' && open && open.selected.has(nodeId) && !open.reported.has(nodeId)) {
      open.dropped.add(nodeId);
      this.closeIfComplete(open);
    } else if ((s.state === 'training' || s.state === 'uploading') && open?.dropped.has(nodeId)) {
      // back after a lost link (its Will said offline) and still working on the round: its QoS 1
      // update may yet arrive, so wait for it again
      open.dropped.delete(nodeId);
    }
    for (const w of [...this.nodeWaiters]) w();
  }

  /** @param wireBytes bytes the update took on the wire (its chunks, when chunked). */
  private onUpdate(nodeId: string, payload: Buffer, wireBytes: number): void {
    const open = this.open;
    const u = decodeUpdate(payload);
    if (u.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `update for job ${u.job}`);
    if (u.nodeId !== nodeId) throw new FedmqError(ErrorCodes.SCHEMA, `update of ${u.nodeId} on the topic of ${nodeId}`);
    if (!open || u.runId !== this.runId || u.round !== open.round || u.modelVersion !== this.version) {
      throw new FedmqError(ErrorCodes.STALE_UPDATE, `update for round ${u.round} (model v${u.modelVersion}) while ${open ? `round ${open.round} (v${this.version})` : 'no round'} is open`, { updateRound: u.round });
    }
    if (!open.selected.has(nodeId)) throw new FedmqError(ErrorCodes.NOT_SELECTED, `${nodeId} was not selected for round ${open.round}`);
    if (open.reported.has(nodeId)) throw new FedmqError(ErrorCodes.DUPLICATE_UPDATE, `${nodeId} already reported for round ${open.round}`);
    // misaligned payload bytes are copied into one reused scratch, not into new arrays per update
    const delta = withScratch(this.scratch, () => checkUpdateTensors(u, this.global, this.opts.codec ?? 'float32'));
    open.aggregate.add({ nodeId, numExamples: u.numExamples, delta, loss: u.metrics.loss });
    open.reported.add(nodeId);
    open.dropped.delete(nodeId);
    open.bytesUp += wireBytes;
    this.chunkBytes.delete(nodeId);
    this.emit('accepted', { nodeId, round: open.round, bytes: wireBytes });
    this.closeIfComplete(open);
  }

  private closeIfComplete(open: OpenRound): void {
    if (open.reported.size >= open.target || open.reported.size + open.dropped.size >= open.selected.size) open.close();
  }
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

