import { z } from 'zod';
import { ErrorCodes, FedmqError } from './errors.ts';
import { ID_PATTERN } from './topics.ts';
import { packMessage, unpackMessage, type WireTensor } from './codec.ts';
import { CODEC_NAMES } from './codecs/index.ts';
import type { CodecName, EncodedTensor } from './codecs/types.ts';

/**
 * Message types of protocol v2 with runtime validation (docs/protocol.md §3). Human-facing
 * messages (statuses, tasks, metrics, evaluation results) are JSON; the global model and updates
 * are MessagePack. Every message carries `v` (protocol version) and `job`. Objects are strict
 * where a typo would change the maths silently (task and fit configs: an unknown key is refused
 * with FEDMQ_SCHEMA); elsewhere unknown keys are ignored and dropped (docs/protocol.md §1).
 */
export const PROTOCOL_VERSION = 2 as const;

const id = z.string().regex(ID_PATTERN);
const epochMs = z.number().int().nonnegative();
const finite = z.number().finite();
const count = z.number().int().nonnegative();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const envelope = { v: z.literal(PROTOCOL_VERSION), job: id };

/** States of a run on `coordinator/status` (docs/protocol.md §3.1). */
export const COORDINATOR_STATES = ['running', 'done', 'failed', 'offline'] as const;
/** Stages of the round engine on `coordinator/stage`, in the order a synchronous round runs them. */
export const STAGE_NAMES = ['waiting', 'select', 'advertise-keys', 'share-keys', 'fit', 'unmask', 'aggregate', 'evaluate'] as const;
export type StageName = (typeof STAGE_NAMES)[number];
/** Node states on `nodes/{nodeId}/status`. */
export const NODE_STATES = ['idle', 'training', 'evaluating', 'uploading', 'offline'] as const;
/** Round engine modes: synchronous rounds, or asynchronous buffered aggregation (FedBuff). */
export const ENGINE_MODES = ['sync', 'async'] as const;
export type EngineMode = (typeof ENGINE_MODES)[number];
/** Encodings of the global model on the downlink. */
export const DOWNLINK_DTYPES = ['float32', 'float16'] as const;
/** Largest `valFraction`: at least a tenth of a node's data always trains. */
export const MAX_VAL_FRACTION = 0.9;

/** Parameters of the uplink codec. */
export const CodecParamsSchema = z.strictObject({
  /** top-k: fraction of each tensor's coordinates sent, (0, 1]. */
  k: z.number().positive().max(1).optional(),
  /** int8: values per scale block, 0 = one scale per tensor. */
  blockSize: z.number().int().min(0).max(1 << 20).optional(),
});

/** Local training hyperparameters sent in every fit task (strict: an unknown key is FEDMQ_SCHEMA, never silently ignored). */
export const FitConfigSchema = z.strictObject({
  /** Local epochs E. */
  epochs: z.number().int().min(1).max(1000),
  /** Minibatch size B. */
  batchSize: z.number().int().min(1).max(65536),
  /** SGD learning rate η. */
  learningRate: z.number().positive().finite(),
  /** FedProx proximal coefficient μ ≥ 0 (Li et al. 2020, arXiv:1812.06127): nodes minimise F(w) + (μ/2)·‖w − w_global‖²; absent or 0 = FedAvg. */
  proximalMu: z.number().nonnegative().finite().optional(),
});
export type FitConfig = z.infer<typeof FitConfigSchema>;

/** `coordinator/status` — retained JSON, also the coordinator's Last Will (state `offline`). */
export const CoordinatorStatusSchema = z.object({
  ...envelope,
  /** Identifies one run of the job. */
  runId: id,
  state: z.enum(COORDINATOR_STATES),
  /** `sync` (rounds) or `async` (FedBuff server steps). */
  mode: z.enum(ENGINE_MODES).optional(),
  /** Rounds (server steps) completed. */
  round: count,
  /** Rounds (server steps) the job will run. */
  rounds: count.optional(),
  /** How the coordinator was started (model, rounds, strategy …); informational only. */
  config: z.record(z.string(), z.unknown()).optional(),
  /** When this status was published, epoch ms. */
  ts: epochMs,
});
export type CoordinatorStatus = z.infer<typeof CoordinatorStatusSchema>;

/** `coordinator/stage` — retained JSON: where the round engine is. */
export const StageStatusSchema = z.object({
  ...envelope,
  runId: id,
  /** Round (server step in async mode) the stage belongs to, from 1. */
  round: z.number().int().min(1),
  stage: z.enum(STAGE_NAMES),
  /** Nodes the stage waits for (tasks out; in async mode, tasks in flight). */
  cohort: count,
  /** Nodes online. */
  online: count,
  /** Deadline of the stage, epoch ms (coordinator clock), when it has one. */
  deadline: epochMs.optional(),
  ts: epochMs,
});
export type StageStatus = z.infer<typeof StageStatusSchema>;

/** Device facts a node reports. */
export const DeviceInfoSchema = z.object({
  platform: z.string().max(64),
  arch: z.string().max(64),
  cores: count,
  /** Total memory, MiB. */
  memoryMb: count,
  /** tfjs backend in use: tensorflow, wasm or cpu. */
  backend: z.string().max(64),
});
export type DeviceInfo = z.infer<typeof DeviceInfoSchema>;

/** `nodes/{nodeId}/status` — retained JSON, also the node's Last Will (state `offline`). */
export const NodeStatusSchema = z.object({
  ...envelope,
  nodeId: id,
  state: z.enum(NODE_STATES),
  ts: epochMs,
  /** Number of local examples (training and held-out). */
  numExamples: count.optional(),
  /** Model the node can train (registry name). */
  model: z.string().max(128).optional(),
  device: DeviceInfoSchema.optional(),
  /** The node's last completed fit task: its round, mean training loss and training time (ms). */
  lastRound: z.object({ round: count, loss: finite, trainMs: finite }).optional(),
  /**
   * The task this status is about: the one being worked on (`training`, `uploading`,
   * `evaluating`), or when `idle` the last one handled (answered or given up). Lets the
   * coordinator tell a node that gave a task up (idle, taskId ≥ the task's) from a stale status.
   */
  taskId: z.number().int().min(1).optional(),
  /**
   * The node's local data does not fit the model named here (its feature count, or labels beyond
   * the model's classes): the node gives up every task of that model, and the coordinator of a job
   * training that model does not select it (docs/protocol.md §5). Absent when the data fits (or the
   * node has not been asked yet); a node that does not send it is simply never excluded.
   */
  dataMismatch: z.object({
    /** Error code (§7), e.g. `FEDMQ_MODEL_MISMATCH`. */
    code: z.string().min(1).max(64),
    /** Registry name of the model the data does not fit. */
    model: z.string().max(128),
    /** What does not fit, for people: the data's shape and the model's. */
    message: z.string().max(1024),
  }).optional(),
});
export type NodeStatus = z.infer<typeof NodeStatusSchema>;

const taskBase = {
  ...envelope,
  /** Run the task belongs to; a node resets its per-run state (error feedback, local model) when it changes. */
  runId: id,
  /** The node the task is for: must equal the topic's `{nodeId}`. */
  nodeId: id,
  /** Unique per task within a run, increasing; the answer names it. */
  taskId: z.number().int().min(1),
  /** Round (server step in async mode) the task was issued in, from 1. */
  round: z.number().int().min(1),
  /** Global model version to use: fetched from `models/{modelVersion}` (retained). */
  modelVersion: z.number().int().min(1),
  /** sha256 of that model's tensors (§4): the node checks the fetched model against it. */
  modelSha256: sha256,
  /** When set, the model is on `models/{modelVersion}/chunks/{i}`, i < modelChunks, instead of `models/{modelVersion}`. */
  modelChunks: z.number().int().min(1).optional(),
  /** Coordinator clock, epoch ms: answers after it are rejected. */
  deadline: epochMs,
  /** Time the coordinator allows, ms (use it where clocks differ). */
  timeoutMs: count,
  /** Fraction of the node's examples held out for evaluation (never trained on), [0, 0.9]; the split is fixed per node (docs/protocol.md §5.4). */
  valFraction: z.number().min(0).max(MAX_VAL_FRACTION),
  ts: epochMs,
};

/**
 * Differential privacy modes (docs/privacy.md): the coordinator noises the sum, each node noises
 * its own update, or (with secure aggregation) each node adds a share of the noise so that the sum
 * carries the central level (the distributed discrete Gaussian).
 */
export const DP_MODES = ['central', 'local', 'distributed'] as const;
export type DpMode = (typeof DP_MODES)[number];

/**
 * What a fit task asks of a node under differential privacy (DP-FedAvg, McMahan et al. 2018,
 * arXiv:1710.06963; docs/protocol.md §3.4, §5.7): clip the delta to L2 norm `clipNorm` over all its
 * tensors, add Gaussian noise in local mode, report the clipping bit when adaptive clipping asks.
 */
export const FitDpSchema = z.strictObject({
  /** `central` or `local` (distributed DP travels in the secure-aggregation encoding, §12.4, not here). */
  mode: z.enum(['central', 'local']),
  /** C: the node scales its delta so that ‖Δ‖₂ ≤ C (over all tensors together, before encoding). */
  clipNorm: z.number().positive().finite(),
  /** Local mode only: σ; the node adds N(0, σ²C²) to every coordinate of the clipped delta, from a CSPRNG. */
  noiseMultiplier: z.number().positive().finite().optional(),
  /** Adaptive clipping (Andrew et al. 2021): the update must carry `dp.unclipped`. */
  clipBit: z.boolean().optional(),
});
export type FitDp = z.infer<typeof FitDpSchema>;

/** Base64 (RFC 4648 §4, padded) of exactly `bytes` bytes. */
function base64Of(bytes: number) {
  const len = 4 * Math.ceil(bytes / 3);
  return z.string().length(len).regex(/^[A-Za-z0-9+/]*={0,2}$/).refine((s) => Buffer.from(s, 'base64').length === bytes, `base64 of ${bytes} bytes`);
}
/** Raw bytes (MessagePack bin) of exactly `bytes` bytes. */
function bytesOf(bytes: number) {
  return z.instanceof(Uint8Array).refine((b) => b.length === bytes, `${bytes} bytes`);
}
/** Most neighbours of a node in secure aggregation (Shamir over GF(2^8): 255 shares). */
export const SECAGG_MAX_NEIGHBOURS = 254;
/** Bytes of an X25519 public key, a sealed share pair (nonce ‖ ciphertext ‖ tag) and one Shamir share (docs/protocol.md §12.2). */
export const SECAGG_KEY_BYTES = 32;
export const SECAGG_SEALED_BYTES = 94;
export const SECAGG_SHARE_BYTES = 33;
const neighbourList = z.array(id).max(SECAGG_MAX_NEIGHBOURS);

/**
 * How a node turns its delta into the d words of its secure-aggregation input (docs/protocol.md §12.4):
 * `fedavg`: the delta scaled by r = min(numExamples, maxExamples)/maxExamples, clipped to
 * [−clip, clip] per coordinate and stochastically rounded to 2^levelBits − 1 levels, then r itself
 * rounded onto the levels of [0, 1] as word d; `ddg`: the distributed discrete Gaussian
 * (Kairouz et al. 2021): L2-clipped to clipNorm, scaled by 1/gamma, conditionally rounded
 * (bias beta), plus discrete Gaussian noise of variance sigma2 per coordinate, mod 2^bits.
 */
export const SecAggEncodingSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('fedavg'), clip: z.number().positive().finite(), levelBits: z.number().int().min(1).max(24), maxExamples: z.number().int().min(1) }),
  z.strictObject({
    kind: z.literal('ddg'), clipNorm: z.number().positive().finite(), gamma: z.number().positive().finite(), sigma2: z.number().positive().finite(), beta: z.number().min(0).lt(1),
  }),
]);
export type SecAggEncoding = z.infer<typeof SecAggEncodingSchema>;

/** Stage 1 of secure aggregation: generate two key pairs, advertise their public keys (docs/protocol.md §12.3). */
export const AdvertiseKeysTaskSchema = z.strictObject({
  ...taskBase,
  stage: z.literal('advertise-keys'),
  /** The node's neighbours N(i) in the round's graph (sorted; not the node itself). */
  neighbours: neighbourList,
  /** t_i: shares of the node's secrets needed to rebuild them, 2 ≤ t_i ≤ |N(i)|. */
  threshold: z.number().int().min(2).max(SECAGG_MAX_NEIGHBOURS),
  /** b: inputs, masks and the sum are in Z_{2^b}. */
  bits: z.number().int().min(1).max(32),
  /** d: words in the input. */
  dims: z.number().int().min(1),
  encoding: SecAggEncodingSchema,
});
export type AdvertiseKeysTask = z.infer<typeof AdvertiseKeysTaskSchema>;

/** Stage 2: the node's neighbours in U1 and their public keys; Shamir-share b and s_sk to them, sealed. */
export const ShareKeysTaskSchema = z.strictObject({
  ...taskBase,
  stage: z.literal('share-keys'),
  peers: z.array(z.strictObject({ nodeId: id, encPublicKey: base64Of(SECAGG_KEY_BYTES), maskPublicKey: base64Of(SECAGG_KEY_BYTES) })).max(SECAGG_MAX_NEIGHBOURS),
});
export type ShareKeysTask = z.infer<typeof ShareKeysTaskSchema>;

/** Stage 4: which of the node's U2 neighbours survived and which dropped; answer with their shares. */
export const UnmaskTaskSchema = z.strictObject({
  ...taskBase,
  stage: z.literal('unmask'),
  survivors: neighbourList,
  dropped: neighbourList,
});
export type UnmaskTask = z.infer<typeof UnmaskTaskSchema>;

/** The sealed shares a fit task of a secure-aggregation round relays to the node (stage 3: masked input). */
export const FitSecAggSchema = z.strictObject({
  shares: z.array(z.strictObject({ from: id, ciphertext: base64Of(SECAGG_SEALED_BYTES) })).max(SECAGG_MAX_NEIGHBOURS),
});

const secaggAnswerBase = {
  ...envelope,
  runId: id,
  nodeId: id,
  /** The task answered. */
  taskId: z.number().int().min(1),
  round: z.number().int().min(1),
  modelVersion: z.number().int().min(1),
  ts: epochMs,
};

/**
 * `nodes/{nodeId}/secagg` — MessagePack, QoS 1: a node's answer to a secure-aggregation stage task
 * (advertise-keys, share-keys, unmask; docs/protocol.md §12.3). The masked input itself is an Update.
 */
export const SecAggAnswerSchema = z.discriminatedUnion('stage', [
  z.object({ ...secaggAnswerBase, stage: z.literal('advertise-keys'), encPublicKey: bytesOf(SECAGG_KEY_BYTES), maskPublicKey: bytesOf(SECAGG_KEY_BYTES) }),
  z.object({ ...secaggAnswerBase, stage: z.literal('share-keys'), shares: z.array(z.object({ to: id, ciphertext: bytesOf(SECAGG_SEALED_BYTES) })).max(SECAGG_MAX_NEIGHBOURS) }),
  z.object({
    ...secaggAnswerBase, stage: z.literal('unmask'),
    selfMaskShares: z.array(z.object({ of: id, share: bytesOf(SECAGG_SHARE_BYTES) })).max(SECAGG_MAX_NEIGHBOURS),
    maskKeyShares: z.array(z.object({ of: id, share: bytesOf(SECAGG_SHARE_BYTES) })).max(SECAGG_MAX_NEIGHBOURS),
  }),
]);
export type SecAggAnswer = z.infer<typeof SecAggAnswerSchema>;
/** Stages answered on `nodes/{nodeId}/secagg`. */
export type SecAggAnswerStage = SecAggAnswer['stage'];

/** A fit task: train on the local data from the named global model, answer with an Update. */
export const FitTaskSchema = z.strictObject({
  ...taskBase,
  stage: z.literal('fit'),
  /** Nodes sent a fit task in this round (synchronous rounds; absent in async mode). */
  cohort: z.number().int().min(1).optional(),
  config: FitConfigSchema,
  /** Uplink codec the update must use. */
  codec: z.enum(CODEC_NAMES as unknown as [CodecName, ...CodecName[]]),
  /** Its parameters (defaults: k 0.01, blockSize 256). */
  codecParams: CodecParamsSchema.optional(),
  /** When set, the update goes as chunks of at most this many bytes (§10). */
  maxPayloadBytes: z.number().int().min(1024).max(256 * 2 ** 20).optional(),
  /** Updates carry the delta (trained − global). */
  updateKind: z.literal('delta'),
  /** Differential privacy: clip (and in local mode noise) the delta before it leaves the node (§5.7). */
  dp: FitDpSchema.optional(),
  /** Secure aggregation (§12): the sealed shares from the node's neighbours; the Update then carries the masked input. */
  secagg: FitSecAggSchema.optional(),
});
export type FitTask = z.infer<typeof FitTaskSchema>;

/** An evaluate task: evaluate the named global model, and the node's own last local model, on the held-out split; answer with an EvaluateResult. */
export const EvaluateTaskSchema = z.strictObject({
  ...taskBase,
  stage: z.literal('evaluate'),
  /** Evaluation batch size. */
  batchSize: z.number().int().min(1).max(65536),
});
export type EvaluateTask = z.infer<typeof EvaluateTaskSchema>;

/** `nodes/{nodeId}/task` — JSON, QoS 1, not retained: one stage instruction to one node. */
export const NodeTaskSchema = z.discriminatedUnion('stage', [FitTaskSchema, EvaluateTaskSchema, AdvertiseKeysTaskSchema, ShareKeysTaskSchema, UnmaskTaskSchema]);
export type NodeTask = z.infer<typeof NodeTaskSchema>;
/** Stages a node handles (`stage` of a NodeTask). */
export type NodeStage = NodeTask['stage'];

const wireTensor = z.object({
  name: z.string().min(1).max(256),
  shape: z.array(z.number().int().nonnegative()).max(8),
  dtype: z.string(),
  data: z.instanceof(Uint8Array),
});

/** `models/{version}` — retained MessagePack: the global model of one version. */
export const GlobalModelSchema = z.object({
  ...envelope,
  runId: id,
  /** Increases by one each time the global model changes; starts at 1. */
  version: z.number().int().min(1),
  /** Round (server step) that produced it (0 for the initial model). */
  round: count,
  /** Model architecture, by registry name (e.g. `mnist-2nn`). */
  model: z.string().min(1).max(128),
  /** sha256 hex of the weights (§4, `weightsSha256`). */
  sha256,
  tensors: z.array(wireTensor).max(10_000),
  ts: epochMs,
});
export type GlobalModelMessage = Omit<z.infer<typeof GlobalModelSchema>, 'tensors'> & { tensors: WireTensor[] };

/** `model/meta` — retained JSON: what the latest global model is, for monitoring. */
export const ModelMetaSchema = z.object({
  ...envelope,
  runId: id,
  version: z.number().int().min(1),
  round: count,
  model: z.string().min(1).max(128),
  /** Size of the MessagePack GlobalModel payload, bytes. */
  bytes: count,
  /** Number of weights (parameters). */
  params: count,
  /** Chunks the model was published in on `models/{version}/chunks/{i}` (absent: whole, on `models/{version}`). */
  chunks: count.optional(),
  sha256,
  ts: epochMs,
});
export type ModelMeta = z.infer<typeof ModelMetaSchema>;

/** `nodes/{nodeId}/update` — MessagePack, QoS 1: a node's answer to a fit task. */
export const UpdateSchema = z.object({
  ...envelope,
  runId: id,
  nodeId: id,
  /** The fit task answered. */
  taskId: z.number().int().min(1),
  round: z.number().int().min(1),
  /** Global model version the node trained from (the task's). */
  modelVersion: z.number().int().min(1),
  /** Local training examples n_k (the FedAvg weight; held-out examples excluded). */
  numExamples: z.number().int().min(1),
  /** Must equal the fit task's codec (FEDMQ_WRONG_CODEC). */
  codec: z.string().min(1).max(32),
  kind: z.literal('delta'),
  metrics: z.object({
    loss: finite,
    /** Local training wall time, ms. */
    trainMs: finite.nonnegative(),
    /** Payload bytes the node received since its previous answer (task, model, statuses): measured on its MQTT client. */
    bytesDown: count.optional(),
  }),
  /** Differential privacy (§5.7): present when the task had `dp.clipBit`. */
  dp: z.object({
    /** Andrew et al. 2021's bit b = 1[‖Δ‖₂ ≤ C]: true when the delta was within the clip norm before clipping. */
    unclipped: z.boolean(),
  }).optional(),
  /** Secure aggregation (§12.4): the masked input, d words of b bits packed little-endian; `tensors` is then empty and numExamples 1 (the weight is inside the masked vector). */
  secagg: z.object({ data: z.instanceof(Uint8Array) }).optional(),
  /** delta = trained − global, one encoded tensor per global-model tensor, in the update's codec (§9). */
  tensors: z.array(z.object({ name: z.string().min(1).max(256), shape: z.array(z.number().int().nonnegative()).max(8), codec: z.string() }).passthrough()).max(10_000),
  ts: epochMs,
});
export type UpdateMessage = Omit<z.infer<typeof UpdateSchema>, 'tensors'> & { tensors: EncodedTensor[] };

const evalMetrics = z.object({ loss: finite, accuracy: z.number().min(0).max(1) });

/** `nodes/{nodeId}/evaluation` — JSON, QoS 1: a node's answer to an evaluate task. */
export const EvaluateResultSchema = z.object({
  ...envelope,
  runId: id,
  nodeId: id,
  /** The evaluate task answered. */
  taskId: z.number().int().min(1),
  round: z.number().int().min(1),
  modelVersion: z.number().int().min(1),
  /** Held-out examples evaluated on (the weight of this node in the aggregate). */
  numExamples: z.number().int().min(1),
  /** The global model of the task on the held-out split. */
  global: evalMetrics,
  /** The node's own model after its last fit task in this run, on the same split; null if it has not trained in this run. */
  local: evalMetrics.nullable(),
  /** Evaluation wall time, ms. */
  evalMs: finite.nonnegative(),
  /** Payload bytes received since the previous answer, as in Update.metrics. */
  bytesDown: count.optional(),
  ts: epochMs,
});
export type EvaluateResult = z.infer<typeof EvaluateResultSchema>;

/** Federated evaluation of one round: the nodes' held-out results, aggregated (docs/protocol.md §3.10). */
export const FederatedEvalSchema = z.object({
  /** Σ n_k·loss_k / Σ n_k of the global model over the reporting nodes. */
  loss: finite,
  /** Σ n_k·accuracy_k / Σ n_k of the global model. */
  accuracy: finite,
  /** Σ n_k: held-out examples evaluated. */
  numExamples: count,
  /** Nodes that reported. */
  nodes: count,
  /** Mean accuracy of the worst 10 % of the reporting nodes (at least one node), unweighted. */
  worstDecileAccuracy: finite,
  /** Fraction of the reporting nodes with a local model whose local model beat the global one on their split (null when none had one). */
  localBetterFraction: finite.nullable(),
  /** Per-node accuracy of the global model: min, 10th percentile, median, 90th percentile, max (nearest rank). */
  accuracySpread: z.object({ min: finite, p10: finite, median: finite, p90: finite, max: finite }),
});
export type FederatedEval = z.infer<typeof FederatedEvalSchema>;

/** Staleness of the updates of one async server step (τ = versions published since the node's model). */
export const StalenessSchema = z.object({ mean: finite, max: count });

/**
 * The privacy ledger after a round (docs/protocol.md §3.10, docs/privacy.md): what was spent so far
 * and how this round was sampled, clipped and noised.
 */
export const PrivacyRecordSchema = z.object({
  mode: z.enum(DP_MODES),
  /** Which sampling the accountant assumes: `poisson` (each eligible node independently with probability q). */
  sampling: z.enum(['poisson', 'none']),
  /** q: sampling probability of a node in a round. */
  q: z.number().min(0).max(1),
  /** σ of the delta sum's noise, in units of C (central: the coordinator's; local: each node's). */
  noiseMultiplier: z.number().positive().finite(),
  /** Noise multiplier the accountant composes for the round (adaptive clipping's combined σ, or σ/2 in local mode for substitution). */
  accountedNoiseMultiplier: z.number().positive().finite(),
  /** C the round's nodes clipped to. */
  clipNorm: z.number().positive().finite(),
  /** C for the next round (adaptive clipping moves it; else equal to clipNorm). */
  nextClipNorm: z.number().positive().finite(),
  /** Adaptive clipping: the noised fraction of the round's updates that were within C (null without adaptive clipping). */
  unclippedFraction: finite.nullable(),
  /** Rounds that released a noised aggregate so far, this one included (the accountant's steps). */
  steps: count,
  /** ε(δ) spent so far (null: infinite, e.g. before any noise would bound it). */
  epsilon: z.number().nonnegative().finite().nullable(),
  delta: z.number().positive().max(1),
  /** The run's budget (`--max-epsilon`), null when none. */
  maxEpsilon: z.number().positive().finite().nullable(),
});
export type PrivacyRecord = z.infer<typeof PrivacyRecordSchema>;

/**
 * One round (one server step in async mode) as recorded in `history.json` and, with the message
 * envelope, published as RoundMetrics. Defined once here for the coordinator, the monitor, the
 * dashboard and the report.
 */
export const RoundRecordSchema = z.object({
  /** Round (server step), from 1. */
  round: z.number().int().min(1),
  /** Global model version after the round (unchanged when it failed). */
  modelVersion: z.number().int().min(1),
  /** False when the round failed (fewer accepted updates than required, or the aggregator refused): model unchanged, round retried. */
  accepted: z.boolean(),
  mode: z.enum(ENGINE_MODES),
  /** Fit tasks sent (selected nodes; in async mode, tasks issued since the previous step). */
  selected: count,
  /** Updates accepted into the round (the step's buffer in async mode). */
  reported: count,
  /** Rejected updates and missing nodes by error code (`timeout`, `offline`). */
  failures: z.record(z.string(), count),
  /** numExamples-weighted mean of the nodes' training losses (null when none reported). */
  trainLoss: finite.nullable(),
  /** Centralized evaluation on the coordinator's test set (null without one). */
  testLoss: finite.nullable(),
  testAccuracy: finite.nullable(),
  /** Federated evaluation on the nodes' held-out data (null when off or nobody answered). */
  federatedEval: FederatedEvalSchema.nullable(),
  /** Staleness of the step's updates (async mode only). */
  staleness: StalenessSchema.optional(),
  /** Payload bytes the answering nodes received for the round (their measured `bytesDown`, summed). */
  bytesDown: count,
  /** Payload bytes of the accepted updates and evaluation results (their chunks, when chunked). */
  bytesUp: count,
  /** Wall time of the round, ms (from its select stage to its metrics). */
  durationMs: finite,
  /** Wall time of each part, ms: fit (tasks out → closed), aggregate (step + publishing the model), evaluate. */
  phases: z.object({ trainMs: finite, aggregateMs: finite, evalMs: finite }),
  /** Differential privacy of the run so far (absent without `--dp`; docs/privacy.md). */
  privacy: PrivacyRecordSchema.optional(),
  /** Secure aggregation of the round (absent without `--secagg`; docs/protocol.md §12). */
  secagg: z.object({
    /** `harary` (SecAgg+) or `complete` (SecAgg). */
    graph: z.enum(['harary', 'complete']),
    /** k: neighbours per node. */
    neighbours: count,
    /** t: the smallest cohort any stage may end with. */
    threshold: count,
    /** b: bits of the masking group Z_{2^b}. */
    bits: count,
    /** d: words per masked input. */
    dims: count,
    /** Nodes that dropped after sharing their keys and before their masked input, whose masks were removed (|U2 \ U3|). */
    recovered: count,
    /** The error code that aborted the round (e.g. FEDMQ_SECAGG_ABORT below the threshold), null when it completed. */
    aborted: z.string().nullable(),
    /** Each stage in order: nodes sent a task (its cohort), nodes that answered, wall time ms. */
    stages: z.array(z.object({ stage: z.enum(STAGE_NAMES), cohort: count, answered: count, durationMs: finite })),
  }).optional(),
});
export type RoundRecord = z.infer<typeof RoundRecordSchema>;

/** `rounds/{round}/metrics` and `metrics` — retained JSON: a {@link RoundRecord} with the envelope. */
export const RoundMetricsSchema = RoundRecordSchema.extend({
  ...envelope,
  runId: id,
  ts: epochMs,
});
export type RoundMetrics = z.infer<typeof RoundMetricsSchema>;

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  if (typeof value === 'object' && value !== null && 'v' in value && (value as { v: unknown }).v !== PROTOCOL_VERSION) {
    throw new FedmqError(ErrorCodes.UNSUPPORTED_VERSION, `${what}: protocol version ${JSON.stringify((value as { v: unknown }).v)}, this peer speaks ${PROTOCOL_VERSION}`, { version: (value as { v: unknown }).v });
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new FedmqError(ErrorCodes.SCHEMA, `${what}: ${issue.path.join('.') || '(root)'}: ${issue.message}`, { path: issue.path.join('.') });
  }
  return r.data;
}

/**
 * Decodes and validates a JSON message.
 * @throws FedmqError FEDMQ_BAD_PAYLOAD (not JSON), FEDMQ_UNSUPPORTED_VERSION, FEDMQ_SCHEMA.
 */
export function decodeJson<T>(schema: z.ZodType<T>, payload: Uint8Array, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch (err) {
    throw new FedmqError(ErrorCodes.BAD_PAYLOAD, `${what}: payload is not JSON`, {}, { cause: err });
  }
  return check(schema, value, what);
}

/** Encodes a JSON message (UTF-8). */
export function encodeJson(msg: object): Buffer {
  return Buffer.from(JSON.stringify(msg), 'utf8');
}

/**
 * Decodes and validates a MessagePack message. Tensor bytes are not checked against shape and
 * dtype here: `fromWireTensor` and the codecs do that.
 * @throws FedmqError FEDMQ_BAD_PAYLOAD, FEDMQ_UNSUPPORTED_VERSION, FEDMQ_SCHEMA.
 */
export function decodePacked<T>(schema: z.ZodType<T>, payload: Uint8Array, what: string): T {
  return check(schema, unpackMessage(payload), what);
}

/** Decodes a global model message. @throws as {@link decodePacked}. */
export function decodeGlobalModel(payload: Uint8Array): GlobalModelMessage {
  return decodePacked(GlobalModelSchema, payload, 'global model') as GlobalModelMessage;
}

/** Decodes a node's secure-aggregation answer. @throws as {@link decodePacked}. */
export function decodeSecAggAnswer(payload: Uint8Array): SecAggAnswer {
  return decodePacked(SecAggAnswerSchema, payload, 'secure-aggregation answer');
}

/** Encodes a secure-aggregation answer as MessagePack. */
export function encodeSecAggAnswer(msg: SecAggAnswer): Buffer {
  return packMessage(msg);
}

/** Decodes an update message. @throws as {@link decodePacked}. */
export function decodeUpdate(payload: Uint8Array): UpdateMessage {
  return decodePacked(UpdateSchema, payload, 'update') as UpdateMessage;
}

/** Encodes a global model or update as MessagePack. */
export function encodePacked(msg: GlobalModelMessage | UpdateMessage): Buffer {
  return packMessage(msg);
}

/**
 * Every message schema by its name in docs/protocol.md §3, for the spec test that checks the
 * docs' field tables against the code.
 */
export const MESSAGE_SCHEMAS = {
  CoordinatorStatus: CoordinatorStatusSchema,
  StageStatus: StageStatusSchema,
  NodeStatus: NodeStatusSchema,
  FitTask: FitTaskSchema,
  EvaluateTask: EvaluateTaskSchema,
  AdvertiseKeysTask: AdvertiseKeysTaskSchema,
  ShareKeysTask: ShareKeysTaskSchema,
  UnmaskTask: UnmaskTaskSchema,
  SecAggAnswer: SecAggAnswerSchema,
  GlobalModel: GlobalModelSchema,
  ModelMeta: ModelMetaSchema,
  Update: UpdateSchema,
  EvaluateResult: EvaluateResultSchema,
  RoundMetrics: RoundMetricsSchema,
} as const;
