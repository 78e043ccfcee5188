/**
 * Secure aggregation cost: one round of SecAgg (Bonawitz et al. 2017, CCS) on the SecAgg+ graph
 * (Bell et al. 2020, CCS) for n nodes with random d-dimensional updates, through the real
 * `SecAggClient` / `SecAggServer` of @fedmq/privacy and the real wire messages of
 * @fedmq/protocol, in one process (nodes one after the other; no broker).
 *
 *   npm run bench:secagg [-- --quick | --nodes 100,1000 --dims 100000,199210 --dropouts 0,0.3 --theta 0.5 --out bench/results/secagg.json]
 *
 * Each row: the FedAvg encoding of docs/protocol.md §12.4 (clip 1, 16-bit levels: d + 1 words,
 * the last the node's example weight), b = modulusBits(n, {clip 1, levelBits 16}) bits per word,
 * θ = 0.5 (global threshold ⌈θ·n⌉, a node's ⌊θ·k_i⌋ + 1), and the default neighbour count
 * k = min(n − 1, defaultNeighbours(n, θ)) — what the coordinator picks (coordinator/src/engine/secagg.ts).
 * A fraction `dropout` of the nodes (chosen by a seeded shuffle) advertises keys and shares them,
 * then drops before sending its masked input; the coordinator removes their pairwise masks.
 *
 * Bytes are what MQTT carries: for every message of the secure-aggregation stages, the payload
 * built by the real encoders — the four tasks on nodes/{id}/task as encodeJson of the objects
 * `RoundMachine.sendSecAggTask` / `sendFitTask` build (keys and ciphertexts base64), the three
 * answers on nodes/{id}/secagg (encodeSecAggAnswer, MessagePack), the masked input as an Update
 * (encodePacked, secagg.data = packBits(masked, b), no tensors) on nodes/{id}/update — wrapped in
 * its MQTT 3.1.1 PUBLISH packet, QoS 1, as mqtt-packet's `generate` writes it (fixed header,
 * topic, packet id, payload; PUBACKs are not counted). The global model download is not counted:
 * it is the same with or without secure aggregation. bytesUpPerNode / bytesDownPerNode: mean
 * over the nodes that took part to the end (U3). plainBytesPerNode: the PUBLISH packet of the
 * same Update with secagg.data = packBits(levels, 16) — the node's unmasked d + 1 words at 16 bits
 * instead of b — i.e. a plain quantized upload of the same coordinates. plainFitTaskBytes: the
 * fit task of a round without secure aggregation (the down-link comparison).
 *
 * Every message goes through its decoder too (node side: decodeJson with NodeTaskSchema;
 * coordinator side: decodeSecAggAnswer, decodeUpdate + unpackBits), so the stages are fed what
 * came off the wire, and the bench checks that the unmasked sum equals the plain sum of the
 * survivors' inputs (it throws otherwise).
 *
 * Time (performance.now(), one thread): nodeMs = mean over U3 of a node's own steps, each from
 * decoding its task to its encoded answer: advertise (2 key pairs), share-keys (base64 keys,
 * X25519 + HKDF per neighbour, Shamir split of b and s_sk, one seal per neighbour), masked input
 * (base64 shares, open them, k + 1 PRG expansions of d + 1 words, packBits, encodePacked of the
 * Update) and unmask. The quantization of the float delta (secaggEncode, one CSPRNG double per
 * coordinate) is `quantizeMs`, not in nodeMs: a plain quantized upload pays it too.
 * coordinatorMs = the SecAggServer calls (graph and constructor, every *Request / on* / close*,
 * finish()); `finishMs` is finish() alone; the coordinator's encoding and decoding of the
 * messages is `coordinatorWireMs`, not in coordinatorMs. prgMs / agreeMs: the median of one
 * addPrg over d + 1 words and of one deriveKey (X25519 + HKDF), to read the node time against.
 *
 * Prints a markdown table and, for the default matrix (or with --out), writes
 * [{nodes, neighbours, dims, dropout, nodeMs, coordinatorMs, bytesUpPerNode, bytesDownPerNode, plainBytesPerNode, ...}].
 * --quick: n = 100 only (4 rows, about 2 minutes); prints, writes only with --out. The full matrix took
 * 32.5 minutes on the 2-core development machine (n = 1,000 rows 6–10 minutes each; docs/secagg-bench.md).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname } from 'node:path';
import { generate } from 'mqtt-packet';
import {
  SecAggClient, SecAggServer, addPrg, cryptoRandom, defaultNeighbours, deriveKey, generateKeyPair, neighbourGraph, nodeThreshold, packBits, randomSeed,
  secaggBits, secaggDims, secaggEncode, unpackBits,
} from '@fedmq/privacy';
import {
  NodeTaskSchema, PROTOCOL_VERSION, createRng, decodeJson, decodeSecAggAnswer, decodeUpdate, encodeJson, encodePacked, encodeSecAggAnswer, topics,
  type AdvertiseKeysTask, type FitTask, type NodeTask, type SecAggAnswer, type SecAggEncoding, type ShareKeysTask, type UnmaskTask, type UpdateMessage,
} from '@fedmq/protocol';
import { DEFAULT_JOB } from '@fedmq/simulator';
import { arg } from './lib.ts';

/** One row of bench/results/secagg.json. */
interface SecAggRow {
  nodes: number;
  /** k: neighbours per node (n − 1: the complete graph). */
  neighbours: number;
  /** d: model parameters (the input has d + 1 words). */
  dims: number;
  /** Fraction of the nodes that dropped after share-keys. */
  dropout: number;
  nodeMs: number;
  coordinatorMs: number;
  bytesUpPerNode: number;
  bytesDownPerNode: number;
  plainBytesPerNode: number;
  /** b: bits per masked word. */
  bits: number;
  /** t_i of a node with k neighbours, and the global threshold t. */
  nodeThreshold: number;
  threshold: number;
  /** bytesUpPerNode / plainBytesPerNode. */
  ratio: number;
  /** |U3|: nodes whose input is in the sum (the means are over them). */
  survivors: number;
  /** Mean bytes of each message of a node in U3 (PUBLISH packets). */
  bytesPerMessage: {
    advertiseTask: number; advertiseAnswer: number; shareKeysTask: number; shareKeysAnswer: number; fitTask: number; maskedUpdate: number; unmaskTask: number; unmaskAnswer: number;
  };
  /** PUBLISH packet of the fit task of a round without secure aggregation. */
  plainFitTaskBytes: number;
  /** Mean ms per node and stage (their sum is nodeMs). */
  nodeStageMs: { advertise: number; shareKeys: number; maskedInput: number; unmask: number };
  quantizeMs: number;
  finishMs: number;
  coordinatorWireMs: number;
  /** Median of one addPrg over d + 1 words at b bits, and of one deriveKey. */
  prgMs: number;
  agreeMs: number;
  /** Wall time of the whole row, s, and the 1-minute load average at its start and end (other processes share the 2 cores). */
  seconds: number;
  load: [number, number];
  sumExact: true;
}

const QUICK = process.argv.includes('--quick');
const list = (name: string, def: string) => arg(name, def).split(',').map((s) => {
  const v = Number(s.trim());
  if (!Number.isFinite(v) || s.trim() === '') throw new RangeError(`--${name}: ${JSON.stringify(s)} is not a number`);
  return v;
});
const NODES = list('nodes', QUICK ? '100' : '100,1000');
const DIMS = list('dims', '100000,199210');
const DROPOUTS = list('dropouts', '0,0.3');
const THETA = Number(arg('theta', '0.5'));
const explicitOut = arg('out', '');
const defaultMatrix = !QUICK && !['--nodes', '--dims', '--dropouts', '--theta'].some((f) => process.argv.includes(f));
const OUT = explicitOut || (defaultMatrix ? 'bench/results/secagg.json' : '');
const SEED = DEFAULT_JOB.seed;
const JOB = DEFAULT_JOB.job;
const LEVEL_BITS = 16;
const CLIP = 1;
const MAX_EXAMPLES = 600;
const DEADLINE_MS = DEFAULT_JOB.deadlineMs;

/** The MQTT 3.1.1 PUBLISH packet of `payload` on `topic`, QoS 1, as a client or broker writes it. */
function publishBytes(topic: string, payload: Buffer): number {
  return generate({ cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false, messageId: 4242 }, { protocolVersion: 4 }).length;
}

const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
const fromBase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median ms of one addPrg over `words` words and of one deriveKey. */
function primitives(words: number, bits: number): { prgMs: number; agreeMs: number } {
  const target = new Uint32Array(words);
  const prg: number[] = [];
  for (let i = 0; i < 15; i++) {
    const seed = randomSeed();
    const t0 = performance.now();
    addPrg(target, seed, 1, bits);
    prg.push(performance.now() - t0);
  }
  const a = generateKeyPair();
  const agree: number[] = [];
  for (let i = 0; i < 200; i++) {
    const b = generateKeyPair(); // a fresh peer key each time, as in a round (no cached key object)
    const t0 = performance.now();
    deriveKey('mask', { job: JOB, runId: 'r', round: 1 }, 'node-000', 'node-001', a.secretKey, b.publicKey);
    agree.push(performance.now() - t0);
  }
  return { prgMs: median(prg), agreeMs: median(agree) };
}

async function runRow(n: number, params: number, dropout: number): Promise<SecAggRow> {
  const rowStart = performance.now();
  const loadStart = loadavg()[0];
  const width = Math.max(3, String(n - 1).length);
  const ids = Array.from({ length: n }, (_, i) => `node-${String(i).padStart(width, '0')}`);
  const runId = `run-${Date.now().toString(36)}`;
  const round = 1;
  const modelVersion = 1;
  const modelSha256 = 'f'.repeat(16) + '0123456789abcdef'.repeat(3);
  const encoding: SecAggEncoding = { kind: 'fedavg', clip: CLIP, levelBits: LEVEL_BITS, maxExamples: MAX_EXAMPLES };
  const ctx = { job: JOB, runId, round };
  const rng = createRng(SEED + n + params + Math.round(dropout * 1000));
  let taskId = 0;

  // coordinator: graph, thresholds, server (as coordinator/src/engine/secagg.ts advertiseKeys.enter)
  let coordMs = 0;
  let wireMs = 0;
  const coord = <T>(f: () => T): T => {
    const t0 = performance.now();
    const v = f();
    coordMs += performance.now() - t0;
    return v;
  };
  const wire = <T>(f: () => T): T => {
    const t0 = performance.now();
    const v = f();
    wireMs += performance.now() - t0;
    return v;
  };
  const threshold = Math.max(2, Math.ceil(THETA * n));
  const bits = secaggBits(n, encoding);
  const dims = secaggDims(params, encoding);
  const k = Math.min(n - 1, defaultNeighbours(n, THETA));
  const server = coord(() => {
    const graph = neighbourGraph(ids, k, 'harary');
    const thresholds = new Map(ids.map((id) => [id, Math.min(graph.get(id)!.length, nodeThreshold(graph.get(id)!.length, THETA))]));
    return new SecAggServer({ ctx, bits, dims, graph, thresholds, threshold });
  });

  const now = Date.now();
  const base = (nodeId: string) => ({
    v: PROTOCOL_VERSION, job: JOB, runId, nodeId, taskId: ++taskId, round, modelVersion, modelSha256, modelChunks: undefined,
    deadline: now + DEADLINE_MS, timeoutMs: DEADLINE_MS, valFraction: 0, ts: Date.now(),
  });
  const answerBase = (t: NodeTask) => ({ v: PROTOCOL_VERSION, job: JOB, runId, nodeId: t.nodeId, taskId: t.taskId, round, modelVersion });
  const fitTask = (nodeId: string, secagg?: FitTask['secagg']): FitTask => ({
    ...base(nodeId), stage: 'fit', cohort: n, config: DEFAULT_JOB.fit, codec: 'float32', codecParams: undefined, maxPayloadBytes: undefined,
    updateKind: 'delta', dp: undefined, secagg,
  });

  // per-node accounting
  const up = new Map<string, number>();
  const down = new Map<string, number>();
  const msg = new Map<string, Record<string, number>>();
  const nodeMs = new Map<string, Record<string, number>>();
  const count = (m: Map<string, number>, id: string, stage: string, bytes: number) => {
    m.set(id, (m.get(id) ?? 0) + bytes);
    let r = msg.get(id);
    if (!r) msg.set(id, (r = {}));
    r[stage] = bytes;
  };
  const nodeTime = (id: string, stage: string, ms: number) => {
    let r = nodeMs.get(id);
    if (!r) nodeMs.set(id, (r = {}));
    r[stage] = ms;
  };
  const payloadDown = new Map<string, number>(); // payload bytes a node received (its Update's metrics.bytesDown)
  /** Coordinator → node: the task as published; returns the node's decoded view and the time to decode it. */
  const sendTask = (task: NodeTask, stage: string) => {
    const payload = wire(() => encodeJson(task));
    count(down, task.nodeId, stage, publishBytes(topics.nodeTask(JOB, task.nodeId), payload));
    payloadDown.set(task.nodeId, (payloadDown.get(task.nodeId) ?? 0) + payload.length);
    return payload;
  };
  const clients = new Map(ids.map((id) => [id, new SecAggClient(id, ctx)]));

  // stage 1: advertise keys
  for (const id of ids) {
    const q = coord(() => server.advertiseRequest(id));
    const task: AdvertiseKeysTask = { ...base(id), stage: 'advertise-keys', neighbours: q.neighbours, threshold: q.threshold, bits: q.bits, dims: q.dims, encoding };
    const payload = sendTask(task, 'advertiseTask');
    const t0 = performance.now();
    const got = decodeJson(NodeTaskSchema, payload, 'node task') as AdvertiseKeysTask;
    const reply = clients.get(id)!.advertise({ neighbours: got.neighbours, threshold: got.threshold, bits: got.bits, dims: got.dims });
    const answer = encodeSecAggAnswer({ ...answerBase(got), stage: 'advertise-keys', encPublicKey: reply.encPublicKey, maskPublicKey: reply.maskPublicKey, ts: Date.now() } as SecAggAnswer);
    nodeTime(id, 'advertise', performance.now() - t0);
    count(up, id, 'advertiseAnswer', publishBytes(topics.nodeSecAgg(JOB, id), answer));
    const a = wire(() => decodeSecAggAnswer(answer)) as Extract<SecAggAnswer, { stage: 'advertise-keys' }>;
    coord(() => server.onAdvertise(a.nodeId, { encPublicKey: a.encPublicKey, maskPublicKey: a.maskPublicKey }));
  }
  const u1 = coord(() => server.closeAdvertise());

  // stage 2: share keys
  for (const id of u1) {
    const q = coord(() => server.shareKeysRequest(id));
    const task: ShareKeysTask = wire(() => ({
      ...base(id), stage: 'share-keys' as const, peers: q.peers.map((p) => ({ nodeId: p.nodeId, encPublicKey: b64(p.encPublicKey), maskPublicKey: b64(p.maskPublicKey) })),
    }));
    const payload = sendTask(task, 'shareKeysTask');
    const t0 = performance.now();
    const got = decodeJson(NodeTaskSchema, payload, 'node task') as ShareKeysTask;
    const peers = got.peers.map((p) => ({ nodeId: p.nodeId, encPublicKey: fromBase64(p.encPublicKey), maskPublicKey: fromBase64(p.maskPublicKey) }));
    const reply = await clients.get(id)!.shareKeys({ peers });
    const answer = encodeSecAggAnswer({ ...answerBase(got), stage: 'share-keys', shares: reply.shares.map((x) => ({ to: x.to, ciphertext: x.ciphertext })), ts: Date.now() } as SecAggAnswer);
    nodeTime(id, 'shareKeys', performance.now() - t0);
    count(up, id, 'shareKeysAnswer', publishBytes(topics.nodeSecAgg(JOB, id), answer));
    const a = wire(() => decodeSecAggAnswer(answer)) as Extract<SecAggAnswer, { stage: 'share-keys' }>;
    coord(() => server.onShareKeys(a.nodeId, { shares: a.shares.map((s) => ({ from: a.nodeId, to: s.to, ciphertext: s.ciphertext })) }));
  }
  const u2 = coord(() => server.closeShareKeys());

  // the nodes that drop before their masked input: a seeded shuffle of U2
  const order = [...u2];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const dropped = new Set(order.slice(0, Math.round(dropout * n)));

  // stage 3: the fit task relays the shares; survivors answer with their masked input
  const plainSum = new Uint32Array(dims);
  const plain: number[] = [];
  const quantize: number[] = [];
  const deltaRng = createRng(SEED);
  const delta = new Float32Array(params);
  for (const id of u2) {
    const q = coord(() => server.maskedInputRequest(id));
    const task = wire(() => fitTask(id, { shares: q.shares.map((s) => ({ from: s.from, ciphertext: b64(s.ciphertext) })) }));
    const payload = sendTask(task, 'fitTask');
    if (dropped.has(id)) {
      clients.get(id)!.forget();
      continue;
    }
    // the node's delta after local training: random, mostly inside the clip, a few coordinates beyond it
    for (let i = 0; i < params; i++) delta[i] = (deltaRng() * 2 - 1) * 1.1 * CLIP;
    const numExamples = 1 + Math.floor(rng() * MAX_EXAMPLES);
    const tq = performance.now();
    const input = secaggEncode([{ data: delta }], numExamples, encoding, cryptoRandom());
    quantize.push(performance.now() - tq);
    for (let i = 0; i < dims; i++) plainSum[i] += input[i];

    const t0 = performance.now();
    const got = decodeJson(NodeTaskSchema, payload, 'node task') as FitTask;
    const shares = got.secagg!.shares.map((x) => ({ from: x.from, to: id, ciphertext: fromBase64(x.ciphertext) }));
    const masked = clients.get(id)!.maskInput({ shares }, input);
    const update: UpdateMessage = {
      v: PROTOCOL_VERSION, job: JOB, runId, nodeId: id, taskId: got.taskId, round, modelVersion, numExamples: 1, codec: got.codec, kind: 'delta',
      metrics: { loss: 0, trainMs: 1234.5678, bytesDown: payloadDown.get(id) }, secagg: { data: packBits(masked, bits) }, tensors: [], ts: Date.now(),
    };
    const body = encodePacked(update);
    nodeTime(id, 'maskedInput', performance.now() - t0);
    const topic = topics.nodeUpdate(JOB, id);
    count(up, id, 'maskedUpdate', publishBytes(topic, body));
    // the same Update unmasked, at 16 bits a word: the plain quantized upload
    plain.push(publishBytes(topic, encodePacked({ ...update, secagg: { data: packBits(input, LEVEL_BITS) } })));
    const words = wire(() => {
      const u = decodeUpdate(body);
      return unpackBits(u.secagg!.data, dims, bits);
    });
    coord(() => server.onMaskedInput(id, words));
  }
  const u3 = coord(() => server.closeMaskedInput());

  // stage 4: unmask
  for (const id of u3) {
    const q = coord(() => server.unmaskRequest(id));
    const task: UnmaskTask = { ...base(id), stage: 'unmask', survivors: q.survivors, dropped: q.dropped };
    const payload = sendTask(task, 'unmaskTask');
    const t0 = performance.now();
    const got = decodeJson(NodeTaskSchema, payload, 'node task') as UnmaskTask;
    const reply = clients.get(id)!.unmask({ survivors: got.survivors, dropped: got.dropped });
    const answer = encodeSecAggAnswer({ ...answerBase(got), stage: 'unmask', selfMaskShares: reply.selfMaskShares, maskKeyShares: reply.maskKeyShares, ts: Date.now() } as SecAggAnswer);
    nodeTime(id, 'unmask', performance.now() - t0);
    count(up, id, 'unmaskAnswer', publishBytes(topics.nodeSecAgg(JOB, id), answer));
    const a = wire(() => decodeSecAggAnswer(answer)) as Extract<SecAggAnswer, { stage: 'unmask' }>;
    coord(() => server.onUnmask(a.nodeId, { selfMaskShares: a.selfMaskShares, maskKeyShares: a.maskKeyShares }));
  }
  const tf = performance.now();
  const result = await server.finish();
  const finishMs = performance.now() - tf;
  coordMs += finishMs;

  // the check: the unmasked sum is the plain sum of the survivors' inputs
  const expected = u2.filter((id) => !dropped.has(id));
  if (result.survivors.join() !== expected.join()) throw new Error(`n=${n} d=${params} dropout=${dropout}: survivors differ (${result.survivors.length} vs ${expected.length})`);
  if (result.recovered.length !== dropped.size) throw new Error(`n=${n} d=${params} dropout=${dropout}: ${result.recovered.length} recovered, ${dropped.size} dropped`);
  for (let i = 0; i < dims; i++) {
    if (result.sum[i] !== plainSum[i]) throw new Error(`n=${n} d=${params} dropout=${dropout}: word ${i} of the unmasked sum is ${result.sum[i]}, the plain sum ${plainSum[i]}`);
  }

  const stageMean = (s: string) => mean(u3.map((id) => nodeMs.get(id)![s]));
  const nodeStageMs = { advertise: stageMean('advertise'), shareKeys: stageMean('shareKeys'), maskedInput: stageMean('maskedInput'), unmask: stageMean('unmask') };
  const msgMean = (s: string) => mean(u3.map((id) => msg.get(id)![s]));
  const bytesPerMessage = {
    advertiseTask: msgMean('advertiseTask'), advertiseAnswer: msgMean('advertiseAnswer'), shareKeysTask: msgMean('shareKeysTask'), shareKeysAnswer: msgMean('shareKeysAnswer'),
    fitTask: msgMean('fitTask'), maskedUpdate: msgMean('maskedUpdate'), unmaskTask: msgMean('unmaskTask'), unmaskAnswer: msgMean('unmaskAnswer'),
  };
  const bytesUpPerNode = mean(u3.map((id) => up.get(id)!));
  const plainBytesPerNode = mean(plain);
  const plainFitTaskBytes = publishBytes(topics.nodeTask(JOB, ids[0]), encodeJson(fitTask(ids[0])));
  const prim = primitives(dims, bits);
  return {
    nodes: n, neighbours: k, dims: params, dropout, nodeMs: nodeStageMs.advertise + nodeStageMs.shareKeys + nodeStageMs.maskedInput + nodeStageMs.unmask,
    coordinatorMs: coordMs, bytesUpPerNode, bytesDownPerNode: mean(u3.map((id) => down.get(id)!)), plainBytesPerNode,
    bits, nodeThreshold: nodeThreshold(k, THETA), threshold, ratio: bytesUpPerNode / plainBytesPerNode, survivors: u3.length, bytesPerMessage, plainFitTaskBytes,
    nodeStageMs, quantizeMs: mean(quantize), finishMs, coordinatorWireMs: wireMs, ...prim, seconds: (performance.now() - rowStart) / 1000,
    load: [loadStart, loadavg()[0]], sumExact: true,
  };
}

const started = performance.now();
const load0 = loadavg()[0];
process.stderr.write(`bench:secagg: n ∈ {${NODES.join(', ')}} × d ∈ {${DIMS.join(', ')}} × dropout ∈ {${DROPOUTS.join(', ')}}, θ ${THETA}, node ${process.version}, ${cpus().length} cores, load ${load0.toFixed(2)}\n`);
await runRow(10, 1000, 0.3); // warm-up (JIT, key objects, Shamir tables): not reported
const rows: SecAggRow[] = [];
for (const n of NODES) {
  for (const d of DIMS) {
    for (const p of DROPOUTS) {
      const r = await runRow(n, d, p);
      rows.push(r);
      process.stderr.write(
        `n=${n} d=${d} dropout=${p}: k=${r.neighbours} b=${r.bits}, node ${r.nodeMs.toFixed(1)} ms, coordinator ${(r.coordinatorMs / 1000).toFixed(2)} s, `
        + `up ${r.bytesUpPerNode.toFixed(0)} B (${r.ratio.toFixed(3)}× plain), down ${r.bytesDownPerNode.toFixed(0)} B, sum exact, ${r.seconds.toFixed(1)} s\n`,
      );
    }
  }
}
const totalSeconds = (performance.now() - started) / 1000;

const kb = (b: number) => (b / 1000).toFixed(1);
const f = (v: number, digits = 1) => v.toFixed(digits);
console.log(`secure aggregation (SecAgg, SecAgg+ graph), FedAvg encoding (clip ${CLIP}, ${LEVEL_BITS}-bit levels), θ ${THETA}, node ${process.version}, ${cpus().length} cores, load ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)}`);
console.log('| nodes | k | t_i | d | dropout | b | node ms | advertise / share-keys / masked / unmask ms | coordinator s | finish s | kB up/node | kB down/node | kB plain | up/plain | s |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const s = r.nodeStageMs;
  console.log(
    `| ${r.nodes} | ${r.neighbours} | ${r.nodeThreshold} | ${r.dims} | ${r.dropout} | ${r.bits} | ${f(r.nodeMs)} | ${f(s.advertise, 2)} / ${f(s.shareKeys)} / ${f(s.maskedInput)} / ${f(s.unmask, 2)} `
    + `| ${f(r.coordinatorMs / 1000, 2)} | ${f(r.finishMs / 1000, 2)} | ${kb(r.bytesUpPerNode)} | ${kb(r.bytesDownPerNode)} | ${kb(r.plainBytesPerNode)} | ${f(r.ratio, 3)} | ${f(r.seconds)} |`,
  );
}
console.log(`total ${f(totalSeconds)} s`);
if (OUT) {
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${JSON.stringify(rows, null, 2)}\n`);
  console.log(`wrote ${OUT}`);
}
