/**
 * Secure aggregation in the round engine (coordinator/src/engine/secagg.ts): whole rounds driven
 * on the fake clock with simulated nodes that run the real node side of the protocol
 * (`SecAggClient`, `secaggEncode`, `packBits`, as edge-node/src/node.ts does), dropouts at every
 * stage, aborts below the threshold, fuzzed stage messages and the composition refusals.
 *
 * The expected model is always recomputed here from the nodes' own deltas (plain FedAvg in
 * float64), with the quantization error bounded from the encoding's step 2·clip/L.
 */
import { describe, expect, it } from 'vitest';
import {
  ErrorCodes, PROTOCOL_VERSION, createRng, decodeUpdate, encodeJson, encodePacked, encodeSecAggAnswer, float32Codec, topics,
  type AdvertiseKeysTask, type FitTask, type NamedTensor, type NodeTask, type RoundRecord, type SecAggAnswer, type SecAggEncoding, type ShareKeysTask,
  type UnmaskTask, type UpdateMessage,
} from '@fedmq/protocol';
import { BufferedRandomSource, SecAggClient, modulusBits, packBits, secaggEncode, unpackBits } from '@fedmq/privacy';
import { createStrategy } from '../strategies/index.ts';
import { fedavgEncoding, type SecAggOptions } from './secagg.ts';
import { FIT, Harness, JOB, config, tinyModel } from './test-kit.ts';
import type { Effect, EngineConfig, EngineEvent } from './types.ts';

const CLIP = 1;
const LEVEL_BITS = 16;
/** L: the top quantization level. */
const LEVELS = 2 ** LEVEL_BITS - 1;
/** One quantization step, 2·clip/L. */
const STEP = (2 * CLIP) / LEVELS;
/** Float32 rounding of the mean step and of the new weights (|w| < 2). */
const F32_SLACK = 1e-6;
const PARAMS = tinyModel().reduce((n, t) => n + t.data.length, 0);

type SecAggStage = 'advertise-keys' | 'share-keys' | 'fit' | 'unmask';
const STAGES: readonly SecAggStage[] = ['advertise-keys', 'share-keys', 'fit', 'unmask'];
type TaskOf<S extends SecAggStage> = Extract<NodeTask, { stage: S }>;

function secaggOptions(o: Partial<SecAggOptions> = {}): SecAggOptions {
  return { graph: 'harary', thresholdFraction: 0.5, neighbours: undefined, ...fedavgEncoding(CLIP, LEVEL_BITS), ...o };
}

/** A deterministic RandomSource (the nodes' stochastic rounding) over createRng's stream. */
class SeededSource extends BufferedRandomSource {
  private readonly rng: () => number;
  constructor(seed: number) {
    super(256);
    this.rng = createRng(seed);
  }
  protected refill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(this.rng() * 256);
  }
}

const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const flat = (ts: readonly { data: ArrayLike<number> }[]) => ts.flatMap((t) => Array.from(t.data));
const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const concat = (a: Uint8Array, extra: number[]) => Uint8Array.from([...a, ...extra]);
/** A copy on its own ArrayBuffer (the message types want Uint8Array<ArrayBuffer>). */
const own = (a: Uint8Array) => new Uint8Array(a);

type Envelope = Pick<SecAggAnswer, 'v' | 'job' | 'runId' | 'nodeId' | 'taskId' | 'round' | 'modelVersion' | 'ts'>;

/**
 * A simulated edge node: what edge-node/src/node.ts does for each secure-aggregation task, with
 * the training replaced by a fixed delta (model order) and the quantization's randomness seeded.
 */
class SimNode {
  client?: SecAggClient;
  encoding?: SecAggEncoding;
  bits = 0;
  dims = 0;
  /** Its plain (quantized, unmasked) input of the last fit task: what must never reach the coordinator. */
  input?: Uint32Array;
  private readonly random: SeededSource;

  constructor(readonly id: string, readonly numExamples: number, readonly delta: NamedTensor[], seed: number) {
    this.random = new SeededSource(seed);
  }

  private envelope(task: NodeTask): Envelope {
    return { v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId: this.id, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion, ts: 1 };
  }

  advertise(task: AdvertiseKeysTask): SecAggAnswer {
    this.client?.forget();
    this.client = new SecAggClient(this.id, { job: JOB, runId: task.runId, round: task.round });
    const reply = this.client.advertise({ neighbours: task.neighbours, threshold: task.threshold, bits: task.bits, dims: task.dims });
    this.encoding = task.encoding;
    this.bits = task.bits;
    this.dims = task.dims;
    return { ...this.envelope(task), stage: 'advertise-keys', encPublicKey: own(reply.encPublicKey), maskPublicKey: own(reply.maskPublicKey) };
  }

  async shareKeys(task: ShareKeysTask): Promise<SecAggAnswer> {
    const peers = task.peers.map((p) => ({ nodeId: p.nodeId, encPublicKey: fromB64(p.encPublicKey), maskPublicKey: fromB64(p.maskPublicKey) }));
    const reply = await this.client!.shareKeys({ peers });
    return { ...this.envelope(task), stage: 'share-keys', shares: reply.shares.map((s) => ({ to: s.to, ciphertext: own(s.ciphertext) })) };
  }

  /** The masked input as an Update (no tensors, numExamples 1: the weight is inside the masked vector). */
  masked(task: FitTask): UpdateMessage {
    const shares = task.secagg!.shares.map((s) => ({ from: s.from, to: this.id, ciphertext: fromB64(s.ciphertext) }));
    const input = secaggEncode(this.delta, this.numExamples, this.encoding!, this.random);
    const y = this.client!.maskInput({ shares }, input);
    this.input = input;
    return {
      ...this.envelope(task), numExamples: 1, codec: task.codec, kind: 'delta', metrics: { loss: 0, trainMs: 1, bytesDown: 0 },
      secagg: { data: packBits(y, this.bits) }, tensors: [],
    };
  }

  unmask(task: UnmaskTask): SecAggAnswer {
    const reply = this.client!.unmask({ survivors: task.survivors, dropped: task.dropped });
    const held = (xs: typeof reply.selfMaskShares) => xs.map((x) => ({ of: x.of, share: own(x.share) }));
    return { ...this.envelope(task), stage: 'unmask', selfMaskShares: held(reply.selfMaskShares), maskKeyShares: held(reply.maskKeyShares) };
  }
}

const rawEvent = (topic: string, payload: Uint8Array): EngineEvent => ({ type: 'message', topic, payload });
/** A secure-aggregation answer on `topicNode`'s secagg topic (default: its own sender's). */
const secaggEvent = (a: SecAggAnswer, topicNode = a.nodeId): EngineEvent => rawEvent(topics.nodeSecAgg(JOB, topicNode), encodeSecAggAnswer(a));
const updateMessage = (u: UpdateMessage, topicNode = u.nodeId): EngineEvent => rawEvent(topics.nodeUpdate(JOB, topicNode), encodePacked(u));

interface FleetOptions {
  nodes: number;
  rounds?: number;
  secagg?: Partial<SecAggOptions>;
  cfg?: Partial<EngineConfig>;
  seed?: number;
}

/** A coordinator (Harness) and its simulated nodes. */
class Fleet {
  readonly h: Harness;
  readonly nodes: SimNode[];
  /** Every message payload the coordinator received, as bytes. */
  readonly received: Buffer[] = [];
  /** How many times the sum of a round was released (SecAggOptions.onRelease). */
  releases = 0;
  private readonly ran = new Set<string>();

  constructor(o: FleetOptions) {
    const rng = createRng(o.seed ?? 1);
    this.nodes = Array.from({ length: o.nodes }, (_, i) => {
      const numExamples = 5 + Math.floor(rng() * 60);
      const delta = tinyModel().map((t) => ({ ...t, data: Float32Array.from(t.data, () => (rng() - 0.5) * 0.8) }));
      return new SimNode(`node-${String(i).padStart(2, '0')}`, numExamples, delta, 1000 * (o.seed ?? 1) + i);
    });
    const secagg = secaggOptions({ onRelease: () => this.releases++, ...o.secagg });
    this.h = new Harness(config({ rounds: o.rounds ?? 1, minAvailableNodes: o.nodes, secagg, ...o.cfg }));
  }

  node(id: string): SimNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  get maxExamples(): number {
    return Math.max(...this.nodes.map((n) => n.numExamples));
  }

  /** A node status carrying its example count (the coordinator sizes the FedAvg weights from it). */
  status(id: string, state: 'idle' | 'offline' = 'idle', taskId?: number): Effect[] {
    const s = { v: PROTOCOL_VERSION, job: JOB, nodeId: id, state, ts: this.h.time, numExamples: this.node(id).numExamples, taskId };
    return this.h.feed({ type: 'message', topic: topics.nodeStatus(JOB, id), payload: encodeJson(s) });
  }

  start(): this {
    for (const n of this.nodes) this.status(n.id);
    this.h.feed({ type: 'start' });
    return this;
  }

  feed(e: EngineEvent): Effect[] {
    if (e.type === 'message') this.received.push(Buffer.from(e.payload));
    return this.h.feed(e);
  }

  tasks<S extends SecAggStage>(round: number, stage: S): TaskOf<S>[] {
    return this.h.tasks().filter((t): t is TaskOf<S> => t.round === round && t.stage === stage);
  }

  task<S extends SecAggStage>(round: number, stage: S, nodeId: string): TaskOf<S> {
    const t = (this.tasks(round, stage) as NodeTask[]).find((x) => x.nodeId === nodeId);
    if (!t) throw new Error(`no ${stage} task of round ${round} for ${nodeId}`);
    return t as TaskOf<S>;
  }

  /** What the node answers to `task`, as the message event. */
  async answer(task: NodeTask): Promise<EngineEvent> {
    const n = this.node(task.nodeId);
    switch (task.stage) {
      case 'advertise-keys':
        return secaggEvent(n.advertise(task));
      case 'share-keys':
        return secaggEvent(await n.shareKeys(task));
      case 'fit':
        return updateMessage(n.masked(task));
      case 'unmask':
        return secaggEvent(n.unmask(task));
      default:
        throw new Error(`unexpected ${task.stage} task`);
    }
  }

  /** Every node sent a `stage` task in `round` answers it, except `skip`. */
  async play(round: number, stage: SecAggStage, skip: readonly string[] = []): Promise<void> {
    for (const t of this.tasks(round, stage)) if (!skip.includes(t.nodeId)) this.feed(await this.answer(t));
  }

  /** Fires the deadline timer of `stage` in `round`. */
  fire(round: number, stage: SecAggStage): void {
    const id = `stage:${round}:${stage}`;
    const at = this.h.timers.get(id);
    if (at === undefined) throw new Error(`no timer ${id}`);
    this.h.time = Math.max(this.h.time, at);
    this.h.timers.delete(id);
    this.h.feed({ type: 'timer', id });
  }

  /** The compute effects so far. */
  computes(): Extract<Effect, { type: 'compute' }>[] {
    return this.h.effects.filter((e): e is Extract<Effect, { type: 'compute' }> => e.type === 'compute');
  }

  /** Runs the compute effects not run yet and feeds their results (or errors) back; returns the errors. */
  async compute(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const e of this.computes().filter((c) => !this.ran.has(c.id))) {
      this.ran.add(e.id);
      let value: unknown;
      try {
        value = await e.run();
      } catch (error) {
        errors.push(error);
        this.h.feed({ type: 'computed', id: e.id, error });
        continue;
      }
      this.h.feed({ type: 'computed', id: e.id, value });
    }
    return errors;
  }

  /** A whole round in which every node answers every stage. */
  async round(round: number): Promise<void> {
    for (const s of STAGES) await this.play(round, s);
    await this.compute();
  }

  record(round: number): RoundRecord {
    const r = this.h.machine.history.find((x) => x.round === round);
    if (!r) throw new Error(`round ${round} not recorded`);
    return r;
  }

  /** The current global model, flat. */
  model(): number[] {
    return flat(this.h.latestModel().weights);
  }
}

/**
 * Plain FedAvg of `nodes`' deltas (Σ n_k·Δ_k / Σ n_k, float64) and the bound on what the
 * secure-aggregation encoding may differ from it per coordinate. Each node sends r_k·Δ_k
 * (r_k = n_k/maxExamples) stochastically rounded to the grid of step 2·clip/L (error < one step)
 * and r_k itself on the grid of 1/L (error < 1/L); the coordinator divides the two sums. With m
 * nodes, A = Σ r_k·Δ_k, R = Σ r_k: |Â/R̂ − A/R| ≤ |Â − A|/R̂ + |A/R|·|R̂ − R|/R̂ < (m·step + |mean|·m/L) / (R − m/L).
 */
function fedavgOf(nodes: readonly SimNode[], maxExamples: number): { mean: number[]; bound: number[] } {
  const total = nodes.reduce((s, n) => s + n.numExamples, 0);
  const mean = new Array<number>(PARAMS).fill(0);
  for (const n of nodes) flat(n.delta).forEach((x, i) => (mean[i] += (n.numExamples * x) / total));
  const m = nodes.length;
  const R = nodes.reduce((s, n) => s + Math.min(n.numExamples, maxExamples) / maxExamples, 0);
  const bound = mean.map((x) => (m * STEP + (Math.abs(x) * m) / LEVELS) / (R - m / LEVELS));
  return { mean, bound };
}

/** The model moved from `before` to `after` by FedAvg of `survivors`, up to the quantization bound. */
function expectFedAvgStep(before: readonly number[], after: readonly number[], survivors: readonly SimNode[], maxExamples: number): void {
  const { mean, bound } = fedavgOf(survivors, maxExamples);
  expect(after).toHaveLength(PARAMS);
  for (let i = 0; i < PARAMS; i++) {
    expect(Math.abs(after[i] - before[i] - mean[i]), `coordinate ${i}`).toBeLessThanOrEqual(bound[i] + F32_SLACK);
  }
  // the check is not vacuous: the step is far larger than the tolerance, and the tolerance is a few steps
  expect(Math.max(...mean.map(Math.abs))).toBeGreaterThan(100 * Math.max(...bound));
  expect(Math.max(...bound)).toBeLessThan(survivors.length * STEP);
}

const initial = () => flat(tinyModel());
const stageNames = (r: RoundRecord) => r.secagg!.stages.map((s) => s.stage);
const cohortsOf = (r: RoundRecord) => r.secagg!.stages.map((s) => [s.stage, s.cohort, s.answered]);

describe('secure aggregation in the round engine: a whole round', () => {
  it.each([
    { nodes: 8, secagg: {}, k: 7, graph: 'harary' },
    { nodes: 10, secagg: { neighbours: 4 }, k: 4, graph: 'harary' },
    { nodes: 6, secagg: { graph: 'complete' as const }, k: 5, graph: 'complete' },
  ])('$nodes nodes, $graph graph, k = $k: the new model is plain FedAvg up to quantization, the record has every stage, the coordinator sees only masked words', async ({ nodes, secagg, k, graph }) => {
    const f = new Fleet({ nodes, secagg }).start();
    const n = f.nodes.length;
    const t = Math.max(2, Math.ceil(0.5 * n));
    const ti = Math.max(2, Math.floor(0.5 * k) + 1);
    const bits = modulusBits(n, { clip: CLIP, levelBits: LEVEL_BITS });

    // advertise-keys: one task per selected node with its neighbours, threshold, ring and encoding
    const adv = f.tasks(1, 'advertise-keys');
    expect(adv.map((x) => x.nodeId).sort()).toEqual(f.nodes.map((x) => x.id));
    for (const a of adv) {
      expect(a.neighbours).toHaveLength(k);
      expect(a.neighbours).not.toContain(a.nodeId);
      expect(a.threshold).toBe(ti);
      expect(a.bits).toBe(bits);
      expect(a.dims).toBe(PARAMS + 1);
      expect(a.encoding).toEqual({ kind: 'fedavg', clip: CLIP, levelBits: LEVEL_BITS, maxExamples: f.maxExamples });
      expect(a.modelVersion).toBe(1);
    }
    // the graph is symmetric
    for (const a of adv) for (const j of a.neighbours) expect(adv.find((x) => x.nodeId === j)!.neighbours).toContain(a.nodeId);
    expect(f.tasks(1, 'share-keys')).toHaveLength(0);

    await f.play(1, 'advertise-keys');
    const share = f.tasks(1, 'share-keys');
    expect(share).toHaveLength(n);
    for (const s of share) expect(s.peers.map((p) => p.nodeId).sort()).toEqual(adv.find((a) => a.nodeId === s.nodeId)!.neighbours);

    await f.play(1, 'share-keys');
    const fits = f.h.fitTasks().filter((x) => x.round === 1);
    expect(fits).toHaveLength(n);
    for (const x of fits) {
      expect(x.secagg!.shares.map((s) => s.from).sort()).toEqual(adv.find((a) => a.nodeId === x.nodeId)!.neighbours);
      expect(x.cohort).toBe(n);
    }

    await f.play(1, 'fit');
    const unmasks = f.tasks(1, 'unmask');
    expect(unmasks).toHaveLength(n);
    for (const u of unmasks) {
      expect(u.survivors).toEqual(adv.find((a) => a.nodeId === u.nodeId)!.neighbours);
      expect(u.dropped).toEqual([]);
    }

    await f.play(1, 'unmask');
    // the unmasking is asynchronous: the round waits for its compute effect
    const computes = f.computes();
    expect(computes.map((c) => c.id)).toEqual(['secagg:1']);
    expect(f.h.machine.history).toHaveLength(0);
    expect(f.releases).toBe(0);
    expect(await f.compute()).toEqual([]);
    expect(f.releases).toBe(1);

    const r = f.record(1);
    expect(r).toMatchObject({ round: 1, accepted: true, modelVersion: 2, selected: n, reported: n, failures: {}, trainLoss: null });
    expect(r.secagg).toMatchObject({ graph, neighbours: k, threshold: t, bits, dims: PARAMS + 1, recovered: 0, aborted: null });
    expect(cohortsOf(r)).toEqual([['advertise-keys', n, n], ['share-keys', n, n], ['fit', n, n], ['unmask', n, n], ['aggregate', n, n]]);
    for (const s of r.secagg!.stages) expect(s.durationMs).toBeGreaterThanOrEqual(0);
    expect(f.h.notices('stage').map((s) => (s.type === 'stage' ? s.stage : ''))).toEqual(['advertise-keys', 'share-keys', 'fit', 'unmask', 'aggregate']);
    expect(f.h.latestModel().version).toBe(2);
    expectFedAvgStep(initial(), f.model(), f.nodes, f.maxExamples);
    expect(f.h.finished?.outcome).toBe('done');
    expect(f.h.rejections()).toEqual([]);

    // what the coordinator received: masked words only, never a delta, a plain input or an example count
    const updates = f.received.flatMap((p) => {
      try {
        return [decodeUpdate(p)];
      } catch {
        return [];
      }
    });
    expect(updates).toHaveLength(n);
    for (const u of updates) {
      expect(u.tensors).toEqual([]);
      expect(u.numExamples).toBe(1);
      expect(u.metrics.loss).toBe(0);
      const node = f.node(u.nodeId);
      expect(Array.from(unpackBits(u.secagg!.data, PARAMS + 1, bits))).not.toEqual(Array.from(node.input!));
    }
    for (const node of f.nodes) {
      const plain = bytesOf(packBits(node.input!, bits));
      for (const d of node.delta) {
        const raw = bytesOf(d.data);
        expect(f.received.some((p) => p.includes(raw))).toBe(false);
      }
      expect(f.received.some((p) => p.includes(plain))).toBe(false);
    }
  });

  it('runs several rounds: each round draws fresh keys, and each step is FedAvg', async () => {
    const f = new Fleet({ nodes: 6, rounds: 3, secagg: { neighbours: 2 } }).start();
    let before = initial();
    const keys = new Set<string>();
    for (let round = 1; round <= 3; round++) {
      await f.play(round, 'advertise-keys');
      for (const s of f.tasks(round, 'share-keys')) for (const p of s.peers) keys.add(p.encPublicKey).add(p.maskPublicKey);
      for (const s of STAGES.slice(1)) await f.play(round, s);
      await f.compute();
      expect(f.record(round)).toMatchObject({ accepted: true, modelVersion: round + 1 });
      const after = f.model();
      expectFedAvgStep(before, after, f.nodes, f.maxExamples);
      before = after;
    }
    expect(keys.size).toBe(3 * 6 * 2); // 6 nodes, 2 keys each, new every round
    expect(f.releases).toBe(3);
    expect(f.h.finished?.outcome).toBe('done');
  });
});

describe('secure aggregation in the round engine: dropouts', () => {
  it('nodes going offline or missing the deadline after share-keys: the round completes, recovers their masks, and the model is FedAvg of the survivors', async () => {
    const f = new Fleet({ nodes: 8 }).start();
    await f.play(1, 'advertise-keys');
    await f.play(1, 'share-keys');
    const [gone, late] = [f.nodes[2].id, f.nodes[5].id];
    f.status(gone, 'offline');
    await f.play(1, 'fit', [gone, late]);
    expect(f.tasks(1, 'unmask')).toHaveLength(0); // still waiting for `late`
    f.fire(1, 'fit');
    const unmasks = f.tasks(1, 'unmask');
    expect(unmasks.map((u) => u.nodeId).sort()).toEqual(f.nodes.map((n) => n.id).filter((id) => id !== gone && id !== late));
    for (const u of unmasks) expect(u.dropped).toEqual([gone, late].sort());
    // `late`'s masked input after its stage closed is stale
    const lateFit = f.task(1, 'fit', late);
    f.feed(updateMessage(f.node(late).masked(lateFit)));
    expect(f.h.rejections()).toEqual([ErrorCodes.STALE_UPDATE]);
    await f.play(1, 'unmask');
    expect(await f.compute()).toEqual([]);
    const r = f.record(1);
    expect(r).toMatchObject({ accepted: true, selected: 8, reported: 6, failures: { offline: 1, timeout: 1, FEDMQ_STALE_UPDATE: 1 } });
    expect(r.secagg).toMatchObject({ recovered: 2, aborted: null });
    expect(cohortsOf(r)).toEqual([['advertise-keys', 8, 8], ['share-keys', 8, 8], ['fit', 8, 6], ['unmask', 6, 6], ['aggregate', 6, 6]]);
    expectFedAvgStep(initial(), f.model(), f.nodes.filter((n) => n.id !== gone && n.id !== late), f.maxExamples);
  });

  it('SecAgg+ graph (k = 4 of 10): a node dropping after share-keys is recovered from its neighbours', async () => {
    const f = new Fleet({ nodes: 10, secagg: { neighbours: 4 }, seed: 3 }).start();
    await f.play(1, 'advertise-keys');
    await f.play(1, 'share-keys');
    const gone = f.nodes[7].id;
    const neighbours = f.task(1, 'advertise-keys', gone).neighbours;
    f.status(gone, 'offline');
    await f.play(1, 'fit', [gone]);
    // only its neighbours are asked for its mask key shares
    for (const u of f.tasks(1, 'unmask')) expect(u.dropped).toEqual(neighbours.includes(u.nodeId) ? [gone] : []);
    await f.play(1, 'unmask');
    expect(await f.compute()).toEqual([]);
    expect(f.record(1)).toMatchObject({ accepted: true, reported: 9, failures: { offline: 1 }, secagg: { neighbours: 4, recovered: 1, aborted: null } });
    expectFedAvgStep(initial(), f.model(), f.nodes.filter((n) => n.id !== gone), f.maxExamples);
  });

  it('nodes dropping between their masked input and the unmask: their inputs stay in the sum, the round completes', async () => {
    const f = new Fleet({ nodes: 8, seed: 2 }).start();
    for (const s of STAGES.slice(0, 3)) await f.play(1, s);
    const [gone, late] = [f.nodes[0].id, f.nodes[6].id];
    f.status(gone, 'offline');
    await f.play(1, 'unmask', [gone, late]);
    expect(f.computes()).toHaveLength(0);
    f.fire(1, 'unmask');
    expect(await f.compute()).toEqual([]);
    const r = f.record(1);
    expect(r).toMatchObject({ accepted: true, reported: 8, failures: { offline: 1, timeout: 1 } });
    expect(r.secagg).toMatchObject({ recovered: 0, aborted: null });
    expect(cohortsOf(r)).toEqual([['advertise-keys', 8, 8], ['share-keys', 8, 8], ['fit', 8, 8], ['unmask', 8, 6], ['aggregate', 8, 8]]);
    expectFedAvgStep(initial(), f.model(), f.nodes, f.maxExamples);
  });

  it('nodes dropping before they shared keys (advertise-keys, share-keys): they are left out of the masks, nothing to recover', async () => {
    const f = new Fleet({ nodes: 8, seed: 4 }).start();
    const [silent, gone] = [f.nodes[1].id, f.nodes[4].id];
    await f.play(1, 'advertise-keys', [silent]);
    f.fire(1, 'advertise-keys');
    expect(f.tasks(1, 'share-keys').map((s) => s.nodeId)).not.toContain(silent);
    for (const s of f.tasks(1, 'share-keys')) expect(s.peers.map((p) => p.nodeId)).not.toContain(silent);
    f.status(gone, 'offline');
    await f.play(1, 'share-keys', [gone]);
    for (const x of f.h.fitTasks().filter((t) => t.round === 1)) expect(x.secagg!.shares.map((s) => s.from)).not.toContain(gone);
    await f.play(1, 'fit');
    for (const u of f.tasks(1, 'unmask')) expect([...u.survivors, ...u.dropped]).not.toContain(gone);
    await f.play(1, 'unmask');
    expect(await f.compute()).toEqual([]);
    const r = f.record(1);
    expect(r).toMatchObject({ accepted: true, selected: 8, reported: 6, failures: { timeout: 1, offline: 1 }, secagg: { recovered: 0, aborted: null } });
    expect(cohortsOf(r)).toEqual([['advertise-keys', 8, 7], ['share-keys', 7, 6], ['fit', 6, 6], ['unmask', 6, 6], ['aggregate', 6, 6]]);
    expectFedAvgStep(initial(), f.model(), f.nodes.filter((n) => n.id !== silent && n.id !== gone), f.maxExamples);
  });
});

describe('secure aggregation in the round engine: below the threshold', () => {
  it.each(STAGES)('too few nodes at the end of %s: FEDMQ_SECAGG_ABORT, the model is kept, no sum is unmasked, and the next round runs normally', async (stage) => {
    const f = new Fleet({ nodes: 6, rounds: 1, seed: 5 }).start();
    const ids = f.nodes.map((n) => n.id);
    const answering = ids.slice(0, 2); // t = max(2, ⌈0.5·6⌉) = 3
    const upTo = STAGES.indexOf(stage);
    for (const s of STAGES.slice(0, upTo)) await f.play(1, s);
    await f.play(1, stage, ids.filter((id) => !answering.includes(id)));
    f.fire(1, stage);
    // the unmask stage's shortfall is found by the unmasking itself, before any secret is rebuilt
    const errors = await f.compute();
    if (stage === 'unmask') {
      expect(errors).toEqual([expect.objectContaining({ code: ErrorCodes.SECAGG_ABORT })]);
    } else {
      expect(f.computes()).toEqual([]);
      // no later stage of round 1 sent anything
      for (const later of STAGES.slice(upTo + 1)) expect(f.tasks(1, later)).toEqual([]);
    }
    expect(f.releases).toBe(0);
    const r = f.record(1);
    expect(r).toMatchObject({ round: 1, accepted: false, modelVersion: 1, failures: { FEDMQ_SECAGG_ABORT: 1, timeout: 4 } });
    expect(r.secagg!.aborted).toBe(ErrorCodes.SECAGG_ABORT);
    expect(stageNames(r)).toEqual(STAGES.slice(0, upTo + 1));
    expect(r.secagg!.stages.at(-1)).toMatchObject({ stage, cohort: 6, answered: 2 });
    expect(f.h.rejections()).toEqual([ErrorCodes.SECAGG_ABORT]);
    expect(f.h.latestModel().version).toBe(1);
    expect(flat(f.h.machine.global)).toEqual(initial());
    expect(f.h.finished).toBeUndefined();

    // round 2: all six again, from the same model
    const adv2 = f.tasks(2, 'advertise-keys');
    expect(adv2.map((a) => a.nodeId).sort()).toEqual(ids);
    expect(adv2.every((a) => a.modelVersion === 1)).toBe(true);
    // a late result of round 1's unmasking is ignored
    f.h.feed({ type: 'computed', id: 'secagg:1', value: { sum: new Uint32Array(PARAMS + 1), survivors: ids, recovered: [], cohorts: [6, 6, 6, 6] } });
    await f.round(2);
    expect(f.record(2)).toMatchObject({ accepted: true, modelVersion: 2, failures: {}, secagg: { aborted: null } });
    expect(f.releases).toBe(1);
    expectFedAvgStep(initial(), f.model(), f.nodes, f.maxExamples);
    expect(f.h.finished?.outcome).toBe('done');
  });

  it('a cohort of one is refused before any task: every round aborts and the run fails after maxRoundRetries', () => {
    const f = new Fleet({ nodes: 1, rounds: 1, cfg: { minAvailableNodes: 1, maxRoundRetries: 1 } }).start();
    expect(f.h.tasks()).toEqual([]);
    expect(f.h.machine.history.map((r) => [r.accepted, r.secagg?.aborted])).toEqual([[false, ErrorCodes.SECAGG_ABORT], [false, ErrorCodes.SECAGG_ABORT]]);
    expect(f.h.finished).toMatchObject({ outcome: 'failed', error: { code: ErrorCodes.ROUND_FAILED } });
    expect(f.computes()).toEqual([]);
  });
});

describe('secure aggregation in the round engine: fuzzed stage messages', () => {
  /** Cut points of a payload of `len` bytes: the ends and seeded random ones in between. */
  function cuts(len: number, rng: () => number): number[] {
    const c = new Set([0, 1, len - 1]);
    while (c.size < 8) c.add(2 + Math.floor(rng() * (len - 3)));
    return [...c].sort((a, b) => a - b);
  }

  it('refuses every malformed, misaddressed, replayed or duplicated stage message with its code, changing nothing', async () => {
    const f = new Fleet({ nodes: 10, rounds: 2, secagg: { neighbours: 4 }, seed: 6 }).start();
    const rng = createRng(2024);
    const expected: string[] = [];
    /** Feeds a bad message: exactly one `rejected` notice with `code`, and no other effect. */
    const refuse = (e: EngineEvent, code: string, why: string) => {
      const out = f.feed(e);
      expect(out, why).toEqual([{ type: 'emit', event: expect.objectContaining({ type: 'rejected', error: expect.objectContaining({ code }) }) }]);
      expected.push(code);
    };
    const accept = (e: EngineEvent) => {
      const out = f.feed(e);
      expect(out.filter((x) => x.type === 'emit' && x.event.type === 'rejected')).toEqual([]);
    };
    const truncated = (e: EngineEvent, why: string) => {
      if (e.type !== 'message') throw new Error('not a message');
      for (const c of cuts(e.payload.length, rng)) refuse(rawEvent(e.topic, e.payload.subarray(0, c)), ErrorCodes.BAD_PAYLOAD, `${why} cut at ${c}`);
    };

    const [A, B] = [f.nodes[0], f.nodes[1]];
    const aNeighbours = f.task(1, 'advertise-keys', A.id).neighbours;
    const stranger = f.nodes.find((n) => n.id !== A.id && !aNeighbours.includes(n.id))!.id;
    const replays: EngineEvent[] = [];

    // --- advertise-keys
    const advA = A.advertise(f.task(1, 'advertise-keys', A.id));
    if (advA.stage !== 'advertise-keys') throw new Error('stage');
    const tB = f.task(1, 'advertise-keys', B.id);
    truncated(secaggEvent(advA), 'advertise-keys');
    refuse(secaggEvent({ ...advA, encPublicKey: advA.encPublicKey.subarray(0, 31) }), ErrorCodes.SCHEMA, '31-byte key');
    refuse(secaggEvent({ ...advA, maskPublicKey: concat(advA.maskPublicKey, [7]) }), ErrorCodes.SCHEMA, '33-byte key');
    refuse(secaggEvent(advA, B.id), ErrorCodes.SCHEMA, "A's answer on B's topic");
    refuse(secaggEvent({ ...advA, nodeId: B.id }, A.id), ErrorCodes.SCHEMA, "B's name on A's topic");
    refuse(secaggEvent({ ...advA, nodeId: B.id, taskId: tB.taskId }, A.id), ErrorCodes.SCHEMA, "B's answer on A's topic");
    refuse(secaggEvent({ ...advA, taskId: tB.taskId }), ErrorCodes.NOT_SELECTED, "A answers B's task");
    refuse(secaggEvent({ ...advA, runId: 'other-run' }), ErrorCodes.STALE_UPDATE, 'another run');
    refuse(secaggEvent({ ...advA, job: 'other-job' }), ErrorCodes.WRONG_JOB, 'another job');
    refuse(secaggEvent({ ...advA, modelVersion: 5 }), ErrorCodes.STALE_UPDATE, 'another model version');
    refuse(secaggEvent({ ...advA, stage: 'unmask', selfMaskShares: [], maskKeyShares: [] } as SecAggAnswer), ErrorCodes.STALE_UPDATE, 'an unmask answer to an advertise task');
    accept(secaggEvent(advA));
    replays.push(secaggEvent(advA));
    refuse(secaggEvent(advA), ErrorCodes.DUPLICATE_UPDATE, 'second copy');
    await f.play(1, 'advertise-keys', [A.id]);

    // --- share-keys
    const shA = await A.shareKeys(f.task(1, 'share-keys', A.id));
    if (shA.stage !== 'share-keys') throw new Error('stage');
    const [s0, s1, ...rest] = shA.shares;
    expect(shA.shares).toHaveLength(4);
    truncated(secaggEvent(shA), 'share-keys');
    const shares = (x: typeof shA.shares) => secaggEvent({ ...shA, shares: x });
    refuse(shares([{ ...s0, to: stranger }, s1, ...rest]), ErrorCodes.SECAGG_PROTOCOL, 'a share to a non-neighbour');
    refuse(shares([{ ...s0, to: A.id }, s1, ...rest]), ErrorCodes.SECAGG_PROTOCOL, 'a share to itself');
    refuse(shares([s1, ...rest]), ErrorCodes.SECAGG_PROTOCOL, 'a missing share');
    refuse(shares([]), ErrorCodes.SECAGG_PROTOCOL, 'no shares');
    refuse(shares([s0, { ...s1, to: s0.to }, ...rest]), ErrorCodes.SECAGG_PROTOCOL, 'two shares to one neighbour');
    refuse(shares([s0, s1, ...rest, s0]), ErrorCodes.SECAGG_PROTOCOL, 'a share repeated');
    refuse(shares([{ ...s0, ciphertext: s0.ciphertext.subarray(1) }, s1, ...rest]), ErrorCodes.SCHEMA, 'a 93-byte ciphertext');
    refuse(secaggEvent(shA, B.id), ErrorCodes.SCHEMA, "A's shares on B's topic");
    refuse(secaggEvent({ ...advA, taskId: shA.taskId }), ErrorCodes.STALE_UPDATE, 'keys answering the share-keys task');
    accept(secaggEvent(shA));
    replays.push(secaggEvent(shA));
    refuse(secaggEvent(shA), ErrorCodes.DUPLICATE_UPDATE, 'second copy');
    await f.play(1, 'share-keys', [A.id]);

    // --- fit (masked input)
    const bits = A.bits;
    const dims = A.dims;
    const fitA = f.task(1, 'fit', A.id);
    const u = A.masked(fitA);
    const data = u.secagg!.data;
    expect(data).toHaveLength(Math.ceil((dims * bits) / 8));
    truncated(updateMessage(u), 'masked update');
    const withData = (d: Uint8Array) => updateMessage({ ...u, secagg: { data: own(d) } });
    refuse(withData(data.subarray(0, data.length - 1)), ErrorCodes.SECAGG_PROTOCOL, 'one byte short');
    refuse(withData(concat(data, [0])), ErrorCodes.SECAGG_PROTOCOL, 'one byte long');
    refuse(withData(new Uint8Array(0)), ErrorCodes.SECAGG_PROTOCOL, 'empty');
    if ((dims * bits) % 8 !== 0) {
      const padded = Uint8Array.from(data);
      padded[padded.length - 1] |= 0x80; // a padding bit
      refuse(withData(padded), ErrorCodes.SECAGG_PROTOCOL, 'non-zero padding');
    }
    const tensors = float32Codec.encode(A.delta, {}, undefined, rng);
    refuse(updateMessage({ ...u, tensors }), ErrorCodes.SECAGG_PROTOCOL, 'masked input plus tensors');
    refuse(updateMessage({ ...u, secagg: undefined, tensors, numExamples: A.numExamples }), ErrorCodes.SECAGG_PROTOCOL, 'a plain update');
    refuse(updateMessage({ ...u, secagg: undefined }), ErrorCodes.SECAGG_PROTOCOL, 'neither');
    refuse(updateMessage(u, B.id), ErrorCodes.SCHEMA, "A's input on B's topic");
    refuse(updateMessage({ ...u, taskId: f.task(1, 'fit', B.id).taskId }), ErrorCodes.NOT_SELECTED, "A answers B's fit task");
    refuse(secaggEvent({ ...shA, taskId: fitA.taskId }), ErrorCodes.STALE_UPDATE, 'a share-keys answer to the fit task');
    accept(updateMessage(u));
    replays.push(updateMessage(u));
    refuse(updateMessage(u), ErrorCodes.DUPLICATE_UPDATE, 'second copy');
    await f.play(1, 'fit', [A.id]);

    // --- unmask
    const unA = A.unmask(f.task(1, 'unmask', A.id));
    if (unA.stage !== 'unmask') throw new Error('stage');
    expect(unA.selfMaskShares.map((s) => s.of)).toEqual(aNeighbours);
    expect(unA.maskKeyShares).toEqual([]);
    const [m0, m1, ...more] = unA.selfMaskShares;
    truncated(secaggEvent(unA), 'unmask');
    const un = (self: typeof unA.selfMaskShares, keys: typeof unA.maskKeyShares = []) => secaggEvent({ ...unA, selfMaskShares: self, maskKeyShares: keys });
    refuse(un([m1, ...more]), ErrorCodes.SECAGG_PROTOCOL, 'a share missing');
    refuse(un([{ ...m0, of: stranger }, m1, ...more]), ErrorCodes.SECAGG_PROTOCOL, 'a share of a non-neighbour');
    refuse(un([m0, m1, ...more, { of: A.id, share: m0.share }]), ErrorCodes.SECAGG_PROTOCOL, 'an extra share');
    refuse(un([m1, ...more], [m0]), ErrorCodes.SECAGG_PROTOCOL, "a survivor's mask-key share");
    refuse(un([m0, m1, ...more], [m0]), ErrorCodes.SECAGG_PROTOCOL, 'both shares of a survivor');
    refuse(un([{ ...m0, share: m0.share.subarray(1) }, m1, ...more]), ErrorCodes.SCHEMA, 'a 32-byte share');
    refuse(secaggEvent(unA, B.id), ErrorCodes.SCHEMA, "A's shares on B's topic");
    accept(secaggEvent(unA));
    replays.push(secaggEvent(unA));
    refuse(secaggEvent(unA), ErrorCodes.DUPLICATE_UPDATE, 'second copy');
    await f.play(1, 'unmask', [A.id]);
    expect(await f.compute()).toEqual([]);

    const r1 = f.record(1);
    expect(r1).toMatchObject({ accepted: true, reported: 10, secagg: { neighbours: 4, recovered: 0, aborted: null } });
    expect(cohortsOf(r1)).toEqual(['advertise-keys', 'share-keys', 'fit', 'unmask', 'aggregate'].map((s) => [s, 10, 10]));
    const counts: Record<string, number> = {};
    for (const c of expected) counts[c] = (counts[c] ?? 0) + 1;
    expect(r1.failures).toEqual(counts);
    const model1 = f.model();
    expectFedAvgStep(initial(), model1, f.nodes, f.maxExamples);

    // --- round 2: round 1's answers replayed are stale, the round runs as if they never came
    for (const e of replays) refuse(e, ErrorCodes.STALE_UPDATE, 'a replay of round 1');
    await f.play(2, 'advertise-keys');
    for (const e of replays) refuse(e, ErrorCodes.STALE_UPDATE, 'a replay of round 1 during share-keys');
    for (const s of STAGES.slice(1)) await f.play(2, s);
    expect(await f.compute()).toEqual([]);
    expect(f.record(2)).toMatchObject({ accepted: true, failures: { FEDMQ_STALE_UPDATE: 2 * replays.length }, secagg: { aborted: null } });
    expectFedAvgStep(model1, f.model(), f.nodes, f.maxExamples);
    expect(f.h.rejections()).toEqual(expected);
    expect(f.h.finished?.outcome).toBe('done');
  });

  it('a share ciphertext re-labelled for another receiver passes the coordinator (it cannot open it) and is refused by the receiving node with FEDMQ_SECAGG_AUTH; the round completes without those nodes', async () => {
    const f = new Fleet({ nodes: 8, seed: 7 }).start();
    await f.play(1, 'advertise-keys');
    const A = f.nodes[3];
    const shA = await A.shareKeys(f.task(1, 'share-keys', A.id));
    if (shA.stage !== 'share-keys') throw new Error('stage');
    const [x, y, ...rest] = shA.shares;
    // A (or a relay) swaps the labels of two of its sealed shares
    f.feed(secaggEvent({ ...shA, shares: [{ to: x.to, ciphertext: y.ciphertext }, { to: y.to, ciphertext: x.ciphertext }, ...rest] }));
    expect(f.h.rejections()).toEqual([]);
    await f.play(1, 'share-keys', [A.id]);
    const victims = [x.to, y.to];
    for (const [v, sealedFor] of [[x.to, y], [y.to, x]] as const) {
      const task = f.task(1, 'fit', v);
      // the coordinator relayed the bytes as labelled: v holds the ciphertext sealed for the other receiver
      expect(fromB64(task.secagg!.shares.find((s) => s.from === A.id)!.ciphertext)).toEqual(sealedFor.ciphertext);
      expect(() => f.node(v).masked(task)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_AUTH }));
      f.status(v, 'idle', task.taskId); // the node gives its task up
    }
    await f.play(1, 'fit', victims);
    await f.play(1, 'unmask');
    expect(await f.compute()).toEqual([]);
    const r = f.record(1);
    expect(r).toMatchObject({ accepted: true, reported: 6, secagg: { recovered: 2, aborted: null } });
    expect(cohortsOf(r).find(([s]) => s === 'fit')).toEqual(['fit', 8, 6]);
    // a given-up task counts as `failed`, as in a plain fit stage
    expect(r.failures.failed).toBe(2);
    expect(r.failures.offline).toBeUndefined();
    expect(f.h.rejections()).toEqual([]);
    expectFedAvgStep(initial(), f.model(), f.nodes.filter((n) => !victims.includes(n.id)), f.maxExamples);
  });
});

describe('secure aggregation: what composes (validateSecAgg)', () => {
  const strategy = (o: { strategy?: string; aggregator?: string; params?: Record<string, unknown>; minFitNodes?: number }) =>
    createStrategy({ fraction: 1, minFitNodes: o.minFitNodes ?? 1, fitConfig: FIT, strategy: o.strategy, aggregator: o.aggregator, params: o.params });
  const asyncOptions = { bufferSize: 2, concurrency: 2, staleness: { kind: 'constant' as const }, maxStaleness: 2 };

  it.each<[string, () => Partial<EngineConfig>]>([
    ['async mode (FedBuff)', () => ({ mode: 'async', async: asyncOptions })],
    ['the topk codec', () => ({ codec: 'topk' })],
    ['the topk-int8 codec', () => ({ codec: 'topk-int8' })],
    ['the median aggregator', () => ({ strategy: strategy({ aggregator: 'median' }) })],
    ['the trimmed-mean aggregator', () => ({ strategy: strategy({ aggregator: 'trimmed-mean' }) })],
    ['the krum aggregator', () => ({ strategy: strategy({ aggregator: 'krum', params: { krumF: 1 }, minFitNodes: 5 }) })],
    ['the multi-krum aggregator', () => ({ strategy: strategy({ aggregator: 'multi-krum', params: { krumF: 1 }, minFitNodes: 5 }) })],
    ['over-selection', () => ({ overSelection: 0.5 })],
  ])('refuses %s with FEDMQ_SECAGG_COMPOSITION (and accepts it without secure aggregation)', (_name, cfg) => {
    expect(() => new Harness(config({ ...cfg(), secagg: secaggOptions() }))).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_COMPOSITION }));
    expect(() => new Harness(config(cfg()))).not.toThrow();
  });

  it.each<[string, () => Partial<EngineConfig>]>([
    ['fedavg', () => ({ strategy: strategy({ strategy: 'fedavg' }) })],
    ['fedadam', () => ({ strategy: strategy({ strategy: 'fedadam' }) })],
    ['fedavgm', () => ({ strategy: strategy({ strategy: 'fedavgm' }) })],
    ['fedprox', () => ({ strategy: strategy({ strategy: 'fedprox', params: { proximalMu: 0.01 } }) })],
    ['the float16 codec', () => ({ codec: 'float16' })],
    ['the int8 codec', () => ({ codec: 'int8' })],
  ])('accepts %s', (_name, cfg) => {
    expect(() => new Harness(config({ ...cfg(), secagg: secaggOptions() }))).not.toThrow();
    expect(() => new Harness(config({ ...cfg(), secagg: secaggOptions({ graph: 'complete' }) }))).not.toThrow();
  });

  it('fedadam with the int8 codec runs a whole secure round', async () => {
    const f = new Fleet({ nodes: 6, cfg: { strategy: strategy({ strategy: 'fedadam' }), codec: 'int8' }, seed: 8 }).start();
    expect(f.h.fitTasks().length).toBe(0);
    await f.round(1);
    expect(f.record(1)).toMatchObject({ accepted: true, modelVersion: 2, secagg: { aborted: null } });
    expect(f.model()).not.toEqual(initial());
  });

  it('refuses bad secure-aggregation options with FEDMQ_BAD_CONFIG', () => {
    for (const o of [{ thresholdFraction: 0 }, { thresholdFraction: 1.5 }, { neighbours: 3 }, { neighbours: 0 }]) {
      expect(() => new Harness(config({ secagg: secaggOptions(o) }))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    }
  });
});
