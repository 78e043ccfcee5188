import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  CoordinatorStatusSchema, ErrorCodes, EvaluateResultSchema, FedmqError, NodeTaskSchema, PROTOCOL_VERSION, Reassembler,
  decodeGlobalModel, decodeJson, encodeJson, encodePacked, getCodec, isFedmqError, keepReconnecting, parseTopic, seededRng, splitPayload,
  topicFilter, topics,
  type BackoffOptions, type CodecState, type DeviceInfo, type EvaluateResult, type EvaluateTask, type FitDp, type FitTask, type NamedTensor,
  type NodeStage, type NodeStatus, type NodeTask, type Reconnector, type UpdateMessage,
  type AdvertiseKeysTask, type SecAggAnswer, type SecAggEncoding, type ShareKeysTask, type UnmaskTask, encodeSecAggAnswer,
} from '@fedmq/protocol';
import type { LocalDataset } from '@fedmq/ml';
import { SecAggClient, addGaussianNoise, clipL2, cryptoRandom, packBits, secaggEncode, type RandomSource } from '@fedmq/privacy';
import { createTrainer, type LocalEvaluation, type LocalTrainer } from './trainer.ts';
import { fnv1a, splitDataset, type DataSplit } from './split.ts';

/** Options of {@link EdgeNode}. */
export interface EdgeNodeOptions {
  /** Broker URL, e.g. `mqtt://broker.local:1883`. */
  brokerUrl: string;
  job: string;
  nodeId: string;
  /**
   * The node's local data (training and held-out examples); it never leaves the node. Features
   * as float32, or as the bytes of an IDX file (a ByteDataset: a quarter of the memory, the same
   * training results).
   */
  data: LocalDataset;
  /** Device facts for the status topic (see `deviceInfo`). */
  device: DeviceInfo;
  /** Local trainer; default a new one. Simulated nodes in one thread share one. */
  trainer?: LocalTrainer;
  logger?: Logger;
  /** Extra mqtt.js options (credentials, TLS …). */
  mqtt?: IClientOptions;
  /**
   * Reconnection after a lost connection: exponential backoff with jitter (default: first attempt
   * within 0.5 s, cap 30 s; see `keepReconnecting` in @fedmq/protocol), or `false` to give up (and
   * make `start()` reject when the first connection fails).
   */
  reconnect?: BackoffOptions | false;
  /**
   * Replaces the delta before it is encoded. For simulations and tests only (the simulator's
   * attacks); a real device leaves it unset. May be async (colluding attackers wait for each
   * other, e.g. ALIE); `ctx` names the fit task. A throw fails the task (a `problem`, no update).
   */
  transformDelta?: (delta: NamedTensor[], round: number, ctx: TransformDeltaContext) => NamedTensor[] | Promise<NamedTensor[]>;
  /**
   * Called once per fit task the node accepts (valid, for this node, not a duplicate), when it
   * is queued and before training. For simulations and tests only: colluding attackers announce
   * themselves here, since a v2 node does not learn who else was selected. A throw is reported as
   * a `problem`; the task still runs.
   */
  onFitTask?: (ctx: TransformDeltaContext) => void;
}

/** What {@link EdgeNodeOptions.transformDelta} and {@link EdgeNodeOptions.onFitTask} learn of a fit task. */
export interface TransformDeltaContext {
  runId: string;
  round: number;
  taskId: number;
  /** Coordinator clock, epoch ms: the update must arrive before it. */
  deadline: number;
  /** Time the coordinator allows for the task, ms. */
  timeoutMs: number;
  /** Nodes sent a fit task in the round (the task's `cohort`; absent in async mode). */
  cohort?: number;
  /** Local training wall time of this task, ms (for `transformDelta`; 0 in `onFitTask`, before training). */
  trainMs: number;
}

/** Loss and accuracy of one model on the node's held-out split. */
export interface EvalScore {
  loss: number;
  /** [0, 1]. */
  accuracy: number;
}

/** Events an {@link EdgeNode} emits. */
export interface EdgeNodeEvents {
  /** A message was rejected or a task could not be done; the node keeps running. */
  problem: [FedmqError];
  /**
   * The node hands its update for a fit task to MQTT (`bytes`: payload bytes, all chunks), before
   * the first publish. The broker may deliver it even when `updated` never follows (the link drops
   * before the PUBACK and the node stops before its QoS 1 retry).
   */
  publishing: [{ round: number; taskId: number; bytes: number }];
  /** The node published its update for a fit task and the broker acknowledged every chunk (`bytes`: payload bytes sent, all chunks). */
  updated: [{ round: number; taskId: number; loss: number; trainMs: number; bytes: number }];
  /**
   * The node published its answer to an evaluate task. `personal` is the model it now keeps as its
   * personal model (see {@link EdgeNode.personalModel}): the local one when it beat the global
   * one's accuracy on the held-out split, else the global one.
   */
  evaluated: [{ round: number; taskId: number; global: EvalScore; local: EvalScore | null; personal: 'global' | 'local' }];
  /** The node answered a secure-aggregation stage task (advertise-keys, share-keys, unmask; docs/protocol.md §12.3). */
  secagg: [{ round: number; taskId: number; stage: SecAggAnswer['stage'] }];
  /** A global model was fetched and verified for a task. */
  model: [{ version: number; round: number }];
  /** The node (re)subscribed and published its status after a (re)connect. */
  announced: [];
  /** The MQTT client reported an error (e.g. `connack timeout`, `read ECONNRESET`); the node reconnects on its own. */
  connectionError: [{ message: string }];
  /** The coordinator reported the run done (or failed); once per run and state. */
  jobEnded: [{ state: 'done' | 'failed'; round: number; runId: string }];
}

/** A verified global model the node holds. */
interface HeldModel {
  runId: string;
  version: number;
  round: number;
  /** Registry name of the architecture. */
  model: string;
  sha256: string;
  /** Shared with the trainer's cache: never modified. */
  weights: NamedTensor[];
}

/** The node's model after its last fit task of a run: global + its own delta, before any codec. */
interface LocalModel {
  runId: string;
  taskId: number;
  round: number;
  model: string;
  weights: NamedTensor[];
}

/** State that belongs to one run (docs/protocol.md §5): reset when a task names another runId. */
interface RunState {
  readonly runId: string;
  /** Error-feedback residuals of the uplink codec. */
  readonly codecState: CodecState;
  local?: LocalModel;
  /** Task ids handled or queued (the most recent ones; see {@link RUN_TASK_IDS}). */
  readonly taskIds: Set<number>;
  /** Every task id ≤ this was handled and forgotten (task ids increase within a run). */
  forgottenUpTo: number;
  /** Secure aggregation's client of the round in progress (its secrets live only here, for that round). */
  secagg?: { round: number; client: SecAggClient; encoding: SecAggEncoding };
}

/** A task waiting for, or in, its handler. */
interface Queued<T extends NodeTask = NodeTask> {
  task: T;
  run: RunState;
  /** `Date.now()` at arrival: the model must arrive within `task.timeoutMs` of it. */
  receivedAt: number;
}

/** One handler per stage of a NodeTask: adding a stage is one more handler and schema. */
type StageHandlers = { [S in NodeStage]: (q: Queued<Extract<NodeTask, { stage: S }>>) => Promise<void> };

/** A model fetch in progress (at most one: tasks run one at a time). */
interface Acquisition {
  version: number;
  /** Topic or filter subscribed for it. */
  filter: string;
  /** A payload on one of its topics (`chunk`: a chunk, else a whole GlobalModel). */
  offer(payload: Buffer, chunk: boolean): void;
}

/** Task ids remembered per run; older ones collapse into a watermark. */
const RUN_TASK_IDS = 1024;
/** Bounds of a chunked model transfer (docs/chunking.md). */
const MAX_MODEL_BYTES = 256 * 2 ** 20;

/**
 * The device runtime of protocol v2 (docs/protocol.md §5): a session with one handler per stage
 * message. It connects with a persistent session and a Last Will (`offline`), subscribes to its
 * own task topic and the coordinator's status (v2, and v1's for version detection), and publishes
 * its retained status. Each NodeTask (`fit`, `evaluate`) is validated, de-duplicated by `taskId`,
 * queued and run one at a time in arrival order. A handler fetches the task's global model by
 * version and sha256 only then (subscribe to `models/{v}` or its chunks, take the matching
 * retained payload, unsubscribe), and answers with an Update (fit) or an EvaluateResult
 * (evaluate) naming the task.
 *
 * Nodes that receive no task receive no model. A malformed or foreign message, an unavailable
 * model, or a failed task is logged with its code and emitted as `problem`; the node never crashes
 * on a message.
 */
export class EdgeNode extends EventEmitter<EdgeNodeEvents> {
  readonly job: string;
  readonly nodeId: string;
  private readonly opts: EdgeNodeOptions;
  private readonly log: Logger;
  private readonly trainer: LocalTrainer;
  private readonly ownsTrainer: boolean;
  private readonly handlers: StageHandlers = {
    fit: (q) => this.fit(q),
    evaluate: (q) => this.evaluate(q),
    'advertise-keys': (q) => this.advertiseKeys(q),
    'share-keys': (q) => this.shareKeys(q),
    unmask: (q) => this.unmask(q),
  };
  private client?: MqttClient;
  private reconnector?: Reconnector;
  private run?: RunState;
  private readonly queue: Queued[] = [];
  private draining = false;
  /** The latest verified global model (reused when a task names its sha256). */
  private latest?: HeldModel;
  private acquisition?: Acquisition;
  private cancelAcquisition?: () => void;
  private personal?: NamedTensor[];
  private readonly splits = new Map<number, DataSplit>();
  /** Payload bytes received since the last answer. */
  private bytesDown = 0;
  /** Published our status on the v1 node status topic in this connection. */
  private legacyAnswered = false;
  private readonly endedRuns = new Set<string>();
  private state: NodeStatus['state'] = 'idle';
  private last?: NodeStatus['lastRound'];
  /** Set while the local data does not fit the model of the latest task (NodeStatus.dataMismatch). */
  private mismatch?: NodeStatus['dataMismatch'];
  private stopped = false;

  /** @throws FedmqError FEDMQ_BAD_TOPIC (invalid job or node id), FEDMQ_BAD_CONFIG (no local examples). */
  constructor(opts: EdgeNodeOptions) {
    super();
    // Validates ids (FEDMQ_BAD_TOPIC) before anything connects.
    topics.nodeStatus(opts.job, opts.nodeId);
    if (!(opts.data.numExamples >= 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `node ${opts.nodeId} has no local examples`);
    this.opts = opts;
    this.job = opts.job;
    this.nodeId = opts.nodeId;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ job: opts.job, nodeId: opts.nodeId });
    this.ownsTrainer = !opts.trainer;
    this.trainer = opts.trainer ?? createTrainer();
  }

  /**
   * Connects and announces the node. Resolves once connected the first time; until then it keeps
   * retrying with backoff (unless `reconnect: false`, when the first error rejects).
   *
   * The MQTT session is persistent (`clean: false`, client id `fedmq:{job}:node:{nodeId}`): the
   * broker keeps the node's subscriptions and queues its QoS 1 tasks while it is away, and QoS 1
   * answers published while the broker is unreachable are kept by the client and sent on
   * reconnect. On every (re)connect the node subscribes (QoS 1) to its task topic and to the
   * coordinator's v2 and v1 status topics, and publishes its status (retained).
   */
  async start(): Promise<void> {
    const will = { topic: topics.nodeStatus(this.job, this.nodeId), payload: encodeJson(this.status('offline')), qos: 1 as const, retain: true };
    this.client = mqtt.connect(this.opts.brokerUrl, {
      // ':' cannot occur in ids, so ids of different jobs and roles never collide
      clientId: `fedmq:${this.job}:node:${this.nodeId}`,
      clean: false,
      connectTimeout: 10_000,
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
    this.client.on('error', (err) => {
      this.log.warn({ err: err.message }, 'mqtt error');
      this.emit('connectionError', { message: err.message });
    });
    this.client.on('connect', () => {
      this.log.info({ broker: this.opts.brokerUrl }, 'connected');
      this.legacyAnswered = false;
      void this.announce();
    });
    await new Promise<void>((resolve, reject) => {
      const onConnect = () => { this.client!.off('error', onError); resolve(); };
      const onError = (err: Error) => { if (!this.client!.connected && this.opts.reconnect === false) reject(err); };
      this.client!.once('connect', onConnect);
      this.client!.on('error', onError);
    });
  }

  /**
   * The node's personal model: the better (by held-out accuracy; ties → global) of the global
   * and the local model of its latest evaluate task in the current run, as a copy; `undefined`
   * before any evaluate task of the run.
   */
  personalModel(): NamedTensor[] | undefined {
    return this.personal?.map((t) => ({ name: t.name, shape: [...t.shape], data: t.data.slice() }));
  }

  /**
   * Cuts the connection without a DISCONNECT, as a lost link does: the broker publishes the
   * node's Last Will (`offline`), and the node reconnects with backoff (QoS 1 messages in flight
   * are sent again). For fault injection in simulations and tests.
   */
  dropConnection(): void {
    this.client?.stream.destroy();
  }

  /** Publishes `offline`, disconnects, drops queued tasks, and frees the trainer it owns. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    const c = this.client;
    if (c?.connected) {
      this.state = 'offline';
      await c.publishAsync(topics.nodeStatus(this.job, this.nodeId), encodeJson(this.status('offline')), { qos: 1, retain: true }).catch(() => undefined);
    }
    this.stopped = true;
    this.queue.length = 0;
    this.cancelAcquisition?.();
    this.reconnector?.stop();
    if (c) await c.endAsync();
    if (this.ownsTrainer) this.trainer.dispose();
  }

  // --- connection ---------------------------------------------------------------------------

  private async announce(): Promise<void> {
    const c = this.client!;
    try {
      const subs: Record<string, { qos: 0 | 1 }> = {
        [topics.nodeTask(this.job, this.nodeId)]: { qos: 1 },
        [topics.coordinatorStatus(this.job)]: { qos: 1 },
        [topics.legacyCoordinatorStatus(this.job)]: { qos: 1 },
      };
      // a model fetch survives a broker that lost the session
      if (this.acquisition) subs[this.acquisition.filter] = { qos: 1 };
      await c.subscribeAsync(subs);
      await c.publishAsync(topics.nodeStatus(this.job, this.nodeId), encodeJson(this.status(this.state)), { qos: 1, retain: true });
      this.emit('announced');
    } catch (err) {
      if (!this.stopped) this.log.warn({ err: (err as Error).message }, 'announce failed; retrying on reconnect');
    }
  }

  /** The task being worked on, or the last one handled (NodeStatus.taskId); undefined before any in this run. */
  private taskInHand?: number;

  private status(state: NodeStatus['state']): NodeStatus {
    return {
      v: PROTOCOL_VERSION, job: this.job, nodeId: this.nodeId, state, ts: Date.now(),
      numExamples: this.opts.data.numExamples, device: this.opts.device, lastRound: this.last, taskId: this.taskInHand, dataMismatch: this.mismatch,
    };
  }

  /** Publishes the node's retained status without waiting for the broker (order is kept by the client). */
  private publishStatus(state: NodeStatus['state']): void {
    this.state = state;
    if (!this.client || this.stopped) return;
    this.client.publishAsync(topics.nodeStatus(this.job, this.nodeId), encodeJson(this.status(state)), { qos: 1, retain: true })
      .catch((err: Error) => this.log.debug({ err: err.message }, 'status not published'));
  }

  private problem(err: unknown, context: Record<string, unknown> = {}): void {
    const e = isFedmqError(err) ? err : new FedmqError(ErrorCodes.TRAINING_FAILED, (err as Error)?.message ?? String(err), {}, { cause: err });
    this.log.warn({ code: e.code, ...e.details, ...context }, e.message);
    this.emit('problem', e);
  }

  // --- messages -----------------------------------------------------------------------------

  private onMessage(topic: string, payload: Buffer): void {
    this.bytesDown += payload.length; // every received payload counts, whatever becomes of it
    if (this.stopped) return;
    try {
      const t = parseTopic(topic);
      if (t.job !== this.job) return;
      switch (t.kind) {
        case 'nodeTask': return this.onTask(t.nodeId, payload);
        case 'coordinatorStatus': return this.onCoordinatorStatus(payload);
        case 'legacyCoordinatorStatus': return this.onLegacyCoordinatorStatus(payload);
        case 'model':
        case 'modelChunk':
          if (this.acquisition?.version === t.version) this.acquisition.offer(payload, t.kind === 'modelChunk');
          else if (payload.length > 0) this.log.debug({ topic }, 'model payload with no fetch waiting for it: ignored');
          return;
        default:
          this.log.debug({ topic }, 'message on a topic the node does not read: ignored');
      }
    } catch (err) {
      this.problem(err, { topic });
    }
  }

  private onCoordinatorStatus(payload: Buffer): void {
    if (payload.length === 0) return;
    const s = decodeJson(CoordinatorStatusSchema, payload, 'coordinator status');
    if (s.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `coordinator status for job ${s.job}`, { job: s.job });
    if (s.state !== 'done' && s.state !== 'failed') return;
    const key = `${s.runId}/${s.state}`;
    if (this.endedRuns.has(key)) return; // the retained status again, after a reconnect
    this.endedRuns.add(key);
    if (this.endedRuns.size > 64) this.endedRuns.delete(this.endedRuns.values().next().value!);
    this.emit('jobEnded', { state: s.state, round: s.round, runId: s.runId });
  }

  /**
   * Version detection (docs/protocol.md §1, "Versions"): a coordinator status on protocol v1's
   * topic with `v` other than 2 is a v1 coordinator: report FEDMQ_UNSUPPORTED_VERSION and publish
   * this node's v2 status on its v1 status topic (once per connection), so the v1 coordinator
   * reports it too. A `v: 2` payload there is a v2 coordinator's beacon for v1 nodes: ignored.
   */
  private onLegacyCoordinatorStatus(payload: Buffer): void {
    if (payload.length === 0) return;
    let v: unknown;
    try {
      const value: unknown = JSON.parse(payload.toString('utf8'));
      v = typeof value === 'object' && value !== null ? (value as { v?: unknown }).v : undefined;
    } catch (err) {
      throw new FedmqError(ErrorCodes.BAD_PAYLOAD, 'v1 coordinator status: payload is not JSON', {}, { cause: err });
    }
    if (v === PROTOCOL_VERSION) return;
    const theirs = typeof v === 'number' ? `protocol v${v}` : 'an unknown protocol version';
    if (!this.legacyAnswered && this.client) {
      this.legacyAnswered = true;
      this.client.publishAsync(topics.legacyNodeStatus(this.job, this.nodeId), encodeJson(this.status(this.state)), { qos: 1, retain: true })
        .catch((err: Error) => this.log.debug({ err: err.message }, 'v1 status not published'));
    }
    throw new FedmqError(ErrorCodes.UNSUPPORTED_VERSION, `job ${this.job}'s coordinator speaks ${theirs}; this node speaks v${PROTOCOL_VERSION}`, { version: v });
  }

  /**
   * A NodeTask on this node's task topic: validated, de-duplicated by taskId within its run, and
   * queued. A new runId resets the per-run state first.
   * @throws FedmqError FEDMQ_BAD_PAYLOAD, FEDMQ_UNSUPPORTED_VERSION, FEDMQ_SCHEMA (also: the task
   *   or the topic names another node), FEDMQ_WRONG_JOB.
   */
  private onTask(topicNodeId: string, payload: Buffer): void {
    if (payload.length === 0) return;
    const task = decodeJson(NodeTaskSchema, payload, 'node task');
    if (task.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `task for job ${task.job}`, { job: task.job });
    if (task.nodeId !== topicNodeId || task.nodeId !== this.nodeId) {
      throw new FedmqError(ErrorCodes.SCHEMA, `node task: nodeId ${JSON.stringify(task.nodeId)} on the task topic of ${JSON.stringify(topicNodeId)} (this node: ${this.nodeId})`, { path: 'nodeId', nodeId: task.nodeId });
    }
    const run = this.runFor(task.runId);
    if (task.taskId <= run.forgottenUpTo || run.taskIds.has(task.taskId)) {
      this.log.debug({ taskId: task.taskId, round: task.round }, 'task already handled or queued: ignored');
      return;
    }
    run.taskIds.add(task.taskId);
    if (run.taskIds.size > RUN_TASK_IDS) {
      const oldest = run.taskIds.values().next().value!;
      run.taskIds.delete(oldest);
      run.forgottenUpTo = Math.max(run.forgottenUpTo, oldest);
    }
    if (task.stage === 'fit' && this.opts.onFitTask) {
      try {
        this.opts.onFitTask(fitContext(task));
      } catch (err) {
        this.problem(err, { round: task.round, taskId: task.taskId });
      }
    }
    this.queue.push({ task, run, receivedAt: Date.now() });
    if (!this.draining) void this.drain();
  }

  /** The state of run `runId`, new (and the old run's queued tasks dropped) when it is not the current one. */
  private runFor(runId: string): RunState {
    if (this.run?.runId === runId) return this.run;
    if (this.run) {
      const dropped = this.queue.length;
      this.queue.length = 0;
      this.log.info({ runId, previousRunId: this.run.runId, dropped }, 'new run: per-run state reset');
    }
    this.run = { runId, codecState: {}, taskIds: new Set(), forgottenUpTo: 0 };
    this.personal = undefined;
    this.taskInHand = undefined;
    return this.run;
  }

  /** Runs queued tasks one at a time, in arrival order. */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      while (!this.stopped && this.queue.length > 0) {
        const q = this.queue.shift()!;
        const { task } = q;
        this.taskInHand = task.taskId;
        // correlated union: handlers[task.stage] takes exactly tasks of that stage
        const handler = this.handlers[task.stage] as (q: Queued) => Promise<void>;
        try {
          await handler(q);
        } catch (err) {
          if (!this.stopped) this.problem(err, { round: task.round, taskId: task.taskId, stage: task.stage });
        }
        if (!this.stopped) this.publishStatus('idle');
      }
    } finally {
      this.draining = false;
    }
  }

  // --- stage handlers -----------------------------------------------------------------------

  /**
   * Fit (docs/protocol.md §5.2): fetch the model, train on the training split (seed
   * (FNV-1a(nodeId) ^ imul(round, 0x9e3779b1)) >>> 0, as in v1), keep the local model when
   * valFraction > 0, apply `transformDelta`, encode with the task's codec (error feedback per run)
   * and publish the Update (QoS 1; in chunks of `maxPayloadBytes` when set).
   */
  private async fit(q: Queued<FitTask>): Promise<void> {
    const { task, run } = q;
    const log = this.log.child({ round: task.round, taskId: task.taskId });
    this.publishStatus('training');
    const global = await this.acquireModel(q);
    if (this.stopped) return;
    const split = this.split(task.valFraction);
    const seed = (fnv1a(this.nodeId) ^ Math.imul(task.round, 0x9e3779b1)) >>> 0;
    const r = await this.trainer.train({ modelName: global.model, global: global.weights, data: split.train, config: task.config, seed });
    if (this.stopped) return;
    // the local model is global + delta, before transformDelta (which may detach the delta's buffers) and the codec
    run.local = task.valFraction > 0
      ? { runId: run.runId, taskId: task.taskId, round: task.round, model: global.model, weights: addDelta(global.weights, r.delta) }
      : undefined;
    this.publishStatus('uploading');
    const delta = this.opts.transformDelta ? await this.opts.transformDelta(r.delta, task.round, fitContext(task, r.trainMs)) : r.delta;
    if (this.stopped) return;
    if (task.secagg) {
      await this.maskedInput(q, global.weights, delta, r);
      return;
    }
    // differential privacy (§5.7): clip to C, and in local mode noise, before the delta is encoded
    const dp = task.dp ? privatizeDelta(delta, task.dp) : undefined;
    // error feedback (top-k) keeps what was not sent in run.codecState and adds it next time
    const tensors = getCodec(task.codec).encode(delta, task.codecParams ?? {}, run.codecState, seededRng(seed));
    const update: UpdateMessage = {
      v: PROTOCOL_VERSION, job: this.job, runId: task.runId, nodeId: this.nodeId, taskId: task.taskId, round: task.round,
      modelVersion: task.modelVersion, numExamples: r.numExamples, codec: task.codec, kind: 'delta',
      // local DP: the loss is not noised, so it is not sent (0); nothing past the device may see it
      metrics: { loss: task.dp?.mode === 'local' ? 0 : r.loss, trainMs: r.trainMs, bytesDown: this.takeBytesDown() }, dp: task.dp?.clipBit ? dp : undefined, tensors, ts: Date.now(),
    };
    const whole = encodePacked(update);
    // under a broker's message size limit the update goes in chunks (docs/chunking.md)
    const payloads = task.maxPayloadBytes ? splitPayload(whole, task.maxPayloadBytes) : [whole];
    this.emit('publishing', { round: task.round, taskId: task.taskId, bytes: payloads.reduce((n, p) => n + p.length, 0) });
    for (const p of payloads) await this.client!.publishAsync(topics.nodeUpdate(this.job, this.nodeId), p, { qos: 1 });
    const bytes = payloads.reduce((n, p) => n + p.length, 0);
    // local DP: the retained status must not carry the un-noised loss either
    this.last = { round: task.round, loss: task.dp?.mode === 'local' ? 0 : r.loss, trainMs: r.trainMs };
    log.info({ loss: r.loss, trainMs: Math.round(r.trainMs), bytes, chunks: payloads.length, numExamples: r.numExamples }, 'update published');
    this.emit('updated', { round: task.round, taskId: task.taskId, loss: r.loss, trainMs: r.trainMs, bytes });
  }

  /**
   * Evaluate (docs/protocol.md §5.4): fetch the model, evaluate it and (when the node trained in
   * this run with valFraction > 0) its local model on the held-out split, publish the
   * EvaluateResult, and keep the better of the two as the personal model.
   * @throws FedmqError FEDMQ_BAD_CONFIG when the held-out split is empty (no answer is sent).
   */
  private async evaluate(q: Queued<EvaluateTask>): Promise<void> {
    const { task, run } = q;
    const heldOut = this.split(task.valFraction).heldOut;
    if (!heldOut) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `evaluate task ${task.taskId}: valFraction ${task.valFraction} holds out none of ${this.opts.data.numExamples} examples`, { valFraction: task.valFraction });
    }
    this.publishStatus('evaluating');
    const global = await this.acquireModel(q);
    if (this.stopped) return;
    const t0 = performance.now();
    const g = await this.trainer.evaluate({ modelName: global.model, weights: global.weights, data: heldOut, batchSize: task.batchSize });
    const local = run.local?.runId === task.runId ? run.local : undefined;
    const l = local ? await this.trainer.evaluate({ modelName: local.model, weights: local.weights, data: heldOut, batchSize: task.batchSize }) : undefined;
    const evalMs = performance.now() - t0;
    if (this.stopped) return;
    const result: EvaluateResult = {
      v: PROTOCOL_VERSION, job: this.job, runId: task.runId, nodeId: this.nodeId, taskId: task.taskId, round: task.round,
      modelVersion: task.modelVersion, numExamples: heldOut.numExamples, global: score(g), local: l ? score(l) : null,
      evalMs, bytesDown: this.takeBytesDown(), ts: Date.now(),
    };
    const valid = EvaluateResultSchema.safeParse(result);
    if (!valid.success) {
      // e.g. NaN accuracy of a reconstruction model, or a diverged model's infinite loss
      throw new FedmqError(ErrorCodes.TRAINING_FAILED, `evaluate task ${task.taskId}: no valid result (${valid.error.issues[0].path.join('.')}: ${valid.error.issues[0].message})`, { path: valid.error.issues[0].path.join('.') });
    }
    await this.client!.publishAsync(topics.nodeEvaluation(this.job, this.nodeId), encodeJson(result), { qos: 1 });
    const personal = local && l && l.accuracy > g.accuracy ? 'local' : 'global';
    this.personal = personal === 'local' ? local!.weights : global.weights;
    this.log.info({ round: task.round, taskId: task.taskId, numExamples: heldOut.numExamples, global: result.global, local: result.local, personal }, 'evaluation published');
    this.emit('evaluated', { round: task.round, taskId: task.taskId, global: result.global, local: result.local, personal });
  }

  // --- secure aggregation (docs/protocol.md §12) --------------------------------------------

  /** The round's secure-aggregation client, or FEDMQ_SECAGG_PROTOCOL when this task's round has none. */
  private secaggOf(q: Queued): NonNullable<RunState['secagg']> {
    const s = q.run.secagg;
    if (!s || s.round !== q.task.round) throw new FedmqError(ErrorCodes.SECAGG_PROTOCOL, `${q.task.stage} task ${q.task.taskId} of round ${q.task.round}: this node advertised no keys in that round`, { taskId: q.task.taskId });
    return s;
  }

  private async answerSecAgg(task: NodeTask, body: Record<string, unknown>): Promise<void> {
    const msg = {
      v: PROTOCOL_VERSION, job: this.job, runId: task.runId, nodeId: this.nodeId, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion, ...body, ts: Date.now(),
    } as SecAggAnswer;
    await this.client!.publishAsync(topics.nodeSecAgg(this.job, this.nodeId), encodeSecAggAnswer(msg), { qos: 1 });
    this.emit('secagg', { round: task.round, taskId: task.taskId, stage: msg.stage });
  }

  /** Stage 1 (§12.3): fresh X25519 key pairs for the round; their public keys go back. */
  private async advertiseKeys(q: Queued<AdvertiseKeysTask>): Promise<void> {
    const { task, run } = q;
    run.secagg?.client.forget();
    const client = new SecAggClient(this.nodeId, { job: this.job, runId: task.runId, round: task.round });
    const reply = client.advertise({ neighbours: task.neighbours, threshold: task.threshold, bits: task.bits, dims: task.dims });
    run.secagg = { round: task.round, client, encoding: task.encoding };
    await this.answerSecAgg(task, { stage: 'advertise-keys', encPublicKey: reply.encPublicKey, maskPublicKey: reply.maskPublicKey });
  }

  /** Stage 2: Shamir shares of b and s_sk, sealed to each neighbour. */
  private async shareKeys(q: Queued<ShareKeysTask>): Promise<void> {
    const s = this.secaggOf(q);
    const peers = q.task.peers.map((p) => ({ nodeId: p.nodeId, encPublicKey: fromBase64(p.encPublicKey), maskPublicKey: fromBase64(p.maskPublicKey) }));
    const reply = await s.client.shareKeys({ peers });
    await this.answerSecAgg(q.task, { stage: 'share-keys', shares: reply.shares.map((x) => ({ to: x.to, ciphertext: x.ciphertext })) });
  }

  /**
   * Stage 3, the fit task's answer: the delta encoded as the round says (quantized FedAvg inputs,
   * or the distributed discrete Gaussian), masked, packed in b-bit words and sent as an Update
   * with no tensors (in chunks when the task sets maxPayloadBytes). The loss is not sent (0).
   */
  private async maskedInput(q: Queued<FitTask>, global: readonly NamedTensor[], delta: readonly NamedTensor[], r: { numExamples: number; trainMs: number; loss: number }): Promise<void> {
    const task = q.task;
    const s = this.secaggOf(q);
    const byName = new Map(delta.map((t) => [t.name, t]));
    const ordered = global.map((g) => byName.get(g.name)!);
    const params = s.client.params!;
    const input = secaggEncode(ordered, r.numExamples, s.encoding, cryptoRandom(), params.bits);
    const shares = task.secagg!.shares.map((x) => ({ from: x.from, to: this.nodeId, ciphertext: fromBase64(x.ciphertext) }));
    const masked = s.client.maskInput({ shares }, input);
    const update: UpdateMessage = {
      v: PROTOCOL_VERSION, job: this.job, runId: task.runId, nodeId: this.nodeId, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion,
      numExamples: 1, codec: task.codec, kind: 'delta', metrics: { loss: 0, trainMs: r.trainMs, bytesDown: this.takeBytesDown() },
      secagg: { data: packBits(masked, params.bits) }, tensors: [], ts: Date.now(),
    };
    const whole = encodePacked(update);
    const payloads = task.maxPayloadBytes ? splitPayload(whole, task.maxPayloadBytes) : [whole];
    const bytes = payloads.reduce((n, p) => n + p.length, 0);
    this.emit('publishing', { round: task.round, taskId: task.taskId, bytes });
    for (const p of payloads) await this.client!.publishAsync(topics.nodeUpdate(this.job, this.nodeId), p, { qos: 1 });
    // the retained status does not reveal the loss either (0, as in the Update)
    this.last = { round: task.round, loss: 0, trainMs: r.trainMs };
    this.log.info({ round: task.round, taskId: task.taskId, bytes, chunks: payloads.length, bits: params.bits }, 'masked input published');
    this.emit('updated', { round: task.round, taskId: task.taskId, loss: r.loss, trainMs: r.trainMs, bytes });
  }

  /** Stage 4: the shares the coordinator asked for (self-mask shares of survivors, mask-key shares of the dropped), once. */
  private async unmask(q: Queued<UnmaskTask>): Promise<void> {
    const s = this.secaggOf(q);
    const reply = s.client.unmask({ survivors: q.task.survivors, dropped: q.task.dropped });
    q.run.secagg = undefined;
    await this.answerSecAgg(q.task, { stage: 'unmask', selfMaskShares: reply.selfMaskShares, maskKeyShares: reply.maskKeyShares });
  }

  // --- helpers ------------------------------------------------------------------------------

  /** Payload bytes received since the previous answer; resets the count. */
  private takeBytesDown(): number {
    const n = this.bytesDown;
    this.bytesDown = 0;
    return n;
  }

  /** The node's split for `valFraction`, cached per fraction. */
  private split(valFraction: number): DataSplit {
    let s = this.splits.get(valFraction);
    if (!s) {
      s = splitDataset(this.nodeId, this.opts.data, valFraction);
      this.splits.set(valFraction, s);
    }
    return s;
  }

  /**
   * The global model a task names (docs/protocol.md §5.1, "Model by version"): the held one when
   * its sha256 matches; otherwise subscribe to `models/{v}` (or its chunks), take the first
   * payload of this job, run, version and sha256 that verifies, and unsubscribe. Other payloads
   * there (a stale retained model of an earlier run, a malformed one) are logged and skipped.
   * @throws FedmqError FEDMQ_MODEL_UNAVAILABLE when none arrives within `task.timeoutMs` of the
   *   task's arrival; FEDMQ_MODEL_MISMATCH when the task's model does not fit this node's data
   *   (then the node's status carries `dataMismatch` until a model fits).
   */
  private async acquireModel(q: Queued): Promise<HeldModel> {
    const { task } = q;
    if (this.latest?.sha256 === task.modelSha256) return this.latest;
    const remaining = q.receivedAt + task.timeoutMs - Date.now();
    const unavailable = () => new FedmqError(
      ErrorCodes.MODEL_UNAVAILABLE,
      `global model v${task.modelVersion} (sha256 ${task.modelSha256.slice(0, 12)}…) did not arrive within ${task.timeoutMs} ms of task ${task.taskId}`,
      { modelVersion: task.modelVersion, taskId: task.taskId, timeoutMs: task.timeoutMs },
    );
    if (remaining <= 0) throw unavailable();
    const c = this.client!;
    const version = task.modelVersion;
    const filter = task.modelChunks ? topicFilter('modelChunk', this.job, { version }) : topics.model(this.job, version);
    const log = this.log.child({ round: task.round, taskId: task.taskId, modelVersion: version });

    const model = await new Promise<HeldModel>((resolve, reject) => {
      const chunks = task.modelChunks
        ? new Reassembler({ maxTotalBytes: MAX_MODEL_BYTES, maxPendingBytes: 2 * MAX_MODEL_BYTES, maxPendingTransfers: 4, timeoutMs: remaining, onError: (err) => this.problem(err, { modelVersion: version }) })
        : undefined;
      let done = false;
      const finish = (err: FedmqError | undefined, m?: HeldModel) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        chunks?.close();
        this.acquisition = undefined;
        this.cancelAcquisition = undefined;
        if (!this.stopped) c.unsubscribeAsync(filter).catch((e: Error) => log.debug({ err: e.message }, 'unsubscribe failed'));
        if (err) reject(err);
        else resolve(m!);
      };
      const timer = setTimeout(() => finish(unavailable()), remaining);
      const consider = (payload: Buffer) => {
        const msg = decodeGlobalModel(payload);
        if (msg.job !== this.job || msg.runId !== task.runId || msg.version !== version || msg.sha256 !== task.modelSha256) {
          log.info({ job: msg.job, runId: msg.runId, version: msg.version, sha256: msg.sha256.slice(0, 12) }, 'not the model the task names (stale or foreign): ignored');
          return;
        }
        const weights = this.trainer.globalWeights(msg); // FEDMQ_HASH_MISMATCH: keep waiting for an intact copy
        try {
          this.trainer.check(msg.model, weights, this.opts.data, msg.sha256);
        } catch (err) {
          // the task's model itself does not fit this node: say so in the status (published when the task is given up)
          if (isFedmqError(err, ErrorCodes.MODEL_MISMATCH)) this.mismatch = { code: err.code, model: msg.model, message: err.message.slice(0, 1024) };
          finish(err as FedmqError);
          return;
        }
        this.mismatch = undefined;
        finish(undefined, { runId: msg.runId, version: msg.version, round: msg.round, model: msg.model, sha256: msg.sha256, weights });
      };
      this.cancelAcquisition = () => finish(unavailable());
      this.acquisition = {
        version,
        filter,
        offer: (payload, chunk) => {
          if (done || payload.length === 0) return; // cleared retained topic
          try {
            if (!chunk) return consider(payload);
            const whole = chunks!.push(`models/${version}`, payload);
            if (whole) consider(whole);
          } catch (err) {
            this.problem(err, { modelVersion: version, taskId: task.taskId });
          }
        },
      };
      c.subscribeAsync(filter, { qos: 1 }).catch((err: Error) => log.warn({ err: err.message }, 'model subscription failed; waiting for a reconnect'));
    });
    this.latest = model; // at most one held model besides the one in use
    log.debug({ sha256: model.sha256.slice(0, 12) }, 'global model fetched');
    this.emit('model', { version: model.version, round: model.round });
    return model;
  }
}

function fromBase64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'base64'));
}

function fitContext(task: FitTask, trainMs = 0): TransformDeltaContext {
  return { runId: task.runId, round: task.round, taskId: task.taskId, deadline: task.deadline, timeoutMs: task.timeoutMs, cohort: task.cohort, trainMs };
}

function score(e: LocalEvaluation): EvalScore {
  return { loss: e.loss, accuracy: e.accuracy };
}

/**
 * A fit task's differential privacy on the node (docs/protocol.md §5.7; McMahan et al. 2018,
 * arXiv:1710.06963): scales `delta` in place so that ‖Δ‖₂ ≤ C over all its tensors
 * (`clipL2`), then in local mode adds N(0, σ²C²) to every value from the process CSPRNG
 * (`addGaussianNoise`).
 * @returns Andrew et al. 2021's bit: `unclipped` = the delta was within C before clipping.
 * @throws FedmqError FEDMQ_NON_FINITE on a NaN/∞ delta; FEDMQ_BAD_CONFIG on a bad C or σ.
 */
export function privatizeDelta(delta: readonly NamedTensor[], dp: FitDp, random: RandomSource = cryptoRandom()): { unclipped: boolean } {
  const tensors = delta.map((t) => ({ data: t.data }));
  const { norm } = clipL2(tensors, dp.clipNorm);
  if (dp.mode === 'local') {
    if (dp.noiseMultiplier === undefined) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'a local-DP fit task needs dp.noiseMultiplier');
    const std = dp.noiseMultiplier * dp.clipNorm;
    for (const t of tensors) addGaussianNoise(t.data, std, random);
  }
  // Andrew et al.'s bit from the norm before clipping (clipL2's `clipped` also counts the 2^-21 margin)
  return { unclipped: norm <= dp.clipNorm };
}

/** global + delta, tensor by tensor (float32). */
function addDelta(global: readonly NamedTensor[], delta: readonly NamedTensor[]): NamedTensor[] {
  const byName = new Map(delta.map((d) => [d.name, d]));
  return global.map((g) => {
    const d = byName.get(g.name)!;
    const w = new Float32Array(g.data.length);
    for (let i = 0; i < w.length; i++) w[i] = g.data[i] + d.data[i];
    return { name: g.name, shape: [...g.shape], data: w };
  });
}
