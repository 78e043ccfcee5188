import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Dataset, PartitionSpec } from '@fedmq/ml';
import { balance, planNodes, shardOf, type NodePlan, type Shard } from './plan.ts';
import { pickMalicious, type AttackName, type AttackParams } from './attacks.ts';
import type { FromWorker, SimulatedNodeMqtt, WorkerInit } from './protocol.ts';
import type { ChaosOptions } from './chaos.ts';
import { AlieCollusion, type AlieRound } from './alie.ts';

/** Options of {@link startSimulation}. */
export interface SimulationOptions {
  brokerUrl: string;
  job: string;
  /** Number of simulated nodes. */
  nodes: number;
  /** The pooled training set the nodes' local data is cut from. */
  train: Dataset;
  /** Natural group id per example (device, user), for `partition: natural`. */
  groups?: ArrayLike<number>;
  /** Node id prefix of a natural split (`mote` → `mote-1`). */
  groupPrefix?: string;
  partition: PartitionSpec;
  /** Seed of the partition. */
  seed: number;
  /** Worker threads; default one per core. Each runs one tfjs runtime and trains its nodes one at a time. */
  workers?: number;
  /** pino level for the nodes' logs (stderr). Default `warn`. */
  logLevel?: string;
  backend?: 'tensorflow' | 'wasm' | 'cpu';
  /** Fraction of nodes that are malicious, in [0, 1) (default 0), and the attack they make. */
  byzantine?: number;
  attack?: AttackName;
  attackParams?: AttackParams;
  /** Faults to inject into the nodes (chaos.ts; the broker restart is the caller's, see runLocalJob). */
  chaos?: ChaosOptions;
  /** MQTT credentials and TLS for the nodes (docs/security.md): the same for all, or per node id (e.g. username = node id). */
  mqtt?: SimulatedNodeMqtt | ((nodeId: string) => SimulatedNodeMqtt);
  /**
   * Run only shard `index` (0-based) of `count` of the fleet: the fleet of `nodes` nodes is
   * planned whole (same ids, same partition for the same seed), and this process runs the
   * contiguous block of nodes ⌊index·N/count⌋ … ⌊(index+1)·N/count⌋ − 1 ({@link shardOf}).
   * Shards are disjoint; together they are the unsharded fleet. Default: the whole fleet.
   */
  shard?: Shard;
  /** Nodes connecting at once per worker thread (default 16): connects are paced so that each CONNACK arrives within the connect timeout. */
  connectConcurrency?: number;
  /** Called each time one more node has connected and announced itself (`connected` of `total` this process runs). */
  onConnected?: (connected: number, total: number) => void;
}

/** Events of a running {@link Simulation}. */
export interface SimulationEvents {
  /** A node handed its update to MQTT (EdgeNode `publishing`). */
  publishing: [{ nodeId: string; round: number; taskId: number; bytes: number }];
  /** A node's update was acknowledged by the broker (EdgeNode `updated`). */
  updated: [{ nodeId: string; round: number; loss: number; trainMs: number; bytes: number }];
  problem: [{ nodeId: string; code: string; message: string }];
  /** ALIE: the colluders of a round were answered with this crafted delta (alie.ts). */
  alie: [AlieRound];
}

/** A running simulation: N edge nodes in worker threads, each on its own MQTT connection. */
export interface Simulation extends EventEmitter<SimulationEvents> {
  /** The nodes this process runs (with a shard: that shard's nodes only). */
  readonly plan: NodePlan[];
  /** MQTT client errors so far, by message (`connack timeout` …), connects included. */
  readonly connectionErrors: ReadonlyMap<string, number>;
  /** tfjs backend the workers use. */
  readonly backend: string;
  readonly workers: number;
  /** Ids of the malicious nodes (empty without an attack). */
  readonly malicious: ReadonlySet<string>;
  /** Stops every node (each publishes `offline`) and ends the workers. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Spawns `nodes` edge nodes running the same `@fedmq/edge-node` code as a device, spread over
 * worker threads (one per core by default, nodes balanced by numExamples), each node with its own
 * partition of `train` and its own MQTT connection. Resolves once every node is connected and has
 * announced itself. Deterministic for a given seed.
 * @throws FedmqError FEDMQ_BAD_CONFIG on a bad partition; an Error when a worker fails to start.
 */
export async function startSimulation(opts: SimulationOptions): Promise<Simulation> {
  const fleet = planNodes(opts.train, opts.nodes, opts.partition, opts.seed, opts.groups, opts.groupPrefix);
  const plan = opts.shard ? shardOf(fleet, opts.shard) : fleet;
  const groups = balance(plan, opts.workers ?? availableParallelism());
  // chosen on the whole fleet, so a shard's malicious nodes are the unsharded run's
  const malicious = opts.byzantine && opts.attack ? pickMalicious(fleet.map((n) => n.nodeId), opts.byzantine, opts.seed) : new Set<string>();
  const width = opts.train.featureShape.reduce((a, b) => a * b, 1);
  const connectionErrors = new Map<string, number>();
  let connected = 0;

  const emitter = new EventEmitter<SimulationEvents>();
  const alie = opts.attack === 'alie' && malicious.size > 0
    ? new AlieCollusion({ malicious, z: opts.attackParams?.z, onCrafted: (r) => emitter.emit('alie', r) }) : undefined;
  const workers: Worker[] = [];
  let backend = 'unknown';
  const started = groups.map((nodes) => {
    // this worker's nodes' examples, node after node, in one shared buffer the nodes hold views of
    const rows = nodes.reduce((a, n) => a + n.indices.length, 0);
    const x = new SharedArrayBuffer(rows * width * 4);
    const y = new SharedArrayBuffer(rows * 4);
    const xs = new Float32Array(x);
    const ys = new Int32Array(y);
    let offset = 0;
    const placed = nodes.map(({ nodeId, indices }) => {
      for (let i = 0; i < indices.length; i++) {
        const row = indices[i];
        xs.set(opts.train.x.subarray(row * width, (row + 1) * width), (offset + i) * width);
        ys[offset + i] = opts.train.y[row];
      }
      offset += indices.length;
      return { nodeId, offset: offset - indices.length, count: indices.length };
    });
    const init: WorkerInit = {
      brokerUrl: opts.brokerUrl, job: opts.job, nodes: placed, x, y, featureShape: opts.train.featureShape, numClasses: opts.train.numClasses,
      connectConcurrency: opts.connectConcurrency ?? 16,
      logLevel: opts.logLevel ?? 'warn', backend: opts.backend, seed: opts.seed,
      malicious: nodes.filter((n) => malicious.has(n.nodeId)).map((n) => n.nodeId),
      attack: opts.attack ? { name: opts.attack, params: opts.attackParams } : undefined,
      chaos: opts.chaos,
      mqtt: opts.mqtt ? Object.fromEntries(nodes.map((n) => [n.nodeId, typeof opts.mqtt === 'function' ? opts.mqtt(n.nodeId) : opts.mqtt!])) : undefined,
    };
    const w = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: init });
    workers.push(w);
    return new Promise<void>((resolve, reject) => {
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          backend = m.backend;
          resolve();
        } else if (m.type === 'connected') opts.onConnected?.(++connected, plan.length);
        else if (m.type === 'connectionError') connectionErrors.set(m.message, (connectionErrors.get(m.message) ?? 0) + 1);
        else if (m.type === 'publishing') emitter.emit('publishing', m);
        else if (m.type === 'updated') emitter.emit('updated', m);
        else if (m.type === 'problem') emitter.emit('problem', m);
        else if (m.type === 'alie-task') alie?.announce(m);
        else if (m.type === 'alie') {
          const { nodeId, runId, round } = m;
          alie?.submit({ ...m, delta: m.tensors }, (tensors) => w.postMessage({ type: 'alie', nodeId, runId, round, tensors }));
        }
        else if (m.type === 'fatal') reject(new Error(`simulator worker failed: ${m.message}`));
      });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`simulator worker exited with code ${code} before it was ready`)));
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = () => {
    alie?.close();
    stopping ??= Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => void w.terminate().then(() => resolve()), 10_000);
            w.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
            w.on('message', (m: FromWorker) => m.type === 'stopped' && void w.terminate());
            w.postMessage({ type: 'stop' });
          }),
      ),
    ).then(() => undefined);
    return stopping;
  };
  try {
    await Promise.all(started);
  } catch (err) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw err;
  }
  return Object.assign(emitter, { plan, connectionErrors, backend, workers: workers.length, malicious, stop });
}
