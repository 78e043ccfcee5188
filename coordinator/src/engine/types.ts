import type { CodecName, CodecParams, DownlinkDtype, FedmqError, NamedTensor, RoundRecord, StageName } from '@fedmq/protocol';
import type { Strategy, StrategyState } from '../strategy.ts';
import type { PrivacyLedger, PrivacyLedgerState } from '../privacy/ledger.ts';
import type { SecAggOptions } from './secagg.ts';
import type { DistributedDpLedger } from '../privacy/distributed.ts';

/**
 * The round engine's vocabulary (docs/architecture.md, "Round engine"): the coordinator is a pure
 * state machine, `RoundMachine.handle(event, now) → effects`. Events come in from adapters (MQTT
 * messages, timers, the central evaluation, stop); effects go out to them (publish, schedule a
 * timer, evaluate on the test set, persist, emit). The machine does no I/O and reads no clock:
 * `now` (ms since the epoch, on whatever clock the adapter injects) comes with every event.
 */

/** What happens to the machine. */
export type EngineEvent =
  /** Begin the run: publish the initial model and statuses. Once. */
  | { type: 'start' }
  /** An MQTT message on a topic the coordinator subscribes to (whole payload: chunked updates are reassembled by the adapter). */
  | { type: 'message'; topic: string; payload: Uint8Array; /** Bytes it took on the wire (its chunks); default its length. */ wireBytes?: number }
  /** A message the adapter refused before it reached the machine (e.g. a chunked transfer that failed), to be counted. */
  | { type: 'rejected'; error: FedmqError; nodeId?: string }
  /** A timer scheduled with a `timer` effect fired. */
  | { type: 'timer'; id: string }
  /** The work of a `compute` effect finished: its value, or the error it threw. */
  | { type: 'computed'; id: string; value?: unknown; error?: unknown }
  /** The central evaluation asked for by an `evaluate` effect finished (NaN when it failed). */
  | { type: 'evaluated'; version: number; loss: number; accuracy: number }
  /** The adapter reconnected to the broker: republish what a restarted broker may have lost. */
  | { type: 'reconnected' }
  /** End the run after the current stage (the open stage closes now, as at its deadline). */
  | { type: 'stop' };

/** What the machine asks its adapters to do, in order. */
export type Effect =
  | { type: 'publish'; topic: string; payload: Buffer; qos: 0 | 1; retain: boolean }
  /** Fire a `timer` event with this id at `at` (ms, the injected clock); replaces a timer of the same id. */
  | { type: 'timer'; id: string; at: number }
  | { type: 'cancelTimer'; id: string }
  /** Run `run` (CPU work the machine cannot do synchronously, e.g. secure aggregation's unmasking); answer with a `computed` event of the same id. */
  | { type: 'compute'; id: string; run: () => Promise<unknown> }
  /** Evaluate `weights` on the central test set; answer with an `evaluated` event. */
  | { type: 'evaluate'; version: number; weights: readonly NamedTensor[] }
  /** Write the checkpoint (and history.json) atomically. */
  | { type: 'persist'; checkpoint: CoordinatorCheckpoint }
  | { type: 'emit'; event: EngineNotice }
  /** The run is over: `done` (all rounds), `stopped` (stop event), or `failed` with the error. */
  | { type: 'finish'; outcome: 'done' | 'stopped' | 'failed'; error?: FedmqError };

/** Notices for the adapter's listeners (the coordinator's events). */
export type EngineNotice =
  /** Also what `coordinator/stage` says: the stage's cohort, its deadline (ms, the injected clock; none for stages that wait for no node) and the nodes online. */
  | { type: 'stage'; round: number; stage: StageName; cohort: number; deadline?: number; online: number }
  | { type: 'round'; record: RoundRecord }
  | { type: 'accepted'; nodeId: string; round: number; bytes: number; taskId: number; /** The node's local training wall time, ms (its update's `metrics.trainMs`). */ trainMs: number }
  | { type: 'rejected'; error: FedmqError; nodeId?: string; round: number };

/** FedBuff's staleness weight s(τ) (Nguyen et al. 2022, §3): `polynomial:A` = (1 + τ)^−A, `constant` = 1. */
export type StalenessFunction = { kind: 'polynomial'; exponent: number } | { kind: 'constant' };

/** Asynchronous buffered aggregation (FedBuff, Nguyen et al. 2022, "Federated Learning with Buffered Asynchronous Aggregation", AISTATS, Algorithm 1). */
export interface AsyncOptions {
  /** K: accepted updates per server step. */
  bufferSize: number;
  /** C: fit tasks in flight at once. */
  concurrency: number;
  staleness: StalenessFunction;
  /** S: updates trained on a model more than S versions old are rejected (FEDMQ_TOO_STALE). */
  maxStaleness: number;
}

/** Everything the machine needs to know about the job; all validated by {@link RoundMachine}'s constructor. */
export interface EngineConfig {
  job: string;
  runId: string;
  /** Model architecture by registry name. */
  model: string;
  /** `sync` rounds or `async` FedBuff server steps. */
  mode: 'sync' | 'async';
  /** Accepted rounds (sync) or server steps (async) to run, ≥ 1. */
  rounds: number;
  strategy: Strategy;
  /** Nodes that must be online before a round starts (Flower's `minAvailableNodes`). */
  minAvailableNodes: number;
  /** Accepted updates a round needs to count (else the model is kept and the round retried). Default 1. */
  minAcceptedUpdates: number;
  /** Accepted updates a round needs as a fraction of the nodes it selected, [0, 1]. Default 0. */
  minCompletionRate: number;
  /** Over-selection (Bonawitz et al. 2019 §2.2): select ⌈(1 + f)·k⌉, close once k reported. Default 0. */
  overSelection: number;
  /** Failed rounds in a row before the run aborts with FEDMQ_ROUND_FAILED. */
  maxRoundRetries: number;
  /** Deadline of each stage that waits for nodes (and of each async fit task), ms. */
  deadlineMs: number;
  codec: CodecName;
  codecParams?: CodecParams;
  maxPayloadBytes?: number;
  downlink: DownlinkDtype;
  /** Seed of node selection (the initial model is the adapter's). */
  seed: number;
  /** Whether a central test set exists (an `evaluate` effect after every model). */
  centralEval: boolean;
  /** Fraction of online nodes sent an evaluate task after every round, [0, 1]; 0 = no federated evaluation. */
  evaluateFraction: number;
  /** Held-out fraction of every node's data named in every task, [0, 0.9]. */
  valFraction: number;
  /** Batch size of federated evaluation. */
  evaluateBatchSize: number;
  /** FedBuff settings (mode `async` only). */
  async?: AsyncOptions;
  /** Free-form description for `coordinator/status` (no secrets, no local paths). */
  describe: Record<string, unknown>;
  /** Differential privacy (sync mode): the ledger the strategy's Poisson selector and DP aggregator share (`withDp`). */
  privacy?: PrivacyLedger;
  /** Secure aggregation (sync mode, docs/privacy.md "Secure aggregation"): the round gains the advertise-keys, share-keys and unmask stages. */
  secagg?: SecAggOptions;
  /** Distributed DP under secure aggregation: reports the round's ε (absent otherwise). */
  distributedDp?: DistributedDpLedger;
}

/**
 * Everything a coordinator needs to continue a run after a crash, saved after each round in
 * `checkpoint.msgpack` (MessagePack; the weights as the global model's float32 wire tensors,
 * docs/protocol.md §4). Format version 2 (protocol v2's engine).
 */
export interface CoordinatorCheckpoint {
  format: 'fedmq-checkpoint';
  v: 2;
  job: string;
  /** The run that wrote it. */
  runId: string;
  model: string;
  seed: number;
  mode: 'sync' | 'async';
  /** Last round (server step) closed. */
  round: number;
  modelVersion: number;
  /** Failed rounds in a row at the end of `history`. */
  failedInARow: number;
  /** Draws taken from the run's selection generator, to continue its sequence. */
  rngDraws: number;
  /** Draws taken from the federated-evaluation generator. */
  evalRngDraws: number;
  /** Last task id used. */
  taskId: number;
  strategy: string;
  /** The strategy's state (server optimizer), null when stateless. */
  strategyState: StrategyState | null;
  history: RoundRecord[];
  /** The global model after `round`. */
  weights: NamedTensor[];
  /** Differential privacy: the accountant and the clip norm after `round` (absent without DP). */
  privacy?: PrivacyLedgerState;
  /** Time of the write, ms since the epoch (the machine's clock). */
  ts: number;
}
