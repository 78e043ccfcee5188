import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  ErrorCodes, FedmqError, PROTOCOL_VERSION, RoundTaskSchema, decodeGlobalModel, decodeJson, encodeJson, encodePacked, isFedmqError,
  parseTopic, topics, getCodec, seededRng, Reassembler, splitPayload, type CodecState, type DeviceInfo, type NamedTensor, type NodeStatus, type RoundTask,
  type UpdateMessage, CoordinatorStatusSchema, keepReconnecting, type BackoffOptions, type Reconnector,
} from '@fedmq/protocol';
import type { Dataset } from '@fedmq/ml';
import { createTrainer, type LocalTrainer } from './trainer.ts';

/** Options of {@link EdgeNode}. */
export interface EdgeNodeOptions {
  /** Broker URL, e.g. `mqtt://broker.local:1883`. */
  brokerUrl: string;
  job: string;
  nodeId: string;
  /** The node's local data; it never leaves the node. */
  data: Dataset;
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
   * other, e.g. ALIE); `ctx` carries the round task's run, selected nodes, deadline and timeout.
   */
  transformDelta?: (delta: NamedTensor[], round: number, ctx: TransformDeltaContext) => NamedTensor[] | Promise<NamedTensor[]>;
}

/** What {@link EdgeNodeOptions.transformDelta} learns of the round task. */
export type TransformDeltaContext = Pick<RoundTask, 'runId' | 'selected' | 'deadline' | 'timeoutMs'>;

/** Events an {@link EdgeNode} emits. */
export interface EdgeNodeEvents {
  /** A message was rejected or a round could not be trained; the node keeps running. */
  problem: [FedmqError];
  /** The node published its update for a round. */
  updated: [{ round: number; loss: number; trainMs: number; bytes: number }];
  /** A valid global model was received. */
  model: [{ version: number; round: number }];
  /** The node (re)subscribed and published its status after a (re)connect. */
  announced: [];
  /** The coordinator reported the job done (or failed). */
  jobEnded: [{ state: 'done' | 'failed'; round: number }];
}

interface GlobalModel { runId: string; version: number; round: number; model: string; sha256: string; weights: NamedTensor[] }

/**
 * The device runtime (docs/protocol.md, "Round lifecycle"): connects to the broker, announces
 * itself on its retained status topic with a Last Will (`offline`), keeps the latest valid global
 * model, trains when a round task selects it, publishes its update (delta = trained − global,
 * QoS 1), and waits for the next round. mqtt.js reconnects after a broker restart and the node
 * re-announces itself and resubscribes.
 *
 * A malformed model or task, or a model of the wrong shape, is logged with its code, emitted as
 * `problem`, and otherwise ignored: the node never crashes on a message.
 */
export class EdgeNode extends EventEmitter<EdgeNodeEvents> {
  readonly job: string;
  readonly nodeId: string;
  private readonly opts: EdgeNodeOptions;
  private readonly log: Logger;
  private readonly trainer: LocalTrainer;
  private readonly ownsTrainer: boolean;
  private client?: MqttClient;
  private reconnector?: Reconnector;
  private global?: GlobalModel;
  private pending?: RoundTask;
  private lastRound = 0;
  private runId?: string;
  private codecState: CodecState = {};
  /** Reassembles a global model published in chunks (docs/chunking.md). */
  private readonly modelChunks = new Reassembler({
    maxTotalBytes: 256 * 2 ** 20, maxPendingBytes: 512 * 2 ** 20, timeoutMs: 120_000,
    onError: (err) => this.problem(err),
  });
  private busy = false;
  private state: NodeStatus['state'] = 'idle';
  private last?: NodeStatus['lastRound'];
  private stopped = false;

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
   * The MQTT session is persistent (`clean: false`, a fixed client id per job and node): the
   * broker keeps the node's subscriptions and queues the QoS 1 tasks and coordinator statuses
   * while it is away, and QoS 1 updates published while the broker is unreachable are kept by the
   * client and sent on reconnect. The global model is subscribed at QoS 0: it is retained, so a
   * (re)subscription always delivers the latest one, and a broker does not queue a stale model
   * copy per offline node.
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
    this.client.on('error', (err) => this.log.warn({ err: err.message }, 'mqtt error'));
    this.client.on('connect', () => {
      this.log.info({ broker: this.opts.brokerUrl }, 'connected');
      void this.announce();
    });
    await new Promise<void>((resolve, reject) => {
      const onConnect = () => { this.client!.off('error', onError); resolve(); };
      const onError = (err: Error) => { if (!this.client!.connected && this.opts.reconnect === false) reject(err); };
      this.client!.once('connect', onConnect);
      this.client!.on('error', onError);
    });
  }

  private async announce(): Promise<void> {
    const c = this.client!;
    try {
      await c.subscribeAsync(
        {
          [topics.model(this.job)]: { qos: 0 }, [topics.allModelChunks(this.job)]: { qos: 0 }, [topics.task(this.job)]: { qos: 1 },
          [topics.coordinatorStatus(this.job)]: { qos: 1 },
        },
      );
      await this.publishStatus(this.state === 'offline' ? 'idle' : this.state);
      this.emit('announced');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'announce failed; will retry on reconnect');
    }
  }

  private status(state: NodeStatus['state']): NodeStatus {
    return {
      v: PROTOCOL_VERSION, job: this.job, nodeId: this.nodeId, state, ts: Date.now(),
      numExamples: this.opts.data.numExamples, device: this.opts.device, lastRound: this.last,
    };
  }

  private async publishStatus(state: NodeStatus['state']): Promise<void> {
    this.state = state;
    if (!this.client || this.stopped) return;
    await this.client.publishAsync(topics.nodeStatus(this.job, this.nodeId), encodeJson(this.status(state)), { qos: 1, retain: true });
  }

  private problem(err: unknown, context: Record<string, unknown> = {}): void {
    const e = isFedmqError(err) ? err : new FedmqError(ErrorCodes.TRAINING_FAILED, (err as Error)?.message ?? String(err), {}, { cause: err });
    this.log.warn({ code: e.code, ...e.details, ...context }, e.message);
    this.emit('problem', e);
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      const t = parseTopic(topic);
      if (t.job !== this.job) return;
      if (t.kind === 'model') this.onModel(payload);
      else if (t.kind === 'modelChunk') {
        if (payload.length === 0) return;
        const whole = this.modelChunks.push('model', payload);
        if (whole) this.onModel(whole);
      }
      else if (t.kind === 'task') this.onTask(payload);
      else if (t.kind === 'coordinatorStatus') this.onCoordinatorStatus(payload);
    } catch (err) {
      this.problem(err, { topic });
    }
  }

  private onCoordinatorStatus(payload: Buffer): void {
    if (payload.length === 0) return;
    const s = decodeJson(CoordinatorStatusSchema, payload, 'coordinator status');
    if (s.state === 'done' || s.state === 'failed') this.emit('jobEnded', { state: s.state, round: s.round });
  }

  private onModel(payload: Buffer): void {
    if (payload.length === 0) return; // retained message cleared
    const msg = decodeGlobalModel(payload);
    if (msg.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `model for job ${msg.job}`);
    // The latest retained model wins (a new run may restart at version 1); an exact repeat is ignored.
    if (this.global && this.global.runId === msg.runId && this.global.version >= msg.version) return;
    const weights = this.trainer.globalWeights(msg);
    this.trainer.check(msg.model, weights, this.opts.data);
    this.global = { runId: msg.runId, version: msg.version, round: msg.round, model: msg.model, sha256: msg.sha256, weights };
    this.log.debug({ version: msg.version }, 'global model received');
    this.emit('model', { version: msg.version, round: msg.round });
    if (this.pending && this.pending.runId === msg.runId && this.pending.modelVersion === msg.version) {
      const task = this.pending;
      this.pending = undefined;
      void this.train(task);
    }
  }

  private onTask(payload: Buffer): void {
    if (payload.length === 0) return;
    const task = decodeJson(RoundTaskSchema, payload, 'round task');
    if (task.job !== this.job) throw new FedmqError(ErrorCodes.WRONG_JOB, `task for job ${task.job}`);
    if (task.runId !== this.runId) {
      this.runId = task.runId; // a new run of the job: its rounds start again from 1
      this.lastRound = 0;
      this.codecState = {}; // and its error-feedback residuals belong to the old run
    }
    if (!task.selected.includes(this.nodeId) || task.round <= this.lastRound) return;
    if (!this.global || this.global.runId !== task.runId || this.global.version !== task.modelVersion) {
      this.pending = task; // the model it names has not arrived yet
      return;
    }
    void this.train(task);
  }

  private async train(task: RoundTask): Promise<void> {
    if (task.round <= this.lastRound || this.stopped) return;
    if (this.busy) {
      this.pending = task; // the round being trained was closed; train this one next
      return;
    }
    const global = this.global!;
    this.busy = true;
    this.lastRound = task.round;
    const log = this.log.child({ round: task.round });
    try {
      await this.publishStatus('training');
      const seed = (hashString(this.nodeId) ^ Math.imul(task.round, 0x9e3779b1)) >>> 0;
      const r = await this.trainer.train({ modelName: global.model, global: global.weights, data: this.opts.data, config: task.config, seed });
      if (this.stopped) return;
      await this.publishStatus('uploading');
      // error feedback (top-k) keeps what was not sent in this.codecState and adds it next round
      const ctx = { runId: task.runId, selected: task.selected, deadline: task.deadline, timeoutMs: task.timeoutMs };
      const delta = this.opts.transformDelta ? await this.opts.transformDelta(r.delta, task.round, ctx) : r.delta;
      if (this.stopped) return;
      const tensors = getCodec(task.codec).encode(delta, task.codecParams ?? {}, this.codecState, seededRng(seed));
      const update: UpdateMessage = {
        v: PROTOCOL_VERSION, job: this.job, runId: task.runId, nodeId: this.nodeId, round: task.round, modelVersion: task.modelVersion,
        numExamples: r.numExamples, codec: task.codec, kind: 'delta', metrics: { loss: r.loss, trainMs: r.trainMs }, tensors, ts: Date.now(),
      };
      const whole = encodePacked(update);
      // under a broker's message size limit the update goes in chunks (docs/chunking.md)
      const payloads = task.maxPayloadBytes ? splitPayload(whole, task.maxPayloadBytes) : [whole];
      for (const p of payloads) await this.client!.publishAsync(topics.nodeUpdate(this.job, this.nodeId), p, { qos: 1 });
      const bytes = payloads.reduce((n, p) => n + p.length, 0);
      this.last = { round: task.round, loss: r.loss, trainMs: r.trainMs };
      log.info({ loss: r.loss, trainMs: Math.round(r.trainMs), bytes, chunks: payloads.length }, 'update published');
      this.emit('updated', { round: task.round, loss: r.loss, trainMs: r.trainMs, bytes });
    } catch (err) {
      this.problem(err, { round: task.round });
    } finally {
      this.busy = false;
      if (!this.stopped) await this.publishStatus('idle').catch(() => undefined);
    }
    const next = this.pending;
    if (next && this.global && next.runId === this.global.runId && next.modelVersion === this.global.version) {
      this.pending = undefined;
      await this.train(next);
    }
  }

  /**
   * Cuts the connection without a DISCONNECT, as a lost link does: the broker publishes the
   * node's Last Will (`offline`), and the node reconnects with backoff (QoS 1 messages in flight
   * are sent again). For fault injection in simulations and tests.
   */
  dropConnection(): void {
    this.client?.stream.destroy();
  }

  /** Publishes `offline`, disconnects, and frees the trainer it owns. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    const c = this.client;
    if (c?.connected) await this.publishStatus('offline').catch(() => undefined);
    this.stopped = true;
    this.reconnector?.stop();
    this.modelChunks.close();
    if (c) await c.endAsync();
    if (this.ownsTrainer) this.trainer.dispose();
  }
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
