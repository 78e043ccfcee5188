import { ErrorCodes, FedmqError } from './errors.ts';

/**
 * The topic table of protocol v2 (docs/protocol.md §2): the one place where fedmq topics are
 * defined. Topic builders ({@link topics}), the parser ({@link parseTopic}), subscription filters
 * ({@link topicFilter}) and the broker's ACL (`@fedmq/broker` acl.ts, from {@link TOPIC_TABLE}'s
 * publisher and readers) are all generated from it, and a test checks docs/protocol.md's topic
 * table against it.
 *
 * Every topic is `{root}/{job}/{pattern}` with root `fedmq/v2`; `{nodeId}`, `{version}`, `{index}`
 * and `{round}` are levels filled in per message. The two `legacy*` rows are protocol v1's status
 * topics (root `fedmq/v1`): a v2 peer reads them only to tell a v1 peer, with
 * FEDMQ_UNSUPPORTED_VERSION, that it speaks another version (docs/protocol.md §1, "Versions").
 */
export const TOPIC_ROOT = 'fedmq/v2';
/** Root of protocol v1's topics, read only to detect v1 peers. */
export const LEGACY_TOPIC_ROOT = 'fedmq/v1';

/** Job ids, node ids and run ids: 1–64 characters of `A–Z a–z 0–9 _ . -` (no MQTT wildcards, no `/`). */
export const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Who takes part in a job (docs/security.md): publisher and readers of {@link TOPIC_TABLE}. */
export type TopicRole = 'coordinator' | 'node' | 'monitor';
/**
 * A reader of a topic: a role, or `self` for the one node named by the topic's `{nodeId}`
 * (a node reads its own task, and no other node's).
 */
export type TopicReader = TopicRole | 'self';
/** How a payload is encoded: JSON text, MessagePack, or a chunk of a chunked transfer (docs/protocol.md §10). */
export type PayloadFormat = 'json' | 'msgpack' | 'msgpack or chunks' | 'chunk';

/** One row of the topic table. */
export interface TopicSpec {
  /** `fedmq/v2`, or `fedmq/v1` for the legacy rows. */
  readonly root: string;
  /** Levels after `{root}/{job}/`, with `{param}` placeholders. */
  readonly pattern: string;
  /**
   * Who publishes. For topics with `{nodeId}` published by `node`, only the node of that id
   * (the broker's ACL enforces it).
   */
  readonly publisher: TopicRole;
  /** Who may subscribe (besides the publisher's own role where listed). */
  readonly readers: readonly TopicReader[];
  readonly payload: PayloadFormat;
  /** Name of the message type (docs/protocol.md §3). */
  readonly message: string;
  readonly qos: 0 | 1;
  readonly retain: boolean;
  /** Also the publisher's MQTT Last Will. */
  readonly will: boolean;
  /** One line for the docs. */
  readonly summary: string;
}

function spec<const S extends Omit<TopicSpec, 'root' | 'will'> & { root?: string; will?: boolean }>(s: S): S & TopicSpec {
  return { root: TOPIC_ROOT, will: false, ...s };
}

/**
 * The topics of protocol v2. Keys are the topic kinds of {@link ParsedTopic}.
 */
export const TOPIC_TABLE = {
  coordinatorStatus: spec({
    pattern: 'coordinator/status', publisher: 'coordinator', readers: ['node', 'monitor'], payload: 'json', message: 'CoordinatorStatus',
    qos: 1, retain: true, will: true, summary: 'The run: its id, mode, state (running, done, failed; offline as Last Will). Changes rarely.',
  }),
  stage: spec({
    pattern: 'coordinator/stage', publisher: 'coordinator', readers: ['monitor'], payload: 'json', message: 'StageStatus',
    qos: 1, retain: true, summary: 'The stage the round engine is in (waiting, select, fit, aggregate, evaluate; with secure aggregation also advertise-keys, share-keys, unmask), its cohort and deadline.',
  }),
  model: spec({
    pattern: 'models/{version}', publisher: 'coordinator', readers: ['node'], payload: 'msgpack', message: 'GlobalModel',
    qos: 1, retain: true, summary: 'Global model of one version, fetched by the nodes a task names it to; cleared once no task needs it.',
  }),
  modelChunk: spec({
    pattern: 'models/{version}/chunks/{index}', publisher: 'coordinator', readers: ['node'], payload: 'chunk', message: 'Chunk',
    qos: 1, retain: true, summary: 'The same GlobalModel in chunks 0…count−1 when the job sets maxPayloadBytes.',
  }),
  modelMeta: spec({
    pattern: 'model/meta', publisher: 'coordinator', readers: ['node', 'monitor'], payload: 'json', message: 'ModelMeta',
    qos: 1, retain: true, summary: 'What the latest global model is (version, size, sha256), without the weights.',
  }),
  nodeTask: spec({
    pattern: 'nodes/{nodeId}/task', publisher: 'coordinator', readers: ['self'], payload: 'json', message: 'NodeTask',
    qos: 1, retain: false, summary: 'A stage instruction to one node (fit, evaluate; with secure aggregation also advertise-keys, share-keys, unmask). Unselected nodes receive nothing.',
  }),
  nodeStatus: spec({
    pattern: 'nodes/{nodeId}/status', publisher: 'node', readers: ['coordinator', 'monitor', 'self'], payload: 'json', message: 'NodeStatus',
    qos: 1, retain: true, will: true, summary: 'The node: state, device, examples; offline as Last Will.',
  }),
  nodeUpdate: spec({
    pattern: 'nodes/{nodeId}/update', publisher: 'node', readers: ['coordinator', 'self'], payload: 'msgpack or chunks', message: 'Update',
    qos: 1, retain: false, summary: 'The answer to a fit task: the delta in the task\'s codec.',
  }),
  nodeSecAgg: spec({
    pattern: 'nodes/{nodeId}/secagg', publisher: 'node', readers: ['coordinator', 'self'], payload: 'msgpack', message: 'SecAggAnswer',
    qos: 1, retain: false, summary: 'The answer to a secure-aggregation stage task (advertise-keys, share-keys, unmask): public keys, sealed shares, or shares for unmasking.',
  }),
  nodeEvaluation: spec({
    pattern: 'nodes/{nodeId}/evaluation', publisher: 'node', readers: ['coordinator', 'self'], payload: 'json', message: 'EvaluateResult',
    qos: 1, retain: false, summary: 'The answer to an evaluate task: loss and accuracy of the global and the local model on held-out data.',
  }),
  roundMetrics: spec({
    pattern: 'rounds/{round}/metrics', publisher: 'coordinator', readers: ['node', 'monitor'], payload: 'json', message: 'RoundMetrics',
    qos: 1, retain: true, summary: 'One round\'s metrics (one server step\'s in async mode).',
  }),
  latestMetrics: spec({
    pattern: 'metrics', publisher: 'coordinator', readers: ['node', 'monitor'], payload: 'json', message: 'RoundMetrics',
    qos: 1, retain: true, summary: 'The latest round\'s metrics.',
  }),
  legacyCoordinatorStatus: spec({
    root: LEGACY_TOPIC_ROOT, pattern: 'coordinator/status', publisher: 'coordinator', readers: ['node'], payload: 'json', message: 'CoordinatorStatus',
    qos: 1, retain: true, summary: 'Protocol v1\'s coordinator status: a v2 coordinator publishes its own (v: 2) here so v1 nodes refuse it with FEDMQ_UNSUPPORTED_VERSION.',
  }),
  legacyNodeStatus: spec({
    pattern: 'nodes/{nodeId}/status', root: LEGACY_TOPIC_ROOT, publisher: 'node', readers: ['coordinator'], payload: 'json', message: 'NodeStatus',
    qos: 1, retain: true, summary: 'Protocol v1\'s node status: a v2 node that sees a v1 coordinator publishes its own (v: 2) here.',
  }),
} as const satisfies Record<string, TopicSpec>;

/** Kinds of fedmq topic: the keys of {@link TOPIC_TABLE}. */
export type TopicKind = keyof typeof TOPIC_TABLE;
/** Every topic kind, in table order. */
export const TOPIC_KINDS = Object.keys(TOPIC_TABLE) as TopicKind[];

/** The `{param}` names of a pattern, in order. */
type ParamNames<P extends string> = P extends `${string}{${infer K}}${infer Rest}` ? [K, ...ParamNames<Rest>] : [];
/** Type of a topic parameter: `nodeId` is an id, the others are integers. */
type ParamValue<K> = K extends 'nodeId' ? string : number;
type ArgsOf<N extends readonly unknown[]> = N extends [infer H, ...infer R] ? [ParamValue<H>, ...ArgsOf<R>] : [];
type ParamArgs<P extends string> = ArgsOf<ParamNames<P>>;
type PatternOf<K extends TopicKind> = (typeof TOPIC_TABLE)[K]['pattern'];

/** A parsed fedmq topic: its kind, job and parameters. */
export type ParsedTopic = {
  [K in TopicKind]: { kind: K; job: string } & { [P in ParamNames<PatternOf<K>>[number]]: ParamValue<P> };
}[TopicKind];

/** Parameters of a topic kind, all optional: what {@link topicFilter} fills in (the rest becomes `+`). */
export type TopicParams<K extends TopicKind> = Partial<{ [P in ParamNames<PatternOf<K>>[number]]: ParamValue<P> | '+' }>;

/** Minimum of each integer parameter (round and version count from 1, chunk index from 0). */
const INT_MIN: Record<string, number> = { version: 1, round: 1, index: 0 };
const INT_LEVEL = /^(0|[1-9][0-9]{0,8})$/;

/** Throws FEDMQ_BAD_TOPIC unless `id` is a valid job or node id. */
export function assertId(kind: 'job' | 'nodeId', id: string): void {
  if (!ID_PATTERN.test(id)) {
    throw new FedmqError(ErrorCodes.BAD_TOPIC, `invalid ${kind} ${JSON.stringify(id)}: expected 1-64 of [A-Za-z0-9_.-]`, { [kind]: id });
  }
}

/** A parameter value as a topic level. @throws FedmqError FEDMQ_BAD_TOPIC when invalid. */
function level(name: string, value: unknown): string {
  if (name === 'nodeId') {
    assertId('nodeId', String(value));
    return String(value);
  }
  if (!(Number.isInteger(value) && (value as number) >= (INT_MIN[name] ?? 0) && (value as number) <= 999_999_999)) {
    throw new FedmqError(ErrorCodes.BAD_TOPIC, `invalid ${name} ${JSON.stringify(value)} in a topic`, { [name]: value });
  }
  return String(value);
}

/** Pattern levels of each kind, precomputed for the parser. */
const SEGMENTS = TOPIC_KINDS.map((kind) => ({ kind, root: TOPIC_TABLE[kind].root, levels: TOPIC_TABLE[kind].pattern.split('/') }));

/** Builds the topic of `kind` for `job` and the pattern's parameters in order. */
function build(kind: TopicKind, job: string, args: readonly unknown[]): string {
  assertId('job', job);
  const s = TOPIC_TABLE[kind];
  let i = 0;
  const rest = s.pattern.replace(/\{(\w+)\}/g, (_, name: string) => level(name, args[i++]));
  return `${s.root}/${job}/${rest}`;
}

/**
 * Builders for every topic of the table, e.g. `topics.nodeTask('mnist', 'pi-1')` →
 * `fedmq/v2/mnist/nodes/pi-1/task`, `topics.model('mnist', 3)` → `fedmq/v2/mnist/models/3`.
 * Arguments are the job then the pattern's parameters in order.
 * @throws FedmqError FEDMQ_BAD_TOPIC on an invalid id or parameter.
 */
export const topics = Object.fromEntries(
  TOPIC_KINDS.map((kind) => [kind, (job: string, ...args: unknown[]) => build(kind, job, args)]),
) as unknown as { [K in TopicKind]: (job: string, ...args: ParamArgs<PatternOf<K>>) => string };

/**
 * A subscription filter (MQTT 3.1.1 §4.7) for one kind of topic: `job` and any parameter may be
 * `'+'` or left out (then `+`), e.g. `topicFilter('nodeUpdate', 'j')` → `fedmq/v2/j/nodes/+/update`.
 * Kind `all` is every v2 topic of the job (`fedmq/v2/{job}/#`).
 * @throws FedmqError FEDMQ_BAD_TOPIC when `job` or a parameter is neither `'+'` nor valid.
 */
export function topicFilter<K extends TopicKind>(kind: K | 'all', job: string, params: TopicParams<K> = {}): string {
  if (job !== '+') assertId('job', job);
  if (kind === 'all') return `${TOPIC_ROOT}/${job}/#`;
  const s = TOPIC_TABLE[kind as TopicKind];
  const p = params as Record<string, unknown>;
  const rest = s.pattern.replace(/\{(\w+)\}/g, (_, name: string) => (p[name] === undefined || p[name] === '+' ? '+' : level(name, p[name])));
  return `${s.root}/${job}/${rest}`;
}

/**
 * Parses a topic into its kind, job and parameters.
 * @throws FedmqError FEDMQ_BAD_TOPIC when the topic is not in the table or a level is invalid.
 */
export function parseTopic(topic: string): ParsedTopic {
  const parts = topic.split('/');
  const bad = () => new FedmqError(ErrorCodes.BAD_TOPIC, `not a fedmq topic: ${JSON.stringify(topic.slice(0, 200))}`, { topic: topic.slice(0, 200) });
  if (parts.length < 4 || parts[0] !== 'fedmq') throw bad();
  const root = `${parts[0]}/${parts[1]}`;
  const job = parts[2];
  if (!ID_PATTERN.test(job)) throw bad();
  const rest = parts.slice(3);
  next: for (const s of SEGMENTS) {
    if (s.root !== root || s.levels.length !== rest.length) continue;
    const out: Record<string, string | number> = { kind: s.kind, job };
    for (let i = 0; i < rest.length; i++) {
      const pat = s.levels[i];
      const got = rest[i];
      if (!pat.startsWith('{')) {
        if (pat !== got) continue next;
        continue;
      }
      const name = pat.slice(1, -1);
      if (name === 'nodeId') {
        if (!ID_PATTERN.test(got)) continue next;
        out[name] = got;
      } else {
        if (!INT_LEVEL.test(got) || Number(got) < (INT_MIN[name] ?? 0)) continue next;
        out[name] = Number(got);
      }
    }
    return out as ParsedTopic;
  }
  throw bad();
}
