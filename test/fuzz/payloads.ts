/**
 * Random and mutated payloads for the topics a protocol v2 coordinator reads (docs/protocol.md §2):
 * `fedmq/v2/{job}/nodes/{nodeId}/update` (MessagePack Update), `.../evaluation` (JSON
 * EvaluateResult), `.../status` (JSON NodeStatus), and protocol v1's `fedmq/v1/{job}/nodes/{nodeId}/status`
 * (which a v2 coordinator reads only to tell v1 nodes apart).
 *
 * Payloads start from valid-looking messages (the run id, the real nodes' tasks as seen on their
 * task topics, the global model's tensor names and shapes, real updates and evaluation results
 * captured on the wire) and break them: truncation, bit flips, byte insertion and deletion,
 * fields of the wrong type, missing and extra fields, huge declared msgpack lengths, deep nesting,
 * tensors of the wrong shape, codec, length or with NaN/Infinity, wrong job/run/node ids, rounds
 * and model versions; task ids that are unknown, closed, already answered, of the other stage or
 * of another node's task; evaluation results out of range or naming a fit task (no evaluate stage
 * open); protocol v1 messages (`v: 1`, no task id); valid-looking answers for other nodes; JSON
 * garbage; empty and oversized payloads.
 *
 * What this fuzzer never sends: a payload the coordinator would accept. Without authentication
 * the broker is open, so a client that publishes a fully valid update for a real node's open task
 * before that node does gets it aggregated in the node's place, and a valid `offline` status (or
 * an empty retained one) for a real node drops or removes it. That is spoofing, an authentication
 * and ACL problem (docs/security.md: per-node credentials, and ACLs that let a node publish only
 * on its own topics), not a parsing one. So every generated payload passes through a guard
 * ({@link updateCouldBeAccepted}, {@link evaluationCouldBeAccepted}, {@link statusCouldBeAccepted})
 * that predicts, with the coordinator's own decoders and checks, whether it could be accepted for
 * its topic; such payloads are withheld and counted in {@link PayloadFuzzer.withheld}.
 *
 * Protocol v2 identifies an answer by (runId, nodeId, taskId), and the fuzzers do know live task
 * ids: the test's watcher reads the real nodes' task topics (an open broker lets it) and the
 * coordinator's `stage` and `accepted` events. The answer guards use only facts that, once
 * learnt, stay true for the rest of the run ({@link taskMayBeOpen}): a task id belongs to one
 * node and one stage with one round and model version; a fit task the coordinator accepted an
 * update for is answered; a fit task is closed once its round's aggregate stage began, an evaluate
 * task once a later round began. An answer with a decodable, valid-looking body (for an update:
 * tensors that pass the coordinator's checks) is sent only when one of those facts rules its task
 * out: the task is another node's (FEDMQ_NOT_SELECTED), of the other stage, of another round or
 * model version, closed (FEDMQ_STALE_UPDATE), answered (FEDMQ_DUPLICATE_UPDATE), the run id is not
 * the run's, the node is not a real one (only real nodes are ever registered, since valid
 * statuses are withheld too), or the task id is at least {@link FAR_TASK_ID} (a run issues a few
 * dozen tasks; the test asserts it stays below). An unknown task id below it may be a live task
 * the watcher has not seen yet, or a future one: such answers are withheld. So a live
 * (runId, taskId, nodeId) triple is never reused with an acceptable body, and a verbatim replay of
 * a real update goes out only once the coordinator accepted it.
 */
import {
  EvaluateResultSchema, LEGACY_TOPIC_ROOT, NodeStatusSchema, PROTOCOL_VERSION, STAGE_NAMES, TOPIC_ROOT, ID_PATTERN, decodeJson, decodeUpdate,
  packMessage, topics, type NamedTensor, type StageName, type NodeStage,
} from '@fedmq/protocol';
import { checkUpdateTensors } from '@fedmq/coordinator';
import { mutateBytes, type Rand } from './rand.ts';

/** A task the watcher saw on a real node's task topic. */
export interface KnownTask {
  taskId: number;
  nodeId: string;
  stage: NodeStage;
  round: number;
  modelVersion: number;
}

/** A real answer seen on the wire, verbatim. */
export interface Captured {
  leaf: 'update' | 'evaluation';
  nodeId: string;
  taskId: number;
  payload: Buffer;
}

/** What the fuzzer knows about the job under test (the test keeps it up to date). */
export interface FuzzTarget {
  job: string;
  /** The coordinator's run id. */
  runId: string;
  /** Ids of the real nodes. */
  realNodeIds: readonly string[];
  /** Names and shapes of the global model's tensors, in order. */
  tensors: readonly { name: string; shape: number[] }[];
  /** Tasks seen on the real nodes' task topics, by task id. */
  tasks: Map<number, KnownTask>;
  /** Fit tasks the coordinator accepted an update for (its `accepted` events). */
  answered: Set<number>;
  /** The round engine's position: the latest `stage` event of the coordinator. */
  engine: { round: number; stage: StageName };
  /** Real updates and evaluation results seen on the wire, most recent last. */
  captured: Captured[];
}

/** Where a payload goes: the three v2 node topics the coordinator reads, or v1's node status topic. */
export type Leaf = 'update' | 'evaluation' | 'status' | 'legacy';

/**
 * What the coordinator does with a payload, as the fuzzer predicts it:
 * - `answer`: refused with a code and counted in the failures of the round in progress (an
 *   update or evaluation result on a valid node id);
 * - `status`: refused with a code, logged, not counted in a round (v2 or v1 status topic);
 * - `bad-topic`: the topic's node id is not a fedmq id: FEDMQ_BAD_TOPIC, logged, not counted;
 * - `ignored`: nothing, by design (an empty status on a valid id clears a retained status; a
 *   valid v2 NodeStatus on the v1 status topic is a v2 node's beacon).
 */
export type Expectation = 'answer' | 'status' | 'bad-topic' | 'ignored';

/** One fuzz payload and where it goes. */
export interface Fuzzed {
  /** Generator that made it, e.g. `update/wrong-type`. */
  kind: string;
  topic: string;
  leaf: Leaf;
  nodeId: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
  expect: Expectation;
}

/** Task ids from here on cannot be live: a run issues a few dozen tasks (the test asserts it). */
export const FAR_TASK_ID = 1_000_000;

const UPDATE_FIELDS = ['v', 'job', 'runId', 'nodeId', 'taskId', 'round', 'modelVersion', 'numExamples', 'codec', 'kind', 'metrics', 'tensors', 'ts'];
const EVAL_FIELDS = ['v', 'job', 'runId', 'nodeId', 'taskId', 'round', 'modelVersion', 'numExamples', 'global', 'local', 'evalMs', 'bytesDown', 'ts'];
const STATUS_FIELDS = ['v', 'job', 'nodeId', 'state', 'ts', 'numExamples', 'model', 'device', 'lastRound', 'taskId'];
const TENSOR_FIELDS = ['name', 'shape', 'codec', 'data'];
/**
 * Node ids that are valid MQTT topic levels but not fedmq ids. Not here: `/`, `+`, `#`, U+0000 and
 * the empty level (`nodes//update`), for which the broker drops the publishing client; raw
 * frames (frames.ts) send those.
 */
const INVALID_IDS = ['a b', 'ñode', 'x'.repeat(65), 'n1:x', '$node', 'tab\there', 'emoji🙂', '"quoted"', 'node\u00a0', '%2F'];
const TS = 1_764_000_000_000;
const FIT_INDEX = STAGE_NAMES.indexOf('fit');

// ---------------------------------------------------------------- guards

/** True once `k` is closed for good: a fit task once its round's later stages began, an evaluate task once a later round began. */
export function taskClosed(t: Pick<FuzzTarget, 'engine'>, k: KnownTask): boolean {
  const e = t.engine;
  if (e.round !== k.round) return e.round > k.round;
  return k.stage === 'fit' && STAGE_NAMES.indexOf(e.stage) > FIT_INDEX;
}

/**
 * False only when facts that stay true rule out that an answer of `stage` naming
 * (`taskId`, `round`, `modelVersion`) on `nodeId`'s topic meets an open, unanswered task that
 * takes it (see the file comment). True means: it might be accepted.
 */
export function taskMayBeOpen(
  t: Pick<FuzzTarget, 'realNodeIds' | 'tasks' | 'answered' | 'engine'>, nodeId: string, stage: 'fit' | 'evaluate', taskId: number, round: number, modelVersion: number,
): boolean {
  if (!t.realNodeIds.includes(nodeId)) return false; // never registered, so never given a task
  const k = t.tasks.get(taskId);
  if (!k) return taskId < FAR_TASK_ID; // not seen (yet): may be live, or come
  if (k.nodeId !== nodeId || k.stage !== stage || k.round !== round || k.modelVersion !== modelVersion) return false;
  if (taskClosed(t, k)) return false;
  return !(stage === 'fit' && t.answered.has(taskId));
}

/**
 * True when the coordinator could accept `payload` on `nodes/{topicNodeId}/update`: it decodes,
 * belongs to the job and run, names the topic's node and a task that may be open for it
 * ({@link taskMayBeOpen}), and passes the tensor checks.
 */
export function updateCouldBeAccepted(payload: Buffer, topicNodeId: string, t: FuzzTarget): boolean {
  let u;
  try {
    u = decodeUpdate(payload);
  } catch {
    return false;
  }
  if (u.job !== t.job || u.nodeId !== topicNodeId || u.runId !== t.runId) return false;
  if (!taskMayBeOpen(t, topicNodeId, 'fit', u.taskId, u.round, u.modelVersion)) return false;
  const global: NamedTensor[] = t.tensors.map((x) => ({ name: x.name, shape: x.shape, data: new Float32Array(0) }));
  try {
    checkUpdateTensors(u, global, 'float32');
    return true;
  } catch {
    return false;
  }
}

/**
 * True when the coordinator could accept `payload` on `nodes/{topicNodeId}/evaluation`: a valid
 * EvaluateResult of the job and run naming the topic's node and a task that may be open for it
 * (an evaluation result has no further checks: its numbers are taken as they are).
 */
export function evaluationCouldBeAccepted(payload: Buffer, topicNodeId: string, t: FuzzTarget): boolean {
  let e;
  try {
    e = decodeJson(EvaluateResultSchema, payload, 'evaluation result');
  } catch {
    return false;
  }
  if (e.job !== t.job || e.nodeId !== topicNodeId || e.runId !== t.runId) return false;
  return taskMayBeOpen(t, topicNodeId, 'evaluate', e.taskId, e.round, e.modelVersion);
}

/**
 * True when the coordinator would act on `payload` on `nodes/{topicNodeId}/status`: a valid
 * status of the job naming the topic's node (registered, or marked offline), or an empty payload
 * for a real node (the retained status cleared: the node is forgotten).
 */
export function statusCouldBeAccepted(payload: Buffer, topicNodeId: string, t: Pick<FuzzTarget, 'job' | 'realNodeIds'>): boolean {
  if (payload.length === 0) return t.realNodeIds.includes(topicNodeId);
  try {
    const s = decodeJson(NodeStatusSchema, payload, 'status');
    return s.nodeId === topicNodeId && s.job === t.job;
  } catch {
    return false;
  }
}

/**
 * True when the coordinator ignores `payload` on the v1 status topic of `topicNodeId` in `job`:
 * empty, or a valid v2 NodeStatus of that node and job (a v2 node that saw a v1 coordinator).
 * A v2 status of another node or job there is refused (FEDMQ_SCHEMA, FEDMQ_WRONG_JOB), as on the v2 topic.
 */
export function legacyStatusIgnored(payload: Buffer, topicNodeId: string, job: string): boolean {
  if (payload.length === 0) return true;
  try {
    const s = decodeJson(NodeStatusSchema, payload, 'status');
    return s.nodeId === topicNodeId && s.job === job;
  } catch {
    return false;
  }
}

/** What the coordinator does with `payload` on `leaf` of `nodeId` once the guards let it out ({@link Expectation}). */
export function expectationOf(leaf: Leaf, nodeId: string, payload: Buffer, job: string): Expectation {
  if (!ID_PATTERN.test(nodeId)) return 'bad-topic';
  if (leaf === 'update' || leaf === 'evaluation') return 'answer';
  if (leaf === 'status') return payload.length === 0 ? 'ignored' : 'status';
  return legacyStatusIgnored(payload, nodeId, job) ? 'ignored' : 'status';
}

// ---------------------------------------------------------------- random values

function randomScalar(r: Rand): unknown {
  return r.pick<() => unknown>([
    () => null, () => r.chance(0.5), () => r.range(-200, 200), () => r.pick([2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 2 ** 64]),
    () => r.pick([NaN, Infinity, -Infinity, -0, 1.5, 1e-320, 1e308]), () => r.str(r.size(40)), () => r.unicode(r.size(20)),
    () => new Uint8Array(r.bytes(r.size(64))),
  ])();
}

/** A random msgpack-able value (maps, arrays, bins, all number kinds, any Unicode). */
export function randomValue(r: Rand, depth = 0): unknown {
  if (depth > 4 || r.chance(0.4)) return randomScalar(r);
  if (r.chance(0.5)) return Array.from({ length: r.size(8) }, () => randomValue(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = r.size(10); i > 0; i--) o[r.chance(0.6) ? r.pick([...UPDATE_FIELDS, ...TENSOR_FIELDS]) : r.unicode(r.range(0, 8))] = randomValue(r, depth + 1);
  return o;
}

/** A random JSON-able value, keys mostly from `fields`. */
function randomJson(r: Rand, fields: readonly string[], depth = 0): unknown {
  if (depth > 4 || r.chance(0.4)) {
    return r.pick<() => unknown>([() => null, () => r.chance(0.5), () => r.range(-1e6, 1e6), () => r.next() * 1e20 - 1e10, () => r.str(r.size(40)), () => r.unicode(r.size(20))])();
  }
  if (r.chance(0.4)) return Array.from({ length: r.size(8) }, () => randomJson(r, fields, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = r.size(10); i > 0; i--) o[r.chance(0.6) ? r.pick(fields) : r.unicode(r.range(0, 8))] = randomJson(r, fields, depth + 1);
  return o;
}

/** A value of another type than `v` (for "wrong field type" payloads); `json`: JSON-able only. */
function otherType(r: Rand, v: unknown, json = false): unknown {
  for (let i = 0; i < 20; i++) {
    const x = json ? randomJson(r, EVAL_FIELDS, 3) : randomValue(r, 3);
    if (typeof x !== typeof v || Array.isArray(x) !== Array.isArray(v) || (x instanceof Uint8Array) !== (v instanceof Uint8Array) || (x === null) !== (v === null)) return x;
  }
  return v === null ? 0 : null;
}

/** Sets or deletes `path` (keys and indices) in a deep copy of `o`. */
function withPath(o: unknown, path: (string | number)[], value: unknown, remove = false): unknown {
  if (path.length === 0) return value;
  const [k, ...rest] = path;
  const copy = (Array.isArray(o) ? [...o] : { ...(o as object) }) as Record<string | number, unknown>;
  if (rest.length === 0 && remove) {
    if (Array.isArray(copy)) copy.splice(k as number, 1);
    else delete copy[k];
  } else copy[k] = withPath(copy[k], rest, value, remove);
  return copy;
}

function getPath(o: unknown, path: (string | number)[]): unknown {
  return path.reduce<unknown>((x, k) => (x as Record<string | number, unknown> | undefined)?.[k], o);
}

// ---------------------------------------------------------------- the fuzzer

type Gen = () => { payload: Buffer; nodeId?: string; retain?: boolean };

/** The task an answer names: its id, round and model version. */
interface TaskRef {
  taskId: number;
  round: number;
  modelVersion: number;
}

/** Share of payloads per leaf. */
export type LeafShares = Partial<Record<Leaf, number>>;
const DEFAULT_SHARES: Record<Leaf, number> = { update: 0.5, evaluation: 0.15, status: 0.25, legacy: 0.1 };

/**
 * Generates fuzz payloads for the node topics of one job. Deterministic for a given {@link Rand}
 * and the same {@link FuzzTarget} contents at each call.
 */
export class PayloadFuzzer {
  /** Payloads the guards withheld because the coordinator could have accepted them, by kind. */
  readonly withheld: Record<string, number> = {};
  private readonly fakeIds: string[];
  private readonly zeros: Uint8Array[];
  private readonly gens: Record<Leaf, Record<string, Gen>>;
  private n = 0;
  /** The topic node id of the payload being generated (generators read it). */
  private id = '';

  constructor(private readonly r: Rand, private readonly t: FuzzTarget) {
    this.fakeIds = Array.from({ length: 40 }, (_, i) => `ghost-${i}-${r.str(4)}`);
    this.zeros = t.tensors.map((x) => new Uint8Array(x.shape.reduce((a, b) => a * b, 1) * 4));
    this.gens = { update: this.makeUpdateGens(), evaluation: this.makeEvaluationGens(), status: this.makeStatusGens(), legacy: this.makeLegacyGens() };
  }

  /** Generator names, `update/…`, `evaluation/…`, `status/…` and `legacy/…`. */
  kinds(leaves: readonly Leaf[] = ['update', 'evaluation', 'status', 'legacy']): string[] {
    return leaves.flatMap((l) => Object.keys(this.gens[l]).map((k) => `${l}/${k}`));
  }

  /**
   * The next payload, on the leaves of `shares` in those proportions. The first calls go
   * through every generator of those leaves once, so that a short run covers them all.
   */
  next(shares: LeafShares = DEFAULT_SHARES): Fuzzed {
    const leaves = (Object.keys(shares) as Leaf[]).filter((l) => (shares[l] ?? 0) > 0);
    const kinds = this.kinds(leaves);
    const i = this.n++;
    let kind: string;
    if (i < kinds.length) kind = kinds[i];
    else {
      const leaf = this.r.weighted(leaves.map((l) => [l, shares[l]!] as const));
      kind = `${leaf}/${this.pickKind(leaf)}`;
    }
    const [leaf, name] = kind.split('/') as [Leaf, string];
    for (let attempt = 0; attempt < 50; attempt++) {
      this.id = this.pickNodeId();
      const g = this.gens[leaf][name]();
      const nodeId = g.nodeId ?? this.id;
      if (this.couldBeAccepted(leaf, g.payload, nodeId)) {
        this.withheld[kind] = (this.withheld[kind] ?? 0) + 1;
        continue;
      }
      return this.out(kind, leaf, nodeId, g.payload, g.retain);
    }
    const nodeId = this.pickNodeId();
    return this.out(`${leaf}/fallback-random`, leaf, nodeId, this.r.bytes(16), false);
  }

  private out(kind: string, leaf: Leaf, nodeId: string, payload: Buffer, retainWish?: boolean): Fuzzed {
    const retain = (retainWish ?? this.r.chance(0.02)) && this.fakeIds.includes(nodeId);
    // retained ones at QoS 1: Aedes 1.2 drops a retained QoS 0 message for live subscribers when
    // a later packet of the same client overtakes it while the retained copy is stored (its
    // per-client dedupe keeps the highest packet counter seen); see the fuzz test's header
    const qos = retain || this.r.chance(0.05) ? 1 : 0;
    return { kind, leaf, nodeId, topic: topicOf(this.t.job, nodeId, leaf), payload, qos, retain, expect: expectationOf(leaf, nodeId, payload, this.t.job) };
  }

  private couldBeAccepted(leaf: Leaf, payload: Buffer, nodeId: string): boolean {
    switch (leaf) {
      case 'update': return updateCouldBeAccepted(payload, nodeId, this.t);
      case 'evaluation': return evaluationCouldBeAccepted(payload, nodeId, this.t);
      case 'status': return statusCouldBeAccepted(payload, nodeId, this.t);
      case 'legacy': return false; // the coordinator never acts on a v1 status (it refuses or ignores it)
    }
  }

  private pickNodeId(): string {
    const r = this.r;
    return r.weighted<() => string>([
      [() => r.pick(this.t.realNodeIds), 35],
      [() => r.pick(this.fakeIds), 40],
      [() => r.str(r.range(1, 64)), 10],
      [() => r.pick(INVALID_IDS), 15],
    ])();
  }

  private pickKind(leaf: Leaf): string {
    const r = this.r;
    switch (leaf) {
      case 'update':
        return r.weighted<string>([
          ['random-bytes', 8], ['empty', 2], ['random-msgpack', 8], ['json', 3], ['wrong-type', 12], ['missing-field', 4], ['extra-field', 3],
          ['huge-length', 5], ['deep-nesting', 0.2], ['id-defect', 15], ['other-node', 4], ['tensor-defect', 12], ['tensor-defect-full', 0.3],
          ['task-other-node', 3], ['task-closed', 3], ['task-unknown', 3], ['task-other-stage', 2], ['task-wrong-round', 3], ['v1', 3],
          ['replay', 2], ['mutated', 18], ['mutated-real', 2], ['oversized', 0.02],
        ]);
      case 'evaluation':
        return r.weighted<string>([
          ['random-bytes', 6], ['empty', 2], ['random-json', 8], ['garbage-text', 4], ['truncated-json', 6], ['invalid-utf8', 3], ['msgpack', 3],
          ['wrong-type', 10], ['missing-field', 5], ['one-defect', 12], ['id-defect', 10], ['dead-task', 12], ['no-evaluate-stage', 4], ['other-node', 4],
          ['v1', 3], ['replay', 2], ['mutated', 12], ['numbers', 3], ['deep-json', 0.2],
        ]);
      case 'status':
        return r.weighted<string>([
          ['random-bytes', 8], ['empty', 3], ['random-json', 14], ['garbage-text', 6], ['truncated-json', 9], ['invalid-utf8', 5], ['deep-json', 0.2],
          ['huge-string', 0.3], ['one-defect', 24], ['other-node', 4], ['wrong-job', 2], ['v1', 3], ['mutated', 20], ['numbers', 3], ['proto', 2],
        ]);
      case 'legacy':
        return r.weighted<string>([
          ['v1', 30], ['v1-mutated', 10], ['random-bytes', 5], ['random-json', 5], ['garbage-text', 3], ['truncated-json', 5], ['one-defect', 10],
          ['empty', 3], ['v2-beacon', 5],
        ]);
    }
  }

  // -------------------------------------------------------------- tasks

  /** The latest known task of `nodeId` of `stage`. */
  private latestTask(nodeId: string, stage: 'fit' | 'evaluate'): KnownTask | undefined {
    let best: KnownTask | undefined;
    for (const k of this.t.tasks.values()) if (k.nodeId === nodeId && k.stage === stage && (!best || k.taskId > best.taskId)) best = k;
    return best;
  }

  /** Any known task matching `pred`, at random. */
  private someTask(pred: (k: KnownTask) => boolean): KnownTask | undefined {
    const all = [...this.t.tasks.values()].filter(pred);
    return all.length > 0 ? this.r.pick(all) : undefined;
  }

  /** A task id no run reaches, with the engine's round and the latest model version. */
  private farTask(): TaskRef {
    const r = this.r;
    return { taskId: r.pick([FAR_TASK_ID, FAR_TASK_ID + r.int(1e6), 2 ** 31 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]), round: this.t.engine.round, modelVersion: this.latestVersion() };
  }

  private latestVersion(): number {
    let v = 1;
    for (const k of this.t.tasks.values()) v = Math.max(v, k.modelVersion);
    return v;
  }

  /**
   * The task an answer of `stage` on the topic node names, mostly the node's own latest task of
   * that stage (live or not: the other defects decide then), else another known task or a far one.
   */
  private ref(stage: 'fit' | 'evaluate'): TaskRef {
    const r = this.r;
    const own = this.t.realNodeIds.includes(this.id) ? this.latestTask(this.id, stage) : undefined;
    const k = own && r.chance(0.8) ? own : r.chance(0.8) ? this.someTask(() => true) : undefined;
    return k ? { taskId: k.taskId, round: k.round, modelVersion: k.modelVersion } : this.farTask();
  }

  /** A task that is provably not open for the topic node (see {@link taskMayBeOpen}), of the kind asked for when one is known. */
  private deadTask(kind: 'other-node' | 'closed' | 'other-stage' | 'unknown', stage: 'fit' | 'evaluate'): TaskRef {
    const id = this.id;
    let k: KnownTask | undefined;
    if (kind === 'other-node') k = this.someTask((x) => x.nodeId !== id);
    else if (kind === 'closed') k = this.someTask((x) => x.nodeId === id && x.stage === stage && (taskClosed(this.t, x) || (stage === 'fit' && this.t.answered.has(x.taskId))));
    else if (kind === 'other-stage') k = this.someTask((x) => x.nodeId === id && x.stage !== stage);
    return k ? { taskId: k.taskId, round: k.round, modelVersion: k.modelVersion } : this.farTask();
  }

  // -------------------------------------------------------------- updates

  /**
   * A valid-looking update object for the topic's node naming `ref` (default {@link ref}), with
   * tensors that are right in names only (or fully right with `full`).
   */
  private update(opts: { full?: boolean; nodeId?: string; ref?: TaskRef } = {}): Record<string, unknown> {
    const r = this.r;
    const ref = opts.ref ?? this.ref('fit');
    const tensors = this.t.tensors.map((x, i) => opts.full
      ? { name: x.name, shape: [...x.shape], codec: 'float32', data: this.zeros[i] }
      : { name: x.name, shape: [2, 3].slice(0, x.shape.length), codec: 'float32', data: new Uint8Array(x.shape.length === 1 ? 8 : 24) });
    return {
      v: PROTOCOL_VERSION, job: this.t.job, runId: this.t.runId, nodeId: opts.nodeId ?? (ID_PATTERN.test(this.id) ? this.id : 'n-x'), taskId: ref.taskId,
      round: ref.round, modelVersion: ref.modelVersion, numExamples: r.range(1, 5000), codec: 'float32', kind: 'delta',
      metrics: { loss: r.next() * 3, trainMs: r.int(10_000), bytesDown: r.int(1e6) }, tensors, ts: TS + this.n,
    };
  }

  private makeUpdateGens(): Record<string, Gen> {
    const r = this.r;
    const pack = (o: unknown) => packMessage(o as object);
    /** An update naming a task that cannot take it, fully valid otherwise in 1 of 8. */
    const deadTaskUpdate = (kind: 'other-node' | 'closed' | 'other-stage' | 'unknown') => ({ payload: pack(this.update({ full: r.chance(0.125), ref: this.deadTask(kind, 'fit') })) });
    return {
      'random-bytes': () => ({ payload: r.bytes(r.size(4096)) }),
      empty: () => ({ payload: Buffer.alloc(0) }),
      'random-msgpack': () => ({ payload: pack(randomValue(r)) }),
      json: () => ({ payload: Buffer.from(JSON.stringify(this.update(), (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v))) }),
      'wrong-type': () => {
        const u = this.update({ full: r.chance(0.02) });
        const paths: (string | number)[][] = [
          ...UPDATE_FIELDS.map((f) => [f]), ['metrics', 'loss'], ['metrics', 'trainMs'], ['metrics', 'bytesDown'],
          ...TENSOR_FIELDS.map((f) => ['tensors', r.int(this.t.tensors.length), f]), ['tensors', 0], ['tensors', 0, 'shape', 0],
        ];
        const p = r.pick(paths);
        return { payload: pack(withPath(u, p, otherType(r, getPath(u, p)))) };
      },
      'missing-field': () => {
        const p = r.chance(0.7) ? [r.pick(UPDATE_FIELDS)] : ['tensors', r.int(this.t.tensors.length), r.pick(TENSOR_FIELDS)];
        return { payload: pack(withPath(this.update(), p, undefined, true)) };
      },
      'extra-field': () => {
        const p = r.chance(0.5) ? [r.unicode(r.range(1, 8))] : ['tensors', r.int(this.t.tensors.length), r.pick(['scale', 'indices', 'dtype', 'k', r.str(5)])];
        return { payload: pack(withPath(this.update(), p, randomValue(r, 3))) };
      },
      'huge-length': () => {
        // a fixmap whose last value declares a length far beyond the payload (str32, bin32, array32, map32, ext32)
        const u = this.update();
        delete u.tensors;
        const head = pack(u);
        const huge = r.pick([0xffffffff, 0x7fffffff, 0x10000000, 2 ** 24]);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(huge >>> 0);
        const kind = r.pick([0xdb, 0xc6, 0xdd, 0xdf, 0xc9]);
        const tail = Buffer.concat([Buffer.from([kind]), len, r.bytes(r.size(64))]);
        const first = Buffer.from([head[0] + 1]); // one more entry: `tensors: <huge>`
        return { payload: Buffer.concat([first, head.subarray(1), packMessage({ tensors: 0 } as object).subarray(1, -1), tail]) };
      },
      'deep-nesting': () => {
        // ~5 ms of stack overflow per decode past a few thousand levels (100× other garbage): rare
        const depth = r.range(1000, 20_000);
        const open = r.pick([[0x91], [0x81, 0xa1, 0x61]]);
        return { payload: Buffer.concat([Buffer.from(Array.from({ length: depth }, () => open).flat()), Buffer.from([0xc0])]) };
      },
      'id-defect': () => {
        const u = this.update();
        const [p, v] = r.pick<[string[], unknown]>([
          [['v'], r.pick([0, 1, 3, 255, '2', -1])],
          [['job'], r.pick([`${this.t.job}-other`, 'other', 'bad job', ''])],
          [['runId'], r.pick([`${this.t.runId}-old`, 'run-0', '', 'x'.repeat(65)])],
          [['taskId'], r.pick([0, -1, 1.5, '1', null, 2 ** 53 + 2, Infinity])],
          [['round'], r.pick([0, -1, (u.round as number) - 1, (u.round as number) + 1, (u.round as number) + 1000, 2 ** 31, 2 ** 53 + 2, 1.5])],
          [['modelVersion'], r.pick([0, (u.modelVersion as number) - 1, (u.modelVersion as number) + 1, 2 ** 40, 0.5])],
          [['numExamples'], r.pick([0, -5, 1.5, 2 ** 60, NaN])],
          [['codec'], r.pick(['int8', 'float16', 'topk', 'topk-int8', 'gzip', '', 'x'.repeat(40)])],
          [['kind'], r.pick(['weights', 'Delta', ''])],
          [['metrics', 'loss'], r.pick([NaN, Infinity, -Infinity])],
          [['metrics', 'trainMs'], r.pick([-1, NaN, Infinity])],
          [['metrics', 'bytesDown'], r.pick([-1, 1.5, NaN])],
          [['ts'], r.pick([-1, 1.5, NaN, 2 ** 64])],
        ]);
        return { payload: pack(withPath(u, p, v)) };
      },
      'other-node': () => {
        // a valid-looking update naming another node (real or not) than its topic
        const others = [...this.t.realNodeIds, ...this.fakeIds.slice(0, 3)].filter((x) => x !== this.id);
        return { payload: pack(this.update({ nodeId: r.pick(others), full: r.chance(0.01) })) };
      },
      'tensor-defect': () => {
        const u = this.update();
        const g = this.t.tensors[0];
        const defects: (() => unknown)[] = [
          () => ({ name: g.name, shape: g.shape.map((d, i) => (i === 0 ? d - 1 : d)), codec: 'float32', data: new Uint8Array(8) }),
          () => ({ name: `${g.name}x`, shape: g.shape, codec: 'float32', data: new Uint8Array(8) }),
          () => ({ name: g.name, shape: g.shape, codec: r.pick(['float16', 'int8', 'topk', '', 'FLOAT32']), data: new Uint8Array(8) }),
          () => ({ name: g.name, shape: g.shape, codec: 'float32', data: new Uint8Array(r.pick([0, 4, 8, 1000])) }),
          () => ({ name: g.name, shape: g.shape, codec: 'float32', data: 'AAAA' }),
          () => ({ name: g.name, shape: g.shape, codec: 'float32', data: new Uint8Array(8), scale: new Uint8Array(4) }),
          () => ({ name: g.name, shape: [1, 1, 1, 1, 1, 1, 1, 1, 1], codec: 'float32', data: new Uint8Array(4) }),
          () => ({ name: g.name, shape: [2 ** 32, 2 ** 32], codec: 'float32', data: new Uint8Array(4) }),
          () => ({ name: g.name, shape: [-1, 4], codec: 'float32', data: new Uint8Array(4) }),
          () => ({ name: g.name, shape: [1.5, 2], codec: 'float32', data: new Uint8Array(4) }),
          () => ({ name: '', shape: [1], codec: 'float32', data: new Uint8Array(4) }),
          () => ({ name: 'x'.repeat(300), shape: [1], codec: 'float32', data: new Uint8Array(4) }),
          () => [1, 2, 3],
          () => null,
        ];
        const tensors = (u.tensors as unknown[]).slice();
        if (r.chance(0.15)) return { payload: pack({ ...u, tensors: r.pick([tensors.slice(1), [...tensors, tensors[0]], [], {}, 'tensors']) }) };
        tensors[0] = r.pick(defects)();
        return { payload: pack({ ...u, tensors }) };
      },
      'tensor-defect-full': () => {
        // every tensor of the right size, naming the node's own task (live or not); one breaks a per-value or per-tensor check
        const u = this.update({ full: true });
        const tensors = (u.tensors as Record<string, unknown>[]).map((t) => ({ ...t }));
        const i = r.int(tensors.length);
        const kind = r.pick(['nan', 'short', 'codec', 'name']);
        if (kind === 'nan') {
          const data = new Uint8Array(tensors[i].data as Uint8Array);
          new DataView(data.buffer).setFloat32(4 * r.int(data.length / 4), r.pick([NaN, Infinity, -Infinity]), true);
          tensors[i].data = data;
        } else if (kind === 'short') tensors[i].data = (tensors[i].data as Uint8Array).subarray(0, (tensors[i].data as Uint8Array).length - 4);
        else if (kind === 'codec') tensors[i].codec = 'float16';
        else tensors[i].name = `${String(tensors[i].name)}_`;
        return { payload: pack({ ...u, tensors }) };
      },
      // v2 task ids: a task of another node (FEDMQ_NOT_SELECTED while open), closed or answered, unknown, of the evaluate stage
      'task-other-node': () => deadTaskUpdate('other-node'),
      'task-closed': () => deadTaskUpdate('closed'),
      'task-unknown': () => deadTaskUpdate('unknown'),
      'task-other-stage': () => deadTaskUpdate('other-stage'),
      'task-wrong-round': () => {
        // the node's own task (live or not) with another round or model version
        const ref = this.ref('fit');
        const wrong = r.chance(0.5) ? { ...ref, round: ref.round + r.pick([-1, 1, 2]) } : { ...ref, modelVersion: ref.modelVersion + r.pick([-1, 1, 2]) };
        return { payload: pack(this.update({ full: r.chance(0.125), ref: wrong.round >= 1 && wrong.modelVersion >= 1 ? wrong : { ...ref, round: ref.round + 1 } })) };
      },
      v1: () => {
        // a protocol v1 update: `v: 1`, no task id (FEDMQ_UNSUPPORTED_VERSION, whatever the rest)
        const u = withPath(this.update({ full: r.chance(0.05) }), ['taskId'], undefined, true) as Record<string, unknown>;
        return { payload: pack({ ...u, v: 1 }) };
      },
      replay: () => {
        // a real update once the coordinator accepted it (or its stage closed): to its own node's topic
        // (a duplicate or stale update), or to another node's (node id mismatch)
        const c = this.t.captured.filter((x) => x.leaf === 'update' && !taskMayBeOpen(this.t, x.nodeId, 'fit', x.taskId, this.t.tasks.get(x.taskId)?.round ?? 0, this.t.tasks.get(x.taskId)?.modelVersion ?? 0));
        if (c.length === 0) return { payload: pack(this.update({ ref: this.deadTask('closed', 'fit') })) };
        const got = r.pick(c.slice(-6));
        const nodeId = r.chance(0.6) ? got.nodeId : r.pick([...this.t.realNodeIds, ...this.fakeIds.slice(0, 2)]);
        return { payload: got.payload, nodeId };
      },
      mutated: () => {
        const base = r.chance(0.5) ? this.update() : (withPath(this.update(), ['tensors', 0], { name: this.t.tensors[0].name, shape: this.t.tensors[0].shape, codec: 'float32', data: new Uint8Array(16) }) as object);
        return { payload: mutateBytes(r, pack(base), 6).bytes };
      },
      'mutated-real': () => {
        const c = this.t.captured.filter((x) => x.leaf === 'update');
        if (c.length === 0) return { payload: mutateBytes(r, pack(this.update()), 4).bytes };
        const got = r.pick(c.slice(-6));
        // most positions in the header: a flipped byte in the weights mostly leaves a valid update (withheld while its task is open)
        return { payload: mutateBytes(r, got.payload, 4, 512).bytes, nodeId: r.chance(0.8) ? got.nodeId : undefined };
      },
      oversized: () => {
        const mb = r.range(2, 8);
        if (r.chance(0.5)) return { payload: r.bytes(mb * 2 ** 20) };
        const u = this.update();
        return { payload: pack({ ...u, tensors: [{ name: this.t.tensors[0].name, shape: [mb * 2 ** 18], codec: 'float32', data: new Uint8Array(mb * 2 ** 20) }] }) };
      },
    };
  }

  // -------------------------------------------------------------- evaluation results

  /** A valid-looking evaluation result for the topic's node naming `ref` (default {@link ref}). */
  private evaluation(opts: { nodeId?: string; ref?: TaskRef } = {}): Record<string, unknown> {
    const r = this.r;
    const ref = opts.ref ?? this.ref('evaluate');
    const score = () => ({ loss: r.next() * 3, accuracy: r.next() });
    return {
      v: PROTOCOL_VERSION, job: this.t.job, runId: this.t.runId, nodeId: opts.nodeId ?? (ID_PATTERN.test(this.id) ? this.id : 'n-x'), taskId: ref.taskId,
      round: ref.round, modelVersion: ref.modelVersion, numExamples: r.range(1, 500), global: score(), local: r.chance(0.7) ? score() : null,
      evalMs: r.next() * 1000, bytesDown: r.int(1e6), ts: TS + this.n,
    };
  }

  /** An evaluation result that fails validation: one value out of range or of the wrong kind. */
  private defectiveEvaluation(): Record<string, unknown> {
    const r = this.r;
    const e = this.evaluation();
    const [p, v] = r.pick<[(string | number)[], unknown]>([
      [['global', 'accuracy'], r.pick([1.5, -0.1, 2, null, '0.9'])], [['global', 'loss'], r.pick([null, 'low', [], {}])], [['local', 'accuracy'], r.pick([1.01, -1, 'x'])],
      [['local'], r.pick(['none', 0, [], { loss: 1 }])], [['global'], r.pick([null, 0.9, { accuracy: 0.5 }])], [['numExamples'], r.pick([0, -1, 1.5, '20'])],
      [['evalMs'], r.pick([-1, 'fast', null])], [['bytesDown'], r.pick([-1, 0.5, 'lots'])], [['ts'], r.pick([-1, 1.5, '1764000000000'])],
      [['taskId'], r.pick([0, -1, 1.5, '7', null])], [['round'], r.pick([0, -2, 1.5])], [['modelVersion'], r.pick([0, 0.5, 'v1'])],
      [['nodeId'], r.pick(['bad id', '', 42, 'x'.repeat(65)])], [['job'], r.pick(['bad job', 7])], [['runId'], r.pick(['', 'a b', 9])],
    ]);
    return r.chance(0.2) ? (withPath(e, [r.pick(EVAL_FIELDS.filter((f) => f !== 'bytesDown'))], undefined, true) as Record<string, unknown>) : (withPath(e, p, v) as Record<string, unknown>);
  }

  private makeEvaluationGens(): Record<string, Gen> {
    const r = this.r;
    const json = (o: unknown) => Buffer.from(JSON.stringify(o));
    const someEvaluation = () => (r.chance(0.5) ? this.defectiveEvaluation() : this.evaluation());
    return {
      'random-bytes': () => ({ payload: r.bytes(r.size(2048)) }),
      empty: () => ({ payload: Buffer.alloc(0) }),
      'random-json': () => ({ payload: json(randomJson(r, EVAL_FIELDS)) }),
      'garbage-text': () => ({ payload: Buffer.from(r.str(r.size(512), ' {}[]":,0123456789abcdefnulltrue\\\n\tu')) }),
      'truncated-json': () => {
        const b = json(someEvaluation());
        return { payload: b.subarray(0, r.int(b.length)) };
      },
      'invalid-utf8': () => {
        const b = json(this.defectiveEvaluation());
        const i = r.int(b.length);
        return { payload: Buffer.concat([b.subarray(0, i), Buffer.from(r.pick([[0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xef, 0xbb, 0xbf], [0x00]])), b.subarray(i)]) };
      },
      // MessagePack where JSON is expected (an update's encoding on the evaluation topic)
      msgpack: () => ({ payload: packMessage(someEvaluation() as object) }),
      'wrong-type': () => {
        const e = this.evaluation();
        const paths: (string | number)[][] = [...EVAL_FIELDS.map((f) => [f]), ['global', 'loss'], ['global', 'accuracy'], ['local', 'loss'], ['local', 'accuracy']];
        const p = r.pick(paths);
        return { payload: json(withPath(e, p, otherType(r, getPath(e, p), true))) };
      },
      'missing-field': () => ({ payload: json(withPath(this.evaluation(), r.chance(0.8) ? [r.pick(EVAL_FIELDS)] : [r.pick(['global', 'local']), r.pick(['loss', 'accuracy'])], undefined, true)) }),
      'one-defect': () => ({ payload: json(this.defectiveEvaluation()) }),
      'id-defect': () => {
        const e = this.evaluation();
        const [p, v] = r.pick<[string[], unknown]>([
          [['v'], r.pick([0, 1, 3, '2'])], [['job'], r.pick([`${this.t.job}-other`, 'other'])], [['runId'], r.pick([`${this.t.runId}-old`, 'run-0'])],
          [['round'], r.pick([(e.round as number) + 1, (e.round as number) + 1000, 2 ** 31])], [['modelVersion'], r.pick([(e.modelVersion as number) + 1, 2 ** 40])],
        ]);
        return { payload: json(withPath(e, p, v)) };
      },
      // a valid result naming a task that cannot take it: another node's, a closed one, a far one, a fit task
      'dead-task': () => ({ payload: json(this.evaluation({ ref: this.deadTask(r.pick(['other-node', 'closed', 'unknown', 'other-stage'] as const), 'evaluate') })) }),
      // a valid result naming the node's current fit task: no evaluate stage is open for it
      'no-evaluate-stage': () => ({ payload: json(this.evaluation({ ref: this.deadTask('other-stage', 'evaluate') })) }),
      'other-node': () => {
        const others = [...this.t.realNodeIds, ...this.fakeIds.slice(0, 3)].filter((x) => x !== this.id);
        return { payload: json(this.evaluation({ nodeId: r.pick(others) })) };
      },
      v1: () => ({ payload: json({ ...(withPath(this.evaluation(), ['taskId'], undefined, true) as object), v: 1 }) }),
      replay: () => {
        // a real result once its evaluate stage closed (stale), or on another node's topic (node id mismatch)
        const c = this.t.captured.filter((x) => x.leaf === 'evaluation');
        if (c.length === 0) return { payload: json(this.evaluation({ ref: this.deadTask('closed', 'evaluate') })) };
        const got = r.pick(c.slice(-6));
        return { payload: got.payload, nodeId: r.chance(0.5) ? got.nodeId : r.pick([...this.t.realNodeIds, ...this.fakeIds.slice(0, 2)]) };
      },
      mutated: () => ({ payload: mutateBytes(r, json(someEvaluation()), 6).bytes }),
      numbers: () => {
        const text = JSON.stringify(this.evaluation());
        const field = r.pick(['"taskId":', '"round":', '"modelVersion":', '"numExamples":', '"accuracy":', '"loss":', '"evalMs":', '"v":']);
        const num = r.pick(['1e400', '-1e400', '9007199254740993', '-0', '1e-400', '0x10', '01', '1.', '.5', 'NaN', 'Infinity']);
        return { payload: Buffer.from(text.replace(new RegExp(`${field}[^,}]*`), `${field}${num}`)) };
      },
      'deep-json': () => ({ payload: Buffer.from(r.pick(['[', '{"global":']).repeat(r.range(1000, 50_000))) }),
    };
  }

  // -------------------------------------------------------------- statuses

  /** A valid-looking status object for `nodeId` (default: the topic's node). */
  private status(nodeId?: string, v: number = PROTOCOL_VERSION): Record<string, unknown> {
    const r = this.r;
    return {
      v, job: this.t.job, nodeId: nodeId ?? (ID_PATTERN.test(this.id) ? this.id : 'n-x'), state: r.pick(['idle', 'training', 'evaluating', 'uploading', 'offline']),
      ts: TS + this.n, numExamples: r.range(1, 5000), model: 'mnist-2nn', taskId: r.chance(0.5) ? this.ref('fit').taskId : undefined,
      device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 4096, backend: 'wasm' }, lastRound: { round: r.range(0, 10), loss: r.next(), trainMs: r.int(5000) },
    };
  }

  /** A status that fails validation, or names another node: one defect. */
  private defectiveStatus(): Record<string, unknown> {
    const r = this.r;
    const s = this.status();
    const [p, v] = r.pick<[string[], unknown]>([
      [['v'], r.pick([0, 1, 3, '2', null])], [['nodeId'], r.pick(['bad id', '', 42, null, 'x'.repeat(65)])], [['job'], r.pick(['bad job', 7, ''])],
      [['state'], r.pick(['online', 'IDLE', '', 3, null])], [['ts'], r.pick([-1, 1.5, '1764000000000', null])], [['numExamples'], r.pick([-1, 0.5, 'many'])],
      [['model'], r.pick(['x'.repeat(200), 5])], [['device'], r.pick(['pi', [], { platform: 'x'.repeat(100), arch: 'a', cores: 1, memoryMb: 1, backend: 'cpu' }, { cores: -1 }])],
      [['lastRound'], r.pick([{ round: -1, loss: 0, trainMs: 0 }, { round: 1, loss: 'x', trainMs: 0 }, { round: 1 }, 'yesterday'])],
      [['taskId'], r.pick([0, -1, 1.5, '3', null])],
    ]);
    // removing a required field is a defect too
    return r.chance(0.2) ? (withPath(s, [r.pick(['v', 'job', 'nodeId', 'state', 'ts'])], undefined, true) as Record<string, unknown>) : (withPath(s, p, v) as Record<string, unknown>);
  }

  private makeStatusGens(): Record<string, Gen> {
    const r = this.r;
    const json = (o: unknown) => Buffer.from(JSON.stringify(o));
    const someStatus = () => (r.chance(0.5) ? this.defectiveStatus() : this.status());
    return {
      'random-bytes': () => ({ payload: r.bytes(r.size(2048)) }),
      // an empty payload clears a retained status: the coordinator forgets the node, so only for ids that are not real
      empty: () => ({ payload: Buffer.alloc(0), nodeId: this.t.realNodeIds.includes(this.id) ? r.pick(this.fakeIds) : undefined }),
      'random-json': () => ({ payload: json(randomJson(r, STATUS_FIELDS)) }),
      'garbage-text': () => ({ payload: Buffer.from(r.str(r.size(512), ' {}[]":,0123456789abcdefnulltrue\\\n\tu')) }),
      'truncated-json': () => {
        const b = json(someStatus());
        return { payload: b.subarray(0, r.int(b.length)) };
      },
      'invalid-utf8': () => {
        const b = json(this.defectiveStatus());
        const i = r.int(b.length);
        return { payload: Buffer.concat([b.subarray(0, i), Buffer.from(r.pick([[0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xef, 0xbb, 0xbf], [0x00]])), b.subarray(i)]) };
      },
      'deep-json': () => {
        // JSON.parse takes ~0.15 µs per byte of nesting (50× flat JSON): rare, and at most ~100 KB
        const d = r.range(1000, 50_000);
        const closed = r.chance(0.5);
        return { payload: Buffer.from(r.pick(['[', '{"a":']).repeat(d) + (closed ? '1' : '')) };
      },
      'huge-string': () => ({ payload: json({ ...this.defectiveStatus(), device: { platform: 'x'.repeat(r.range(10_000, 256_000)) } }) }),
      'one-defect': () => ({ payload: json(this.defectiveStatus()) }),
      'other-node': () => {
        // a valid status of another node (real or not) on this topic
        const others = [...this.t.realNodeIds, ...this.fakeIds.slice(0, 3)].filter((x) => x !== this.id);
        return { payload: json(this.status(r.pick(others))) };
      },
      // a valid status of another job on this job's topic (FEDMQ_WRONG_JOB)
      'wrong-job': () => ({ payload: json({ ...this.status(), job: r.pick([`${this.t.job}-other`, 'other', 'fuzzjob2']) }) }),
      // a protocol v1 node status on the v2 topic (FEDMQ_UNSUPPORTED_VERSION)
      v1: () => ({ payload: json(this.status(undefined, 1)) }),
      mutated: () => ({ payload: mutateBytes(r, json(someStatus()), 6).bytes }),
      numbers: () => {
        const text = JSON.stringify(this.status());
        const field = r.pick(['"ts":', '"numExamples":', '"cores":', '"round":', '"v":']);
        const num = r.pick(['1e400', '-1e400', '9007199254740993', '-0', '1e-400', '0x10', '01', '1.', '.5', 'NaN', 'Infinity']);
        return { payload: Buffer.from(text.replace(new RegExp(`${field}[^,}]*`), `${field}${num}`)) };
      },
      proto: () => {
        const inner = JSON.stringify(this.defectiveStatus());
        return { payload: Buffer.from(r.pick([`{"__proto__":${inner}}`, `{"constructor":{"prototype":${inner}}}`, `{"__proto__":{"v":2},"v":1}`])) };
      },
    };
  }

  /** Payloads for protocol v1's node status topic: v1 statuses (the version detection's case), garbage, and v2 beacons. */
  private makeLegacyGens(): Record<string, Gen> {
    const r = this.r;
    const json = (o: unknown) => Buffer.from(JSON.stringify(o));
    return {
      // what a v1 node publishes: FEDMQ_UNSUPPORTED_VERSION
      v1: () => ({ payload: json(this.status(r.chance(0.8) ? undefined : r.pick(this.t.realNodeIds), r.pick([1, 1, 1, 0, 3]))) }),
      'v1-mutated': () => ({ payload: mutateBytes(r, json(this.status(undefined, 1)), 4).bytes }),
      'random-bytes': () => ({ payload: r.bytes(r.size(1024)) }),
      'random-json': () => ({ payload: json(randomJson(r, STATUS_FIELDS)) }),
      'garbage-text': () => ({ payload: Buffer.from(r.str(r.size(256), ' {}[]":,0123456789abcdefnulltrue\\\n\tu')) }),
      'truncated-json': () => {
        const b = json(this.status(undefined, 1));
        return { payload: b.subarray(0, r.int(b.length)) };
      },
      'one-defect': () => ({ payload: json(this.defectiveStatus()) }),
      // ignored: nothing retained to clear there
      empty: () => ({ payload: Buffer.alloc(0), nodeId: this.t.realNodeIds.includes(this.id) ? r.pick(this.fakeIds) : undefined }),
      // ignored: a v2 node's own status on the v1 topic (it publishes one there when it sees a v1 coordinator)
      'v2-beacon': () => ({ payload: json(this.status(r.chance(0.7) ? undefined : r.pick([...this.t.realNodeIds, ...this.fakeIds.slice(0, 2)]))) }),
    };
  }
}

/** The topic of `leaf` for `nodeId`; built by hand only for ids the topic builders refuse. */
export function topicOf(job: string, nodeId: string, leaf: Leaf): string {
  if (ID_PATTERN.test(nodeId)) {
    switch (leaf) {
      case 'update': return topics.nodeUpdate(job, nodeId);
      case 'evaluation': return topics.nodeEvaluation(job, nodeId);
      case 'status': return topics.nodeStatus(job, nodeId);
      case 'legacy': return topics.legacyNodeStatus(job, nodeId);
    }
  }
  return leaf === 'legacy' ? `${LEGACY_TOPIC_ROOT}/${job}/nodes/${nodeId}/status` : `${TOPIC_ROOT}/${job}/nodes/${nodeId}/${leaf}`;
}

/** The leaf of a fuzz topic (for FEDMQ_BAD_TOPIC rejections, whose details carry the topic). */
export function leafOfTopic(topic: string): Leaf | undefined {
  if (topic.startsWith(`${LEGACY_TOPIC_ROOT}/`)) return topic.endsWith('/status') ? 'legacy' : undefined;
  if (!topic.startsWith(`${TOPIC_ROOT}/`)) return undefined;
  for (const leaf of ['update', 'evaluation', 'status'] as const) if (topic.endsWith(`/${leaf}`)) return leaf;
  return undefined;
}
