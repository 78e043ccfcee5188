import {
  CoordinatorStatusSchema, ErrorCodes, FedmqError, ModelMetaSchema, NodeStatusSchema, RoundMetricsSchema, StageStatusSchema, TOPIC_KINDS, TOPIC_TABLE,
  decodeJson, isFedmqError, parseTopic, topicFilter, type CoordinatorStatus, type ErrorCode, type ModelMeta, type NodeStatus, type ParsedTopic,
  type RoundMetrics, type StageName, type StageStatus, type TopicKind,
} from '@fedmq/protocol';

/**
 * The fleet state a monitor keeps, built only from the topics a monitor may read
 * (docs/protocol.md §2, readers `monitor` in `TOPIC_TABLE`): coordinator status, coordinator
 * stage, node statuses, round metrics (per round and latest) and model meta. No UI, no I/O: feed
 * it MQTT messages with {@link FleetState.apply} and it returns what changed as
 * {@link MonitorEvent}s.
 */

/** One node as the monitor knows it. */
export interface NodeView {
  nodeId: string;
  /** The node's latest valid status (docs/protocol.md §3, NodeStatus). */
  status: NodeStatus;
  /**
   * When the node was last heard from, epoch ms: the monitor's clock for live messages, the
   * status's own `ts` (sender's clock) for a retained status delivered on subscribe.
   */
  lastSeen: number;
}

/** Everything known about one job. */
export interface JobState {
  job: string;
  /** Run the state below belongs to (from coordinator status, stage, metrics or model meta); undefined before any. */
  runId?: string;
  /** The coordinator's status (published at run start and end, and as its Last Will). */
  coordinator?: CoordinatorStatus;
  /**
   * Where the round engine is (`coordinator/stage`): round, stage, cohort, nodes online and the
   * stage's deadline. Undefined before any, or after the coordinator cleared the topic. It stays
   * after the run ends: look at `coordinator.state` to tell a live stage from the last one of a
   * finished run.
   */
  stage?: StageStatus;
  nodes: Map<string, NodeView>;
  /** Round metrics of the current run, sorted by round (failed rounds, `accepted: false`, included). */
  rounds: RoundMetrics[];
  model?: ModelMeta;
  /** Largest sender `ts` seen in a message of the current run (to tell a new run from a stale retained message of an old one). */
  runTs: number;
}

/** What {@link FleetState.apply} reports; `job` is always the topic's job. */
export type MonitorEvent =
  /** The coordinator's status changed (run, state, mode, round or rounds); `previous` is the last state, if any. */
  | { type: 'coordinator'; job: string; status: CoordinatorStatus; previous?: CoordinatorStatus['state'] }
  /**
   * The round engine entered a stage (or its round, cohort, online count or deadline changed);
   * `previous` is the stage it was in, if any. `stage: null` when the coordinator cleared the
   * retained stage topic.
   */
  | { type: 'stage'; job: string; stage: StageStatus | null; previous?: StageName }
  /** A node's state changed (or the node was seen for the first time: no `previous`). */
  | { type: 'node'; job: string; nodeId: string; status: NodeStatus; previous?: NodeStatus['state'] }
  /** An empty retained status removed a node (docs/protocol.md §1, "Empty payload"). */
  | { type: 'nodeRemoved'; job: string; nodeId: string }
  /** A round's metrics (once per round and run; retained redeliveries and the `metrics` twin are not repeated). */
  | { type: 'round'; job: string; metrics: RoundMetrics }
  /** A new global model (its meta). */
  | { type: 'model'; job: string; meta: ModelMeta }
  /** A message of another run than the current one and newer: the job's rounds, stage and model were reset. */
  | { type: 'run'; job: string; runId: string; previousRunId?: string }
  /** A message that failed validation; it changed nothing. */
  | { type: 'invalid'; job?: string; topic: string; code: ErrorCode; message: string };

/** Context of one received message. */
export interface MessageInfo {
  /** The broker flagged the message as retained (delivered on subscribe, not live). */
  retained?: boolean;
  /** The monitor's clock, epoch ms. Default `Date.now()`. */
  now?: number;
}

/**
 * Topic kinds a monitor reads: those of `TOPIC_TABLE` with `monitor` among their readers
 * (coordinator status and stage, model meta, node statuses, round metrics and the latest
 * metrics) — never models, tasks, updates or evaluation results, which the broker's ACL does not
 * let a monitor read.
 */
const MONITOR_KINDS: readonly TopicKind[] = TOPIC_KINDS.filter((k) => (TOPIC_TABLE[k].readers as readonly string[]).includes('monitor'));
const MONITOR_KIND_SET = new Set<ParsedTopic['kind']>(MONITOR_KINDS);

/**
 * Subscription filters of a monitor, for one job or every job (`+`), generated from the topic
 * table: `fedmq/v2/{job}/coordinator/status`, `…/coordinator/stage`, `…/model/meta`,
 * `…/nodes/+/status`, `…/rounds/+/metrics`, `…/metrics`.
 * @throws FedmqError FEDMQ_BAD_TOPIC when `job` is not a valid job id.
 */
export function monitorTopics(job?: string): string[] {
  return MONITOR_KINDS.map((kind) => topicFilter(kind, job ?? '+'));
}

/**
 * The fleet-state reducer: per job, the coordinator's status, the engine's stage, every node's
 * latest status, the round metrics of the current run and the model meta.
 *
 * - Payloads are validated with the `@fedmq/protocol` schemas; anything invalid (bad topic, not
 *   JSON, wrong version, schema, job, nodeId or round not matching the topic) becomes an
 *   `invalid` event with its FEDMQ error code. {@link FleetState.apply} never throws.
 * - Topics a monitor does not read (models, tasks, updates, evaluation results, v1 topics) are
 *   ignored.
 * - A `node` event is returned for a node's first status and each status whose `state` differs
 *   from the previous one; other statuses update the node silently.
 * - A message with a new `runId` that is newer than the current run resets the job's rounds,
 *   stage and model meta (`run` event); an older run's retained message is ignored.
 */
export class FleetState {
  /** Jobs by id. */
  readonly jobs = new Map<string, JobState>();

  /** The job's state, created empty if unknown. */
  job(job: string): JobState {
    let s = this.jobs.get(job);
    if (!s) {
      s = { job, nodes: new Map(), rounds: [], runTs: 0 };
      this.jobs.set(job, s);
    }
    return s;
  }

  /**
   * Folds one MQTT message into the state.
   * @param topic the MQTT topic.
   * @param payload the raw payload (an empty payload clears a retained topic).
   * @returns the events it caused, in order (often none).
   */
  apply(topic: string, payload: Uint8Array, info: MessageInfo = {}): MonitorEvent[] {
    let parsed: ParsedTopic;
    try {
      parsed = parseTopic(topic);
    } catch (err) {
      return [invalid(topic, undefined, err)];
    }
    if (!MONITOR_KIND_SET.has(parsed.kind)) return [];
    try {
      return this.applyParsed(parsed, payload, info.now ?? Date.now(), info.retained ?? false);
    } catch (err) {
      return [invalid(topic, parsed.job, err)];
    }
  }

  private applyParsed(p: ParsedTopic, payload: Uint8Array, now: number, retained: boolean): MonitorEvent[] {
    const job = p.job;
    const empty = payload.byteLength === 0;
    switch (p.kind) {
      case 'coordinatorStatus': {
        if (empty) return [];
        const status = decodeJson(CoordinatorStatusSchema, payload, 'coordinator status');
        sameJob(status.job, job);
        const s = this.job(job);
        const prev = s.coordinator;
        const events = this.switchRun(s, status.runId, status.ts);
        if (!events) return [];
        s.coordinator = status;
        if (
          prev && prev.runId === status.runId && prev.state === status.state && prev.round === status.round && prev.rounds === status.rounds
          && prev.mode === status.mode
        ) return events;
        events.push({ type: 'coordinator', job, status, previous: prev?.state });
        return events;
      }
      case 'stage': {
        const s = this.job(job);
        if (empty) {
          if (!s.stage) return [];
          const previous = s.stage.stage;
          s.stage = undefined;
          return [{ type: 'stage', job, stage: null, previous }];
        }
        const stage = decodeJson(StageStatusSchema, payload, 'stage status');
        sameJob(stage.job, job);
        const events = this.switchRun(s, stage.runId, stage.ts);
        if (!events) return [];
        const prev = s.stage;
        if (prev && prev.runId === stage.runId && stage.ts < prev.ts) return events; // an older stage of this run (out of order)
        s.stage = stage;
        if (
          prev && prev.runId === stage.runId && prev.round === stage.round && prev.stage === stage.stage && prev.cohort === stage.cohort
          && prev.online === stage.online && prev.deadline === stage.deadline
        ) return events; // retained redelivery or a republish with the same content
        events.push({ type: 'stage', job, stage, previous: prev?.stage });
        return events;
      }
      case 'nodeStatus': {
        const s = this.job(job);
        if (empty) {
          if (!s.nodes.delete(p.nodeId)) return [];
          return [{ type: 'nodeRemoved', job, nodeId: p.nodeId }];
        }
        const status = decodeJson(NodeStatusSchema, payload, 'node status');
        sameJob(status.job, job);
        if (status.nodeId !== p.nodeId) {
          throw new FedmqError(ErrorCodes.SCHEMA, `node status: nodeId ${status.nodeId} does not match the topic's ${p.nodeId}`);
        }
        const prev = s.nodes.get(p.nodeId);
        s.nodes.set(p.nodeId, { nodeId: p.nodeId, status, lastSeen: retained ? status.ts : now });
        if (prev && prev.status.state === status.state) return [];
        return [{ type: 'node', job, nodeId: p.nodeId, status, previous: prev?.status.state }];
      }
      case 'roundMetrics':
      case 'latestMetrics': {
        if (empty) return [];
        const metrics = decodeJson(RoundMetricsSchema, payload, 'round metrics');
        sameJob(metrics.job, job);
        if (p.kind === 'roundMetrics' && metrics.round !== p.round) {
          throw new FedmqError(ErrorCodes.SCHEMA, `round metrics: round ${metrics.round} does not match the topic's ${p.round}`);
        }
        const s = this.job(job);
        const events = this.switchRun(s, metrics.runId, metrics.ts);
        if (!events) return [];
        const i = s.rounds.findIndex((r) => r.round >= metrics.round);
        const existing = i >= 0 ? s.rounds[i] : undefined;
        if (existing?.round === metrics.round) {
          if (existing.ts === metrics.ts) return events; // retained redelivery, or the `metrics` twin
          s.rounds[i] = metrics;
        } else if (i < 0) s.rounds.push(metrics);
        else s.rounds.splice(i, 0, metrics);
        events.push({ type: 'round', job, metrics });
        return events;
      }
      case 'modelMeta': {
        if (empty) return [];
        const meta = decodeJson(ModelMetaSchema, payload, 'model meta');
        sameJob(meta.job, job);
        const s = this.job(job);
        const events = this.switchRun(s, meta.runId, meta.ts);
        if (!events) return [];
        if (s.model && s.model.runId === meta.runId && s.model.version === meta.version && s.model.sha256 === meta.sha256) return events;
        s.model = meta;
        events.push({ type: 'model', job, meta });
        return events;
      }
      default:
        return [];
    }
  }

  /**
   * Decides whether a message of run `runId` sent at `ts` belongs to the job's current run.
   * @returns the events of a run switch (possibly none) when it does, undefined when the message
   *   is from an older run and must be ignored.
   */
  private switchRun(s: JobState, runId: string, ts: number): MonitorEvent[] | undefined {
    if (s.runId === runId) {
      s.runTs = Math.max(s.runTs, ts);
      return [];
    }
    if (s.runId !== undefined && ts < s.runTs) return undefined; // a stale retained message of an older run
    const previousRunId = s.runId;
    s.runId = runId;
    s.runTs = ts;
    s.rounds = [];
    s.stage = undefined;
    s.model = undefined;
    if (s.coordinator && s.coordinator.runId !== runId) s.coordinator = undefined;
    return [{ type: 'run', job: s.job, runId, previousRunId }];
  }
}

function sameJob(payloadJob: string, topicJob: string): void {
  if (payloadJob !== topicJob) {
    throw new FedmqError(ErrorCodes.WRONG_JOB, `message of job ${payloadJob} on a topic of job ${topicJob}`);
  }
}

function invalid(topic: string, job: string | undefined, err: unknown): MonitorEvent {
  const code: ErrorCode = isFedmqError(err) ? err.code : ErrorCodes.BAD_PAYLOAD;
  return { type: 'invalid', job, topic: topic.slice(0, 200), code, message: (err as Error)?.message ?? String(err) };
}

/**
 * Counts of a job's nodes by state, and how many are online (any state but `offline`).
 */
export function nodeCounts(s: JobState): { online: number; byState: Record<NodeStatus['state'], number> } {
  const byState: Record<NodeStatus['state'], number> = { idle: 0, training: 0, evaluating: 0, uploading: 0, offline: 0 };
  for (const n of s.nodes.values()) byState[n.status.state]++;
  return { online: s.nodes.size - byState.offline, byState };
}

/**
 * Rounds of the current run that were accepted (the run's progress: `rounds` of the coordinator
 * counts accepted rounds), from the metrics seen, or the coordinator status's `round` when it is
 * larger (metrics of early rounds may have been cleared).
 */
export function acceptedRounds(s: JobState): number {
  const seen = s.rounds.filter((r) => r.accepted).length;
  const c = s.coordinator && s.coordinator.runId === s.runId ? s.coordinator.round : 0;
  return Math.max(seen, c);
}
