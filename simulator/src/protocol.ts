import type { NamedTensor } from '@fedmq/protocol';
import type { AttackName, AttackParams } from './attacks.ts';
import type { ChaosOptions } from './chaos.ts';

/** Messages between the simulator's main thread and its worker threads. */
export interface WorkerInit {
  brokerUrl: string;
  job: string;
  /** This worker's nodes; node k's examples are `count` rows from row `offset` of `x` and `y`. */
  nodes: { nodeId: string; offset: number; count: number }[];
  /** This worker's nodes' examples, node after node: features (Float32, row-major) and labels (Int32). Nodes hold views, not copies. */
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  /** Nodes connecting at once (the worker starts the next one as one connects). */
  connectConcurrency: number;
  featureShape: number[];
  numClasses: number;
  logLevel: string;
  backend?: 'tensorflow' | 'wasm' | 'cpu';
  /** Malicious node ids of this worker and their attack. */
  malicious?: string[];
  attack?: { name: AttackName; params?: AttackParams };
  seed: number;
  /** Faults to inject (chaos.ts). */
  chaos?: ChaosOptions;
  /** MQTT credentials and TLS material per node id of this worker (strings only: worker data is cloned). */
  mqtt?: Record<string, SimulatedNodeMqtt>;
}

/** A simulated node's MQTT username, password and TLS PEM texts (mqtt.js `username`, `password`, `ca`, `cert`, `key`). */
export interface SimulatedNodeMqtt {
  username?: string;
  password?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export type FromWorker =
  | { type: 'ready'; backend: string; nodes: number }
  /** A node connected and announced itself for the first time. */
  | { type: 'connected'; nodeId: string }
  /** A node's MQTT client reported an error (`connack timeout`, `read ECONNRESET` …); it reconnects on its own. */
  | { type: 'connectionError'; nodeId: string; message: string }
  | { type: 'publishing'; nodeId: string; round: number; taskId: number; bytes: number }
  | { type: 'updated'; nodeId: string; round: number; loss: number; trainMs: number; bytes: number }
  | { type: 'problem'; nodeId: string; code: string; message: string }
  | { type: 'stopped' }
  | { type: 'fatal'; message: string }
  /** ALIE: a colluder's honest delta for its round (buffers transferred), see alie.ts. */
  | { type: 'alie'; nodeId: string; runId: string; round: number; cohort?: number; deadline: number; timeoutMs: number; tensors: NamedTensor[] }
  /** ALIE: a colluder received a fit task (it will post its delta for this round). */
  | { type: 'alie-task'; nodeId: string; runId: string; round: number };

export type ToWorker =
  | { type: 'stop' }
  /** ALIE: the crafted delta the colluder `nodeId` sends for its round. */
  | { type: 'alie'; nodeId: string; runId: string; round: number; tensors: NamedTensor[] };
