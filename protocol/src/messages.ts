import { z } from 'zod';
import { ErrorCodes, FedmqError } from './errors.ts';
import { ID_PATTERN } from './topics.ts';
import { packMessage, unpackMessage, type WireTensor } from './codec.ts';
import { CODEC_NAMES } from './codecs/index.ts';
import type { EncodedTensor } from './codecs/types.ts';

/**
 * Message types of protocol v1 with runtime validation (docs/protocol.md, "Messages").
 * Human-facing messages (statuses, task, metrics) are JSON; the global model and updates are
 * MessagePack. Every message carries `v` (protocol version) and `job`.
 */
export const PROTOCOL_VERSION = 1 as const;

const id = z.string().regex(ID_PATTERN);
const epochMs = z.number().int().nonnegative();
const finite = z.number().finite();
const count = z.number().int().nonnegative();
const envelope = { v: z.literal(PROTOCOL_VERSION), job: id };

/** Coordinator phases, in the order of the round lifecycle. */
export const COORDINATOR_STATES = ['waiting', 'training', 'aggregating', 'evaluating', 'done', 'failed', 'offline'] as const;
export const NODE_STATES = ['idle', 'training', 'uploading', 'offline'] as const;
/** Uplink codecs a round task may name (docs/codecs.md). */
export const UPDATE_CODECS = CODEC_NAMES;
export type UpdateCodecName = (typeof CODEC_NAMES)[number];
/** Encodings of the global model on the downlink. */
export const DOWNLINK_DTYPES = ['float32', 'float16'] as const;

/** Parameters of the uplink codec. */
export const CodecParamsSchema = z.object({
  /** top-k: fraction of each tensor's coordinates sent, (0, 1]. */
  k: z.number().positive().max(1).optional(),
  /** int8: values per scale block, 0 = one scale per tensor. */
  blockSize: z.number().int().min(0).max(1 << 20).optional(),
});

/** Local training hyperparameters sent in every round task. */
export const FitConfigSchema = z.object({
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

/** `fedmq/v1/{job}/coordinator/status` — retained JSON, also the coordinator's Last Will (state `offline`). */
export const CoordinatorStatusSchema = z.object({
  ...envelope,
  /** Identifies one run of the job; nodes reset their round bookkeeping when it changes. */
  runId: id,
  state: z.enum(COORDINATOR_STATES),
  /** Current round (0 before the first). */
  round: count,
  /** Rounds the job will run. */
  rounds: count.optional(),
  /** Deadline of the open round, epoch ms (coordinator clock). */
  deadline: epochMs.optional(),
  /** Model name, fraction, minNodes … as the coordinator was started. */
  config: z.record(z.string(), z.unknown()).optional(),
  /** When this status was published, epoch ms. */
  ts: epochMs,
});
export type CoordinatorStatus = z.infer<typeof CoordinatorStatusSchema>;

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

/** `fedmq/v1/{job}/nodes/{nodeId}/status` — retained JSON, also the node's Last Will (state `offline`). */
export const NodeStatusSchema = z.object({
  ...envelope,
  nodeId: id,
  state: z.enum(NODE_STATES),
  ts: epochMs,
  /** Number of local training examples. */
  numExamples: count.optional(),
  /** Model the node can train (registry name). */
  model: z.string().max(128).optional(),
  device: DeviceInfoSchema.optional(),
  /** The node's last completed round: its mean training loss and training time (ms). */
  lastRound: z.object({ round: count, loss: finite, trainMs: finite }).optional(),
});
export type NodeStatus = z.infer<typeof NodeStatusSchema>;

/** `fedmq/v1/{job}/task` — retained JSON: the open round's task. */
export const RoundTaskSchema = z.object({
  ...envelope,
  /** Identifies one run of the job; nodes reset their round bookkeeping when it changes. */
  runId: id,
  /** Round number, from 1. */
  round: z.number().int().min(1),
  /** Global model version the nodes must train from (the retained model carries it). */
  modelVersion: z.number().int().min(1),
  /** Node ids selected for this round. */
  selected: z.array(id).max(100_000),
  /** Epoch ms (coordinator clock) after which updates for this round are not accepted. */
  deadline: epochMs,
  /** Round duration the coordinator allows, ms (use it where clocks differ). */
  timeoutMs: count,
  config: FitConfigSchema,
  /** Uplink codec the update must use. */
  codec: z.enum(CODEC_NAMES as unknown as [UpdateCodecName, ...UpdateCodecName[]]),
  /** Its parameters (defaults: k 0.01, blockSize 256). */
  codecParams: CodecParamsSchema.optional(),
  /** When set, updates go as chunks of at most this many bytes (docs/chunking.md) and the model is on `model/chunks/{i}`. */
  maxPayloadBytes: z.number().int().min(1024).max(256 * 2 ** 20).optional(),
  /** Updates carry the delta (trained − global). */
  updateKind: z.literal('delta'),
  ts: epochMs,
});
export type RoundTask = z.infer<typeof RoundTaskSchema>;

const wireTensor = z.object({
  name: z.string().min(1).max(256),
  shape: z.array(z.number().int().nonnegative()).max(8),
  dtype: z.string(),
  data: z.instanceof(Uint8Array),
});

/** `fedmq/v1/{job}/model` — retained MessagePack: the global model. */
export const GlobalModelSchema = z.object({
  ...envelope,
  /** Identifies one run of the job; nodes reset their round bookkeeping when it changes. */
  runId: id,
  /** Increases by one each time the global model changes; starts at 1. */
  version: z.number().int().min(1),
  /** Round that produced it (0 for the initial model). */
  round: count,
  /** Model architecture, by registry name (e.g. `mnist-2nn`). */
  model: z.string().min(1).max(128),
  /** sha256 hex of the weights (see `weightsSha256`). */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  tensors: z.array(wireTensor).max(10_000),
  ts: epochMs,
});
export type GlobalModelMessage = Omit<z.infer<typeof GlobalModelSchema>, 'tensors'> & { tensors: WireTensor[] };

/** `fedmq/v1/{job}/model/meta` — retained JSON: what the binary global model is, for monitoring. */
export const ModelMetaSchema = z.object({
  ...envelope,
  runId: id,
  version: z.number().int().min(1),
  round: count,
  model: z.string().min(1).max(128),
  /** Size of the MessagePack global model payload, bytes. */
  bytes: count,
  /** Number of weights (parameters). */
  params: count,
  /** Chunks the model was published in on `model/chunks/{i}` (absent: whole, on `model`). */
  chunks: count.optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  ts: epochMs,
});
export type ModelMeta = z.infer<typeof ModelMetaSchema>;

/** `fedmq/v1/{job}/nodes/{nodeId}/update` — MessagePack, QoS 1: a node's update for one round. */
export const UpdateSchema = z.object({
  ...envelope,
  /** Identifies one run of the job; nodes reset their round bookkeeping when it changes. */
  runId: id,
  nodeId: id,
  round: z.number().int().min(1),
  /** Global model version the node trained from. */
  modelVersion: z.number().int().min(1),
  /** Local training examples n_k (the FedAvg weight). */
  numExamples: z.number().int().min(1),
  /** Must equal the round task's codec (checked by the coordinator: FEDMQ_WRONG_CODEC). */
  codec: z.string().min(1).max(32),
  kind: z.literal('delta'),
  metrics: z.object({ loss: finite, trainMs: finite.nonnegative() }),
  /** delta = trained − global, one encoded tensor per global-model tensor, in the update's codec (docs/codecs.md). */
  tensors: z.array(z.object({ name: z.string().min(1).max(256), shape: z.array(z.number().int().nonnegative()).max(8), codec: z.string() }).passthrough()).max(10_000),
  ts: epochMs,
});
export type UpdateMessage = Omit<z.infer<typeof UpdateSchema>, 'tensors'> & { tensors: EncodedTensor[] };

/** `fedmq/v1/{job}/rounds/{round}/metrics` and `fedmq/v1/{job}/metrics` — retained JSON. */
export const RoundMetricsSchema = z.object({
  ...envelope,
  /** Identifies one run of the job; nodes reset their round bookkeeping when it changes. */
  runId: id,
  round: z.number().int().min(1),
  /** Global model version after the round. */
  modelVersion: z.number().int().min(1),
  selected: count,
  reported: count,
  /** Rejected or missing updates by error code (e.g. `FEDMQ_STALE_UPDATE`, `timeout`). */
  failures: z.record(z.string(), count),
  /** False when the round failed (too few updates, see `minFitNodes`): the global model was kept and the round is retried. */
  accepted: z.boolean().optional(),
  /** Mean training loss of the reporting nodes, weighted by numExamples (NaN → null). */
  trainLoss: finite.nullable(),
  testLoss: finite.nullable(),
  testAccuracy: finite.nullable(),
  /** Bytes the broker delivered for the round: (global model + task payload) × nodes online (all subscribe to both). */
  bytesDown: count,
  /** Bytes of the updates received this round. */
  bytesUp: count,
  /** Round wall time from task to metrics, ms. */
  durationMs: finite,
  /** Wall time of each phase, ms: training (task → round closed), aggregation, evaluation. */
  phases: z.object({ trainMs: finite, aggregateMs: finite, evalMs: finite }),
  ts: epochMs,
});
export type RoundMetrics = z.infer<typeof RoundMetricsSchema>;

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  if (typeof value === 'object' && value !== null && 'v' in value && (value as { v: unknown }).v !== PROTOCOL_VERSION) {
    throw new FedmqError(ErrorCodes.UNSUPPORTED_VERSION, `${what}: protocol version ${JSON.stringify((value as { v: unknown }).v)} is not ${PROTOCOL_VERSION}`);
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
 * dtype here: `fromWireTensor` does that.
 * @throws FedmqError FEDMQ_BAD_PAYLOAD, FEDMQ_UNSUPPORTED_VERSION, FEDMQ_SCHEMA.
 */
export function decodePacked<T>(schema: z.ZodType<T>, payload: Uint8Array, what: string): T {
  return check(schema, unpackMessage(payload), what);
}

/** Decodes a global model message. @throws as {@link decodePacked}. */
export function decodeGlobalModel(payload: Uint8Array): GlobalModelMessage {
  return decodePacked(GlobalModelSchema, payload, 'global model') as GlobalModelMessage;
}

/** Decodes an update message. @throws as {@link decodePacked}. */
export function decodeUpdate(payload: Uint8Array): UpdateMessage {
  return decodePacked(UpdateSchema, payload, 'update') as UpdateMessage;
}

/** Encodes a global model or update as MessagePack. */
export function encodePacked(msg: GlobalModelMessage | UpdateMessage): Buffer {
  return packMessage(msg);
}
