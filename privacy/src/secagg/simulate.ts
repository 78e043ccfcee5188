import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { cryptoRandom, type RandomSource } from '../random.ts';
import { SecAggClient } from './client.ts';
import { defaultNeighbours, neighbourGraph, nodeThreshold, type SecAggGraphKind } from './graph.ts';
import type { SecAggContext } from './primitives.ts';
import { SecAggServer, type SecAggResult } from './server.ts';

/** A whole SecAgg(+) round run in memory, without MQTT (tests, the inversion demo, bench:secagg). */
export interface SimulateSecAggOptions {
  /** Node id → its input: d words < 2^bits. */
  inputs: Map<string, Uint32Array>;
  bits: number;
  /** Neighbours per node (even); default {@link defaultNeighbours} for the cohort and `thresholdFraction`. */
  neighbours?: number;
  graph?: SecAggGraphKind;
  /** θ: the global threshold is max(2, ⌈θ·n⌉), a node's t_i = ⌊θ·k_i⌋ + 1 (at least 2). Default 0.5. */
  thresholdFraction?: number;
  ctx?: SecAggContext;
  /** Nodes that advertise keys and share them, then drop before sending their masked input (U2 \ U3). */
  dropBeforeMasked?: Iterable<string>;
  /** Nodes that send their masked input, then drop before the unmask (U3 \ U4). */
  dropBeforeUnmask?: Iterable<string>;
  /** Randomness of the graph (the nodes' secrets always come from the CSPRNG). */
  random?: RandomSource;
  /** Called with each stage's wall time, ms: node-side (summed over nodes) and coordinator-side. */
  onTiming?: (stage: string, side: 'nodes' | 'coordinator', ms: number) => void;
}

/** What a simulated round returns: the server's result and what it received from each node. */
export interface SimulatedSecAgg extends SecAggResult {
  /** Node id → its masked input, as the coordinator received it. */
  masked: Map<string, Uint32Array>;
  neighbours: number;
  threshold: number;
}

/**
 * Runs one round of SecAgg(+) with the given inputs and dropouts.
 * @throws FedmqError FEDMQ_SECAGG_ABORT below the threshold; FEDMQ_SECAGG_RANGE on bad sizes
 */
export async function simulateSecAgg(o: SimulateSecAggOptions): Promise<SimulatedSecAgg> {
  const ids = [...o.inputs.keys()].sort();
  if (ids.length < 3) throw new FedmqError(ErrorCodes.SECAGG_RANGE, 'secure aggregation needs at least 3 nodes (each shares its secrets, 2 of at least 2 neighbours)');
  const dims = o.inputs.get(ids[0])!.length;
  const theta = o.thresholdFraction ?? 0.5;
  const kind = o.graph ?? 'harary';
  const k = kind === 'complete' ? ids.length - 1 : Math.min(o.neighbours ?? defaultNeighbours(ids.length, theta), ids.length - 1);
  const graph = neighbourGraph(ids, k, kind, o.random ?? cryptoRandom());
  const thresholds = new Map(ids.map((id) => [id, nodeThreshold(graph.get(id)!.length, theta)]));
  const threshold = Math.max(2, Math.ceil(theta * ids.length));
  const ctx = o.ctx ?? { job: 'sim', runId: 'sim', round: 1 };
  const server = new SecAggServer({ ctx, bits: o.bits, dims, graph, thresholds, threshold });
  const clients = new Map(ids.map((id) => [id, new SecAggClient(id, ctx)]));
  const dropMasked = new Set(o.dropBeforeMasked ?? []);
  const dropUnmask = new Set(o.dropBeforeUnmask ?? []);
  const time = (stage: string, side: 'nodes' | 'coordinator', t0: number) => o.onTiming?.(stage, side, performance.now() - t0);
  const masked = new Map<string, Uint32Array>();

  let t0 = performance.now();
  const adv = new Map(ids.map((id) => [id, server.advertiseRequest(id)]));
  time('advertise-keys', 'coordinator', t0);
  t0 = performance.now();
  for (const id of ids) {
    const reply = clients.get(id)!.advertise(adv.get(id)!);
    server.onAdvertise(id, reply);
  }
  time('advertise-keys', 'nodes', t0);
  const u1 = server.closeAdvertise();

  for (const id of u1) {
    const req = server.shareKeysRequest(id);
    t0 = performance.now();
    const reply = await clients.get(id)!.shareKeys(req);
    time('share-keys', 'nodes', t0);
    t0 = performance.now();
    server.onShareKeys(id, reply);
    time('share-keys', 'coordinator', t0);
  }
  const u2 = server.closeShareKeys();

  for (const id of u2) {
    const req = server.maskedInputRequest(id);
    if (dropMasked.has(id)) continue;
    t0 = performance.now();
    const y = clients.get(id)!.maskInput(req, o.inputs.get(id)!);
    time('masked-input', 'nodes', t0);
    masked.set(id, y);
    t0 = performance.now();
    server.onMaskedInput(id, y);
    time('masked-input', 'coordinator', t0);
  }
  const u3 = server.closeMaskedInput();

  for (const id of u3) {
    if (dropUnmask.has(id)) continue;
    const req = server.unmaskRequest(id);
    t0 = performance.now();
    const reply = clients.get(id)!.unmask(req);
    time('unmask', 'nodes', t0);
    server.onUnmask(id, reply);
  }
  t0 = performance.now();
  const result = await server.finish();
  time('unmask', 'coordinator', t0);
  return { ...result, masked, neighbours: k, threshold };
}
