import { ErrorCodes, FedmqError, seededRng, type NamedTensor } from '@fedmq/protocol';

/**
 * Faults `fedmq simulate --chaos SPEC` injects into a simulated fleet, to check that training
 * completes and no update is lost or counted twice when links and devices misbehave:
 * - `dropout`: probability that a selected node drops out of a round: after training it loses its
 *   connection (no DISCONNECT: the broker publishes its Last Will `offline`, so the coordinator
 *   stops waiting for it) and sends nothing; it reconnects with backoff for the next rounds.
 * - `stragglers` / `stragglerMs`: probability that a node is slow in a round, and the most it then
 *   waits before uploading (uniform in [0, stragglerMs]), ms.
 * - `uploadKill`: probability that a node's connection is cut while its update is in flight: the
 *   QoS 1 publish is repeated after the reconnect (persistent session), so the coordinator may
 *   receive it twice and must fold it in once.
 * - `brokerRestartRound`: the embedded broker is stopped and started again (same port, same
 *   persistence) in the middle of this round, after its first accepted update.
 * - `slow` / `slowFactor`: fraction of the nodes that are slow devices (chosen once per node, by
 *   the seed), and how many times slower: a slow node's fit takes `slowFactor` × its training time
 *   (it waits (slowFactor − 1) × its measured training time before uploading). Default factor 5.
 *
 * Every decision is a function of (seed, nodeId, round): the same seed gives the same faults.
 */
export interface ChaosOptions {
  dropout?: number;
  stragglers?: number;
  stragglerMs?: number;
  uploadKill?: number;
  brokerRestartRound?: number;
  slow?: number;
  slowFactor?: number;
}

/** `--chaos default`: every fault at once (no slow devices). */
export const DEFAULT_CHAOS: ChaosOptions = { dropout: 0.1, stragglers: 0.2, stragglerMs: 2000, uploadKill: 0.1, brokerRestartRound: 2 };

const KEYS: Record<string, keyof ChaosOptions> = {
  dropout: 'dropout', stragglers: 'stragglers', 'straggler-ms': 'stragglerMs', 'upload-kill': 'uploadKill', 'broker-restart': 'brokerRestartRound',
  slow: 'slow', 'slow-factor': 'slowFactor',
};

/**
 * Parses `default`, or `key=value` pairs separated by commas: `dropout=0.1`, `stragglers=0.2`,
 * `straggler-ms=2000`, `upload-kill=0.1`, `broker-restart=ROUND`, `slow=0.3`, `slow-factor=5` (e.g.
 * `default,dropout=0` for everything but dropouts).
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown key or a value out of range (probabilities in
 *   [0, 1), straggler-ms ≥ 0, broker-restart an integer ≥ 1, slow-factor ≥ 1).
 */
export function parseChaos(spec: string): ChaosOptions {
  const out: ChaosOptions = {};
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    if (part === 'default') {
      Object.assign(out, DEFAULT_CHAOS);
      continue;
    }
    const [k, v, ...rest] = part.split('=');
    const key = KEYS[k];
    const n = Number(v);
    if (!key || rest.length > 0 || v === undefined || !Number.isFinite(n)) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `bad chaos setting ${JSON.stringify(part)} (default, ${Object.keys(KEYS).map((x) => `${x}=…`).join(', ')})`);
    }
    const ok = key === 'stragglerMs' ? n >= 0 : key === 'brokerRestartRound' ? Number.isInteger(n) && n >= 1 : key === 'slowFactor' ? n >= 1 : n >= 0 && n < 1;
    if (!ok) throw new FedmqError(ErrorCodes.BAD_CONFIG, `chaos ${k} out of range: ${v}`);
    out[key] = n;
  }
  return out;
}

/** What happens to one node in one round. */
export interface ChaosDecision {
  dropout: boolean;
  /** Wait before uploading, ms (0: not a straggler). */
  delayMs: number;
  uploadKill: boolean;
  /** The node is a slow device (the same in every round). */
  slow: boolean;
}

/** Whether `nodeId` is one of the slow devices, a pure function of (seed, nodeId). */
export function isSlowNode(o: ChaosOptions, seed: number, nodeId: string): boolean {
  let h = seed ^ 0x51_0e_d0_5e;
  for (let i = 0; i < nodeId.length; i++) h = Math.imul(h ^ nodeId.charCodeAt(i), 16777619);
  return seededRng(h >>> 0)() < (o.slow ?? 0);
}

/** The faults of `nodeId` in `round`, a pure function of (seed, nodeId, round). */
export function chaosFor(o: ChaosOptions, seed: number, nodeId: string, round: number): ChaosDecision {
  let h = seed ^ 0x27d4eb2f;
  for (let i = 0; i < nodeId.length; i++) h = Math.imul(h ^ nodeId.charCodeAt(i), 16777619);
  const rng = seededRng((h ^ Math.imul(round, 0x9e3779b1)) >>> 0);
  const dropout = rng() < (o.dropout ?? 0);
  const straggle = rng() < (o.stragglers ?? 0);
  const delay = rng() * (o.stragglerMs ?? 0);
  const uploadKill = rng() < (o.uploadKill ?? 0);
  return { dropout, delayMs: straggle ? delay : 0, uploadKill, slow: isSlowNode(o, seed, nodeId) };
}

/** The part of an edge node the faults act on. */
export interface ChaosTarget {
  /** Cuts the connection without DISCONNECT (EdgeNode.dropConnection). */
  dropConnection(): void;
}

/**
 * Wraps a node's `transformDelta` (or none) with the node's faults for each round: drop out
 * (cut the link, then fail the round with FEDMQ_TRAINING_FAILED "chaos: dropped out"), straggle
 * or be a slow device (wait; the wait does not hold the worker's trainer, as a slow device does
 * not slow the others), or cut the link just after the update is handed to MQTT.
 */
export function withChaos<C extends { trainMs?: number }>(
  o: ChaosOptions, seed: number, nodeId: string, node: ChaosTarget,
  inner?: (delta: NamedTensor[], round: number, ctx: C) => NamedTensor[] | Promise<NamedTensor[]>,
): (delta: NamedTensor[], round: number, ctx: C) => Promise<NamedTensor[]> {
  return async (delta, round, ctx) => {
    const d = chaosFor(o, seed, nodeId, round);
    if (d.dropout) {
      node.dropConnection();
      throw new FedmqError(ErrorCodes.TRAINING_FAILED, `chaos: ${nodeId} dropped out of round ${round}`);
    }
    const slowMs = d.slow ? ((o.slowFactor ?? 5) - 1) * (ctx.trainMs ?? 0) : 0;
    if (d.delayMs + slowMs > 0) await new Promise((resolve) => setTimeout(resolve, d.delayMs + slowMs));
    const out = inner ? await inner(delta, round, ctx) : delta;
    // the node encodes and publishes right after this resolves; the cut lands while the QoS 1
    // publish waits for its PUBACK
    if (d.uploadKill) setTimeout(() => node.dropConnection(), 0);
    return out;
  };
}
