import {
  CoordinatorStatusSchema, ErrorCodes, FedmqError, ModelMetaSchema, NodeStatusSchema, RoundMetricsSchema, RoundTaskSchema, TOPIC_ROOT, decodeJson,
  isFedmqError, parseTopic, type CoordinatorStatus, type ErrorCode, type ModelMeta, type NodeStatus, type ParsedTopic, type RoundMetrics,
  type RoundTask,
} from '@fedmq/protocol';

/**
 * The fleet state a monitor keeps, built only from the JSON topics of docs/protocol.md §2
 * (coordinator status, node statuses, round metrics, model meta, round task). No UI, no I/O:
 * feed it MQTT messages with {@link FleetState.apply} and it returns what changed as
 * {@link MonitorEvent}s.
 */

/** One node as the monitor knows it. */
export interface NodeView {
  nodeId: string;
  /** The node's latest valid status (docs/protocol.md §3.2). */
  status: NodeStatus;
  /**
   * When the node was last heard from, epoch ms: the monitor's clock for live messages, the
   * status's own `ts` (sender's clock) for a retained status delivered on subscribe.
   */
  lastSeen: number;
}

/** The open (or last) round task, with what the monitor saw of it. */
export interface TaskView {
  task: RoundTask;
  /** Selected nodes that have reported an update for this round (status with `lastRound.round` = task round). */
  reported: Set<string>;
}

/** Everything known about one job. */
export interface JobState {
  job: string;
  /** Run the state below belongs to (from coordinator status, task, metrics or model meta); undefined before any. */
  runId?: string;
  coordinator?: CoordinatorStatus;
  nodes: Map<string, NodeView>;
  /** Round metrics of the current run, sorted by round. */
  rounds: RoundMetrics[];
  model?: ModelMeta;
  /** Task of the open round; undefined before any, or after the coordinator cleared it (end of run). */
  task?: TaskView;
  /** Largest sender `ts` seen in a message of the current run (to tell a new run from a stale retained message of an old one). */
  runTs: number;
}

/** What {@link FleetState.apply} reports; `job` is always the topic's job. */
export type MonitorEvent =
  /** The coordinator's status changed (run, state, round or deadline); `previous` is the last state, if any. */
  | { type: 'coordinator'; job: string; status: CoordinatorStatus; previous?: CoordinatorStatus['state'] }
  /** A node's state changed (or the node was seen for the first time: no `previous`). */
  | { type: 'node'; job: string; nodeId: string; status: NodeStatus; previous?: NodeStatus['state'] }
  /** An empty retained status removed a node (docs/protocol.md §1, "Empty payload"). */
  | { type: 'nodeRemoved'; job: string; nodeId: string }
  /** A round's metrics (once per round and run; retained redeliveries are not repeated). */
  | { type: 'round'; job: string; metrics: RoundMetrics }
  /** A new global model (its meta). */
  | { type: 'model'; job: string; meta: ModelMeta }
  /** A new round task, or `task: null` when the coordinator cleared it at the end of a run. */
  | { type: 'task'; job: string; task: RoundTask | null }
  /** A message of another run than the current one and newer: the job's rounds, task and model were reset. */
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

/** Topic filters of the JSON topics a monitor needs (never the binary `model` and `nodes/+/update`). */
export function monitorTopics(job?: string): string[] {
  const base = `${TOPIC_ROOT}/${job ?? '+'}`;
  if (job !== undefined) parseTopic(`${base}/task`); // FEDMQ_BAD_TOPIC on an invalid job id
  return [`${base}/coordinator/status`, `${base}/nodes/+/status`, `${base}/rounds/+/metrics`, `${base}/model/meta`, `${base}/task`];
}

const JSON_KINDS = new Set<ParsedTopic['kind']>(['coordinatorStatus', 'nodeStatus', 'roundMetrics', 'latestMetrics', 'modelMeta', 'task']);

/**
 * The fleet-state reducer: per job, the coordinator's status, every node's latest status, the
 * round metrics of the current run, the model meta and the open task.
 *
 * - Payloads are validated with the `@fedmq/protocol` schemas; anything invalid (bad topic, not
 *   JSON, wrong version, schema, job or nodeId not matching the topic) becomes an `invalid` event
 *   with its FEDMQ error code. {@link FleetState.apply} never throws.
 * - Binary topics (`model`, `nodes/+/update`) are ignored.
 * - A `node` event is returned for a node's first status and each status whose `state` differs
 *   from the previous one; other statuses update the node silently.
 * - A message with a new `runId` that is newer than the current run resets the job's rounds,
 *   task and model meta (`run` event); an older run's retained message is ignored.
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
    if (!JSON_KINDS.has(parsed.kind)) return [];
    try {
      return this.applyParsed(parsed, topic, payload, info.now ?? Date.now(), info.retained ?? false);
    } catch (err) {
      return [invalid(topic, parsed.job, err)];
    }
  }

  private applyParsed(p: ParsedTopic, topic: string, payload: Uint8Array, now: number, retained: boolean): MonitorEvent[] {
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
        if (prev && prev.runId === status.runId && prev.state === status.state && prev.round === status.round && prev.deadline === status.deadline) return events;
        events.push({ type: 'coordinator', job, status, previous: prev?.state });
        return events;
      }
      case 'nodeStatus': {
        const s = this.job(job);
        if (empty) {
          if (!s.nodes.delete(p.nodeId)) return [];
          s.task?.reported.delete(p.nodeId);
          return [{ type: 'nodeRemoved', job, nodeId: p.nodeId }];
        }
        const status = decodeJson(NodeStatusSchema, payload, 'node status');
        sameJob(status.job, job);
        if (status.nodeId !== p.nodeId) {
          throw new FedmqError(ErrorCodes.SCHEMA, `node status: nodeId ${status.nodeId} does not match the topic's ${p.nodeId}`);
        }
        const prev = s.nodes.get(p.nodeId);
        s.nodes.set(p.nodeId, { nodeId: p.nodeId, status, lastSeen: retained ? status.ts : now });
        const t = s.task;
        if (t && t.task.selected.includes(p.nodeId) && status.lastRound?.round === t.task.round && status.state !== 'training') t.reported.add(p.nodeId);
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
      case 'task': {
        const s = this.job(job);
        if (empty) {
          if (!s.task) return [];
          s.task = undefined;
          return [{ type: 'task', job, task: null }];
        }
        const task = decodeJson(RoundTaskSchema, payload, 'round task');
        sameJob(task.job, job);
        const events = this.switchRun(s, task.runId, task.ts);
        if (!events) return [];
        const prev = s.task?.task;
        if (prev && prev.runId === task.runId && prev.round === task.round && prev.ts === task.ts) return events;
        const reported = new Set<string>();
        for (const id of task.selected) {
          const n = s.nodes.get(id);
          if (n && n.status.lastRound?.round === task.round && n.status.state !== 'training' && n.status.ts >= task.ts) reported.add(id);
        }
        s.task = { task, reported };
        events.push({ type: 'task', job, task });
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
    s.task = undefined;
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
  const byState = { idle: 0, training: 0, uploading: 0, offline: 0 };
  for (const n of s.nodes.values()) byState[n.status.state]++;
  return { online: s.nodes.size - byState.offline, byState };
}
