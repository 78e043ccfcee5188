/**
 * Random and mutated payloads for the update and status topics of a fedmq job
 * (`fedmq/v1/{job}/nodes/{nodeId}/update`, msgpack; `.../status`, JSON; docs/protocol.md).
 *
 * Payloads start from valid-looking messages (the current run id, round and model version, the
 * global model's tensor names and shapes, real updates captured on the wire) and break them:
 * truncation, bit flips, byte insertion and deletion, fields of the wrong type, missing and
 * extra fields, huge declared msgpack lengths, deep nesting, tensors of the wrong shape, codec,
 * length or with NaN/Infinity, wrong job/run/node ids, rounds and model versions, valid-looking
 * updates for other nodes, JSON garbage, empty and oversized payloads.
 *
 * What this fuzzer never sends: a payload the coordinator would accept. Without authentication
 * the broker is open, so a client that publishes a fully valid update for a real node id before
 * that node does gets it aggregated in the node's place, and a valid `offline` status (or an empty
 * retained one) for a real node drops or removes it. That is spoofing, an authentication and ACL
 * problem (docs/security.md: per-node credentials, and ACLs that let a node publish only on its
 * own topics), not a parsing one. So every generated payload passes through a guard
 * ({@link updateCouldBeAccepted}, {@link statusCouldBeAccepted}) that predicts, with the
 * coordinator's own checks, whether it could be accepted for its topic; such payloads are
 * withheld and counted in {@link PayloadFuzzer.withheld}. The one exception is a verbatim replay
 * of a real update, which must be refused as a duplicate or stale update.
 */
import {
  NodeStatusSchema, PROTOCOL_VERSION, TOPIC_ROOT, ID_PATTERN, decodeJson, decodeUpdate, packMessage, topics, type NamedTensor,
} from '@fedmq/protocol';
import { checkUpdateTensors } from '@fedmq/coordinator';
import { mutateBytes, type Rand } from './rand.ts';

/** What the fuzzer knows about the job under test. */
export interface FuzzTarget {
  job: string;
  /** The coordinator's run id. */
  runId: string;
  /** Ids of the real nodes. */
  realNodeIds: readonly string[];
  /** Names and shapes of the global model's tensors, in order. */
  tensors: readonly { name: string; shape: number[] }[];
  /** The latest round task seen (the test updates it). */
  current: { round: number; modelVersion: number };
  /** Real updates seen on the wire, verbatim, most recent last (the test appends to it). */
  captured: { nodeId: string; payload: Buffer }[];
}

/** One fuzz payload and where it goes. */
export interface Fuzzed {
  /** Generator that made it, e.g. `update/wrong-type`. */
  kind: string;
  topic: string;
  leaf: 'update' | 'status';
  nodeId: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: boolean;
}

const UPDATE_FIELDS = ['v', 'job', 'runId', 'nodeId', 'round', 'modelVersion', 'numExamples', 'codec', 'kind', 'metrics', 'tensors', 'ts'];
const STATUS_FIELDS = ['v', 'job', 'nodeId', 'state', 'ts', 'numExamples', 'model', 'device', 'lastRound'];
const TENSOR_FIELDS = ['name', 'shape', 'codec', 'data'];
/**
 * Node ids that are valid MQTT topic levels but not fedmq ids. Not here: `/`, `+`, `#`, U+0000 and
 * the empty level (`nodes//update`), for which the broker drops the publishing client; raw
 * frames (frames.ts) send those.
 */
const INVALID_IDS = ['a b', 'ñode', 'x'.repeat(65), 'n1:x', '$node', 'tab\there', 'emoji🙂', '"quoted"', 'node\u00a0', '%2F'];
const TS = 1_764_000_000_000;

// ---------------------------------------------------------------- guards

/**
 * True when the coordinator could accept `payload` on `nodes/{topicNodeId}/update` for some open
 * round: it decodes, belongs to the job and run, names the topic's node and passes the tensor
 * checks. (Round, model version, selection and duplicates are left out on purpose: the guard
 * must not depend on timing.)
 */
export function updateCouldBeAccepted(payload: Buffer, topicNodeId: string, t: Pick<FuzzTarget, 'job' | 'runId' | 'tensors'>): boolean {
  let u;
  try {
    u = decodeUpdate(payload);
  } catch {
    return false;
  }
  if (u.job !== t.job || u.nodeId !== topicNodeId || u.runId !== t.runId) return false;
  const global: NamedTensor[] = t.tensors.map((x) => ({ name: x.name, shape: x.shape, data: new Float32Array(0) }));
  try {
    checkUpdateTensors(u, global, 'float32');
    return true;
  } catch {
    return false;
  }
}

/**
 * True when the coordinator would act on `payload` on `nodes/{topicNodeId}/status`: a valid
 * status naming the topic's node (registered, or marked offline), or an empty payload for a real
 * node (the retained status cleared: the node is forgotten).
 */
export function statusCouldBeAccepted(payload: Buffer, topicNodeId: string, realNodeIds: readonly string[]): boolean {
  if (payload.length === 0) return realNodeIds.includes(topicNodeId);
  try {
    return decodeJson(NodeStatusSchema, payload, 'status').nodeId === topicNodeId;
  } catch {
    return false;
  }
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

/** A random JSON-able value. */
function randomJson(r: Rand, depth = 0): unknown {
  if (depth > 4 || r.chance(0.4)) {
    return r.pick<() => unknown>([() => null, () => r.chance(0.5), () => r.range(-1e6, 1e6), () => r.next() * 1e20 - 1e10, () => r.str(r.size(40)), () => r.unicode(r.size(20))])();
  }
  if (r.chance(0.4)) return Array.from({ length: r.size(8) }, () => randomJson(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = r.size(10); i > 0; i--) o[r.chance(0.6) ? r.pick(STATUS_FIELDS) : r.unicode(r.range(0, 8))] = randomJson(r, depth + 1);
  return o;
}

/** A value of another type than `v` (for "wrong field type" payloads). */
function otherType(r: Rand, v: unknown): unknown {
  for (let i = 0; i < 20; i++) {
    const x = randomValue(r, 3);
    if (typeof x !== typeof v || Array.isArray(x) !== Array.isArray(v) || (x instanceof Uint8Array) !== (v instanceof Uint8Array)) return x;
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

/**
 * Generates fuzz payloads for the update and status topics of one job. Deterministic for a given
 * {@link Rand} and the same {@link FuzzTarget} contents at each call.
 */
export class PayloadFuzzer {
  /** Payloads the guard withheld because the coordinator could have accepted them, by kind. */
  readonly withheld: Record<string, number> = {};
  private readonly fakeIds: string[];
  private readonly zeros: Uint8Array[];
  private readonly updateGens: Record<string, Gen>;
  private readonly statusGens: Record<string, Gen>;
  private n = 0;
  /** The topic node id of the payload being generated (generators read it). */
  private id = '';

  constructor(private readonly r: Rand, private readonly t: FuzzTarget) {
    this.fakeIds = Array.from({ length: 40 }, (_, i) => `ghost-${i}-${r.str(4)}`);
    this.zeros = t.tensors.map((x) => new Uint8Array(x.shape.reduce((a, b) => a * b, 1) * 4));
    this.updateGens = this.makeUpdateGens();
    this.statusGens = this.makeStatusGens();
  }

  /** Generator names, `update/…` and `status/…`. */
  get kinds(): string[] {
    return [...Object.keys(this.updateGens).map((k) => `update/${k}`), ...Object.keys(this.statusGens).map((k) => `status/${k}`)];
  }

  /**
   * The next payload: `updateShare` of them on update topics, the rest on status topics. The
   * first calls go through every generator once, so that a short run covers them all.
   */
  next(updateShare = 0.6): Fuzzed {
    const kinds = this.kinds;
    const i = this.n++;
    const kind = i < kinds.length ? kinds[i] : this.r.chance(updateShare) ? `update/${this.pickUpdateKind()}` : `status/${this.pickStatusKind()}`;
    const [leaf, name] = kind.split('/') as ['update' | 'status', string];
    for (let attempt = 0; attempt < 50; attempt++) {
      this.id = this.pickNodeId();
      const g = (leaf === 'update' ? this.updateGens : this.statusGens)[name]();
      const nodeId = g.nodeId ?? this.id;
      const acceptable = leaf === 'update'
        ? updateCouldBeAccepted(g.payload, nodeId, this.t) && !this.isVerbatimReplay(g.payload)
        : statusCouldBeAccepted(g.payload, nodeId, this.t.realNodeIds);
      if (acceptable) {
        this.withheld[kind] = (this.withheld[kind] ?? 0) + 1;
        continue;
      }
      const retain = (g.retain ?? this.r.chance(0.02)) && this.fakeIds.includes(nodeId);
      // retained ones at QoS 1: Aedes 1.2 drops a retained QoS 0 message for live subscribers when
      // a later packet of the same client overtakes it while the retained copy is stored (its
      // per-client dedupe keeps the highest packet counter seen); see the fuzz test's header
      const qos = retain || this.r.chance(0.05) ? 1 : 0;
      return { kind, leaf, nodeId, topic: topicOf(this.t.job, nodeId, leaf), payload: g.payload, qos, retain };
    }
    const nodeId = this.pickNodeId();
    return { kind: `${leaf}/fallback-random`, leaf, nodeId, topic: topicOf(this.t.job, nodeId, leaf), payload: this.r.bytes(16), qos: 0, retain: false };
  }

  private isVerbatimReplay(payload: Buffer): boolean {
    return this.t.captured.some((c) => c.payload.equals(payload));
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

  private pickUpdateKind(): string {
    return this.r.weighted<string>([
      ['random-bytes', 8], ['empty', 2], ['random-msgpack', 8], ['json', 3], ['wrong-type', 12], ['missing-field', 4], ['extra-field', 3],
      ['huge-length', 5], ['deep-nesting', 0.2], ['id-defect', 15], ['other-node', 4], ['tensor-defect', 12], ['tensor-defect-full', 0.3],
      ['replay', 2], ['mutated', 18], ['mutated-real', 2], ['oversized', 0.02],
    ]);
  }

  private pickStatusKind(): string {
    return this.r.weighted<string>([
      ['random-bytes', 8], ['empty', 3], ['random-json', 14], ['garbage-text', 6], ['truncated-json', 9], ['invalid-utf8', 5], ['deep-json', 0.2],
      ['huge-string', 0.3], ['one-defect', 24], ['other-node', 4], ['mutated', 20], ['numbers', 3], ['proto', 2],
    ]);
  }

  // -------------------------------------------------------------- updates

  /** A valid-looking update object for the topic's node in the current round, with tensors that are right in names only (or fully right with `full`). */
  private update(opts: { full?: boolean; nodeId?: string } = {}): Record<string, unknown> {
    const r = this.r;
    const tensors = this.t.tensors.map((x, i) => opts.full
      ? { name: x.name, shape: [...x.shape], codec: 'float32', data: this.zeros[i] }
      : { name: x.name, shape: [2, 3].slice(0, x.shape.length), codec: 'float32', data: new Uint8Array(x.shape.length === 1 ? 8 : 24) });
    return {
      v: PROTOCOL_VERSION, job: this.t.job, runId: this.t.runId, nodeId: opts.nodeId ?? (ID_PATTERN.test(this.id) ? this.id : 'n-x'),
      round: this.t.current.round, modelVersion: this.t.current.modelVersion, numExamples: r.range(1, 5000), codec: 'float32', kind: 'delta',
      metrics: { loss: r.next() * 3, trainMs: r.int(10_000) }, tensors, ts: TS + this.n,
    };
  }

  private makeUpdateGens(): Record<string, Gen> {
    const r = this.r;
    const pack = (o: unknown) => packMessage(o as object);
    return {
      'random-bytes': () => ({ payload: r.bytes(r.size(4096)) }),
      empty: () => ({ payload: Buffer.alloc(0) }),
      'random-msgpack': () => ({ payload: pack(randomValue(r)) }),
      json: () => ({ payload: Buffer.from(JSON.stringify(this.update(), (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v))) }),
      'wrong-type': () => {
        const u = this.update({ full: r.chance(0.02) });
        const paths: (string | number)[][] = [
          ...UPDATE_FIELDS.map((f) => [f]), ['metrics', 'loss'], ['metrics', 'trainMs'],
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
        const cur = this.t.current;
        const [p, v] = r.pick<[string[], unknown]>([
          [['v'], r.pick([0, 2, 255, '1', -1])],
          [['job'], r.pick([`${this.t.job}-other`, 'other', 'bad job', ''])],
          [['runId'], r.pick([`${this.t.runId}-old`, 'run-0', '', 'x'.repeat(65)])],
          [['round'], r.pick([0, -1, cur.round - 1, cur.round + 1, cur.round + 1000, 2 ** 31, 2 ** 53 + 2, 1.5])],
          [['modelVersion'], r.pick([0, cur.modelVersion - 1, cur.modelVersion + 1, 2 ** 40, 0.5])],
          [['numExamples'], r.pick([0, -5, 1.5, 2 ** 60, NaN])],
          [['codec'], r.pick(['int8', 'float16', 'topk', 'topk-int8', 'gzip', '', 'x'.repeat(40)])],
          [['kind'], r.pick(['weights', 'Delta', ''])],
          [['metrics', 'loss'], r.pick([NaN, Infinity, -Infinity])],
          [['metrics', 'trainMs'], r.pick([-1, NaN, Infinity])],
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
        // every tensor of the right size; one breaks a per-value or per-tensor check
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
      replay: () => {
        const c = this.t.captured;
        if (c.length === 0) return { payload: pack(this.update()) };
        const got = r.pick(c.slice(-6));
        // to its own node's topic (a duplicate or stale update), or to another node's (node id mismatch)
        const nodeId = r.chance(0.6) ? got.nodeId : r.pick([...this.t.realNodeIds, ...this.fakeIds.slice(0, 2)]);
        return { payload: got.payload, nodeId };
      },
      mutated: () => {
        const base = r.chance(0.5) ? this.update() : (withPath(this.update(), ['tensors', 0], { name: this.t.tensors[0].name, shape: this.t.tensors[0].shape, codec: 'float32', data: new Uint8Array(16) }) as object);
        return { payload: mutateBytes(r, pack(base), 6).bytes };
      },
      'mutated-real': () => {
        const c = this.t.captured;
        if (c.length === 0) return { payload: mutateBytes(r, pack(this.update()), 4).bytes };
        const got = r.pick(c.slice(-6));
        // most positions in the header: a flipped byte in the weights mostly leaves a valid (withheld) update
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

  // -------------------------------------------------------------- statuses

  /** A valid-looking status object for `nodeId` (default: the topic's node). */
  private status(nodeId?: string): Record<string, unknown> {
    const r = this.r;
    return {
      v: PROTOCOL_VERSION, job: this.t.job, nodeId: nodeId ?? (ID_PATTERN.test(this.id) ? this.id : 'n-x'), state: r.pick(['idle', 'training', 'uploading', 'offline']),
      ts: TS + this.n, numExamples: r.range(1, 5000), model: 'mnist-2nn',
      device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 4096, backend: 'wasm' }, lastRound: { round: r.range(0, 10), loss: r.next(), trainMs: r.int(5000) },
    };
  }

  /** A status that fails validation, or names another node: one defect. */
  private defectiveStatus(): Record<string, unknown> {
    const r = this.r;
    const s = this.status();
    const [p, v] = r.pick<[string[], unknown]>([
      [['v'], r.pick([0, 2, '1', null])], [['nodeId'], r.pick(['bad id', '', 42, null, 'x'.repeat(65)])], [['job'], r.pick(['bad job', 7, ''])],
      [['state'], r.pick(['online', 'IDLE', '', 3, null])], [['ts'], r.pick([-1, 1.5, '1764000000000', null])], [['numExamples'], r.pick([-1, 0.5, 'many'])],
      [['model'], r.pick(['x'.repeat(200), 5])], [['device'], r.pick(['pi', [], { platform: 'x'.repeat(100), arch: 'a', cores: 1, memoryMb: 1, backend: 'cpu' }, { cores: -1 }])],
      [['lastRound'], r.pick([{ round: -1, loss: 0, trainMs: 0 }, { round: 1, loss: 'x', trainMs: 0 }, { round: 1 }, 'yesterday'])],
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
      'random-json': () => ({ payload: json(randomJson(r)) }),
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
      mutated: () => ({ payload: mutateBytes(r, json(someStatus()), 6).bytes }),
      numbers: () => {
        const text = JSON.stringify(this.status());
        const field = r.pick(['"ts":', '"numExamples":', '"cores":', '"round":', '"v":']);
        const num = r.pick(['1e400', '-1e400', '9007199254740993', '-0', '1e-400', '0x10', '01', '1.', '.5', 'NaN', 'Infinity']);
        return { payload: Buffer.from(text.replace(new RegExp(`${field}[^,}]*`), `${field}${num}`)) };
      },
      proto: () => {
        const inner = JSON.stringify(this.defectiveStatus());
        return { payload: Buffer.from(r.pick([`{"__proto__":${inner}}`, `{"constructor":{"prototype":${inner}}}`, `{"__proto__":{"v":1},"v":2}`])) };
      },
    };
  }
}

/** `fedmq/v1/{job}/nodes/{nodeId}/{leaf}`; built by hand only for ids the topic builders refuse. */
export function topicOf(job: string, nodeId: string, leaf: 'update' | 'status'): string {
  if (ID_PATTERN.test(nodeId)) return leaf === 'update' ? topics.nodeUpdate(job, nodeId) : topics.nodeStatus(job, nodeId);
  return `${TOPIC_ROOT}/${job}/nodes/${nodeId}/${leaf}`;
}
