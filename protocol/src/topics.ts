import { ErrorCodes, FedmqError } from './errors.ts';

/**
 * Topic strings are built and parsed here only (docs/protocol.md, "Topics").
 *
 * ```
 * fedmq/v1/{job}/coordinator/status     retained JSON, Last Will
 * fedmq/v1/{job}/model                  retained msgpack: the global model
 * fedmq/v1/{job}/model/meta             retained JSON: the global model's version, size, sha256
 * fedmq/v1/{job}/model/chunks/{index}   retained msgpack: the global model in chunks (chunked transfer)
 * fedmq/v1/{job}/task                   retained JSON: the current round task
 * fedmq/v1/{job}/nodes/{nodeId}/status  retained JSON, Last Will
 * fedmq/v1/{job}/nodes/{nodeId}/update  msgpack, QoS 1: a node's update
 * fedmq/v1/{job}/rounds/{round}/metrics retained JSON: one round's metrics
 * fedmq/v1/{job}/metrics                retained JSON: the latest round's metrics
 * ```
 */
export const TOPIC_ROOT = 'fedmq/v1';

/** Job ids and node ids: 1–64 characters of `A–Z a–z 0–9 _ . -` (no MQTT wildcards, no `/`). */
export const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Throws FEDMQ_BAD_TOPIC unless `id` is a valid job or node id. */
export function assertId(kind: 'job' | 'nodeId', id: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new FedmqError(ErrorCodes.BAD_TOPIC, `invalid ${kind} ${JSON.stringify(id)}: expected 1-64 of [A-Za-z0-9_.-]`, { [kind]: id });
  }
}

function base(job: string): string {
  assertId('job', job);
  return `${TOPIC_ROOT}/${job}`;
}

/** Builders for every fedmq topic. Each throws FEDMQ_BAD_TOPIC on an invalid id. */
export const topics = {
  coordinatorStatus: (job: string) => `${base(job)}/coordinator/status`,
  model: (job: string) => `${base(job)}/model`,
  modelMeta: (job: string) => `${base(job)}/model/meta`,
  modelChunk: (job: string, index: number) => `${base(job)}/model/chunks/${index}`,
  /** Subscription filter: every chunk of the global model. */
  allModelChunks: (job: string) => `${base(job)}/model/chunks/+`,
  task: (job: string) => `${base(job)}/task`,
  nodeStatus: (job: string, nodeId: string) => {
    assertId('nodeId', nodeId);
    return `${base(job)}/nodes/${nodeId}/status`;
  },
  nodeUpdate: (job: string, nodeId: string) => {
    assertId('nodeId', nodeId);
    return `${base(job)}/nodes/${nodeId}/update`;
  },
  roundMetrics: (job: string, round: number) => `${base(job)}/rounds/${round}/metrics`,
  latestMetrics: (job: string) => `${base(job)}/metrics`,
  /** Subscription filter: every node's status in a job. */
  allNodeStatus: (job: string) => `${base(job)}/nodes/+/status`,
  /** Subscription filter: every node's update in a job. */
  allNodeUpdates: (job: string) => `${base(job)}/nodes/+/update`,
  /** Subscription filter: everything of one job, or of every job when `job` is omitted. */
  all: (job?: string) => (job === undefined ? `${TOPIC_ROOT}/#` : `${base(job)}/#`),
} as const;

/** Kinds of fedmq topic, as in {@link ParsedTopic}. */
export type TopicKind = ParsedTopic['kind'];

/**
 * A subscription filter (MQTT 3.1.1 §4.7) for one kind of fedmq topic, e.g. for access control
 * lists: `job` and `nodeId` may be `'+'` (any job, any node); the chunk index and the round are
 * always `+`. `nodeId` is needed for `nodeStatus` and `nodeUpdate` only. Kind `all` is every
 * topic of the job (`fedmq/v1/{job}/#`).
 * @throws FedmqError FEDMQ_BAD_TOPIC when `job` or `nodeId` is neither `'+'` nor a valid id.
 */
export function topicFilter(kind: TopicKind | 'all', job: string, nodeId = '+'): string {
  if (job !== '+') assertId('job', job);
  if (nodeId !== '+') assertId('nodeId', nodeId);
  const b = `${TOPIC_ROOT}/${job}`;
  switch (kind) {
    case 'coordinatorStatus': return `${b}/coordinator/status`;
    case 'model': return `${b}/model`;
    case 'modelMeta': return `${b}/model/meta`;
    case 'modelChunk': return `${b}/model/chunks/+`;
    case 'task': return `${b}/task`;
    case 'nodeStatus': return `${b}/nodes/${nodeId}/status`;
    case 'nodeUpdate': return `${b}/nodes/${nodeId}/update`;
    case 'roundMetrics': return `${b}/rounds/+/metrics`;
    case 'latestMetrics': return `${b}/metrics`;
    case 'all': return `${b}/#`;
  }
}

/** A parsed fedmq topic. */
export type ParsedTopic =
  | { kind: 'coordinatorStatus'; job: string }
  | { kind: 'model'; job: string }
  | { kind: 'modelMeta'; job: string }
  | { kind: 'modelChunk'; job: string; index: number }
  | { kind: 'task'; job: string }
  | { kind: 'nodeStatus'; job: string; nodeId: string }
  | { kind: 'nodeUpdate'; job: string; nodeId: string }
  | { kind: 'roundMetrics'; job: string; round: number }
  | { kind: 'latestMetrics'; job: string };

/**
 * Parses a topic into its kind and ids.
 * @throws FedmqError FEDMQ_BAD_TOPIC when the topic is not a fedmq v1 topic or an id is invalid.
 */
export function parseTopic(topic: string): ParsedTopic {
  const parts = topic.split('/');
  const bad = () => new FedmqError(ErrorCodes.BAD_TOPIC, `not a fedmq v1 topic: ${JSON.stringify(topic.slice(0, 200))}`, { topic: topic.slice(0, 200) });
  if (parts.length < 4 || parts[0] !== 'fedmq' || parts[1] !== 'v1') throw bad();
  const job = parts[2];
  if (!ID_PATTERN.test(job)) throw bad();
  const rest = parts.slice(3);
  if (rest.length === 2 && rest[0] === 'coordinator' && rest[1] === 'status') return { kind: 'coordinatorStatus', job };
  if (rest.length === 1 && rest[0] === 'model') return { kind: 'model', job };
  if (rest.length === 2 && rest[0] === 'model' && rest[1] === 'meta') return { kind: 'modelMeta', job };
  if (rest.length === 3 && rest[0] === 'model' && rest[1] === 'chunks' && /^(0|[1-9][0-9]{0,8})$/.test(rest[2])) {
    return { kind: 'modelChunk', job, index: Number(rest[2]) };
  }
  if (rest.length === 1 && rest[0] === 'task') return { kind: 'task', job };
  if (rest.length === 1 && rest[0] === 'metrics') return { kind: 'latestMetrics', job };
  if (rest.length === 3 && rest[0] === 'nodes' && ID_PATTERN.test(rest[1])) {
    if (rest[2] === 'status') return { kind: 'nodeStatus', job, nodeId: rest[1] };
    if (rest[2] === 'update') return { kind: 'nodeUpdate', job, nodeId: rest[1] };
  }
  if (rest.length === 3 && rest[0] === 'rounds' && rest[2] === 'metrics' && /^[1-9][0-9]{0,8}$/.test(rest[1])) {
    return { kind: 'roundMetrics', job, round: Number(rest[1]) };
  }
  throw bad();
}
