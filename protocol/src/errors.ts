/**
 * Every error fedmq reports on the wire or in logs has a stable code, defined here and
 * documented in docs/protocol.md ("Error codes"). Tests assert the code, not the message
 * (the habit of Fastify's `lib/errors.js`).
 */
export const ErrorCodes = {
  /** A topic does not match any fedmq topic, or a segment (job, nodeId) is invalid. */
  BAD_TOPIC: 'FEDMQ_BAD_TOPIC',
  /** A payload could not be decoded (not msgpack / not JSON / truncated). */
  BAD_PAYLOAD: 'FEDMQ_BAD_PAYLOAD',
  /** A payload decoded but does not match the message schema. */
  SCHEMA: 'FEDMQ_SCHEMA',
  /** The payload's protocol version is not one this build speaks. */
  UNSUPPORTED_VERSION: 'FEDMQ_UNSUPPORTED_VERSION',
  /** A tensor's byte length does not match its shape and dtype, or its dtype is unknown. */
  BAD_TENSOR: 'FEDMQ_BAD_TENSOR',
  /** An update names a codec the round task did not ask for. */
  WRONG_CODEC: 'FEDMQ_WRONG_CODEC',
  /** A message belongs to another job. */
  WRONG_JOB: 'FEDMQ_WRONG_JOB',
  /** An answer (update, evaluation result) to a task that is not open: another run, a closed stage, or an unknown task id. */
  STALE_UPDATE: 'FEDMQ_STALE_UPDATE',
  /** An async (FedBuff) update trained on a model more than `maxStaleness` versions old: rejected, never folded in. */
  TOO_STALE: 'FEDMQ_TOO_STALE',
  /** A node could not get the global model version a task names (not published, cleared, or its sha256 differs) before the task's deadline. */
  MODEL_UNAVAILABLE: 'FEDMQ_MODEL_UNAVAILABLE',
  /** A second answer to the same task (QoS 1 redelivery included): counted once. */
  DUPLICATE_UPDATE: 'FEDMQ_DUPLICATE_UPDATE',
  /** An answer from a node that was not given that task (not in the stage's cohort). */
  NOT_SELECTED: 'FEDMQ_NOT_SELECTED',
  /** Tensor names, shapes or dtypes do not match the global model. */
  MODEL_MISMATCH: 'FEDMQ_MODEL_MISMATCH',
  /** A tensor holds NaN or ±Infinity. */
  NON_FINITE: 'FEDMQ_NON_FINITE',
  /** The global model's sha256 does not match its tensors. */
  HASH_MISMATCH: 'FEDMQ_HASH_MISMATCH',
  /** Local training failed on a node. */
  TRAINING_FAILED: 'FEDMQ_TRAINING_FAILED',
  /** A configuration value (CLI flag, option) is invalid. */
  BAD_CONFIG: 'FEDMQ_BAD_CONFIG',
  /** A chunk payload is malformed: not MessagePack, not a map, a field missing or of the wrong type or range, or `data` of the wrong length for its index. Thrown by `push`. */
  CHUNK_BAD: 'FEDMQ_CHUNK_BAD',
  /** Chunks of one transfer disagree on `count`, `total` or `sha256`; the transfer is dropped. Reported through `onError`. */
  CHUNK_INCONSISTENT: 'FEDMQ_CHUNK_INCONSISTENT',
  /** A transfer's `total` exceeds `maxTotalBytes`; refused at its first chunk. Thrown by `push`. */
  CHUNK_TOO_LARGE: 'FEDMQ_CHUNK_TOO_LARGE',
  /** Accepting a new transfer would exceed `maxPendingBytes` or `maxPendingTransfers`; refused at its first chunk. Thrown by `push`. */
  CHUNK_LIMIT: 'FEDMQ_CHUNK_LIMIT',
  /** A transfer stayed incomplete `timeoutMs` after its last new chunk; dropped. Reported through `onError`. */
  CHUNK_TIMEOUT: 'FEDMQ_CHUNK_TIMEOUT',
  /** All chunks arrived but the reassembled bytes do not hash to `sha256`; dropped. Reported through `onError`. */
  CHUNK_HASH: 'FEDMQ_CHUNK_HASH',
  /** A round closed with fewer accepted updates than `minFitNodes` / `minCompletionRate` asks for (or the strategy refused it): the global model is kept and the round retried; after `maxRoundRetries` such rounds in a row the run aborts with this code. */
  ROUND_FAILED: 'FEDMQ_ROUND_FAILED',
  /** A checkpoint cannot be read, is of another format version, or does not match the run resumed from it (job, model, strategy). */
  CHECKPOINT: 'FEDMQ_CHECKPOINT',
  /** The broker refused a CONNECT: no or wrong credentials, a client id the user may not use, a client certificate whose CN is not the username, or a Last Will the user may not publish (CONNACK return code 2, 4 or 5). Logged by the broker; the client sees the return code. */
  AUTH: 'FEDMQ_AUTH',
  /** The broker's ACL denied a PUBLISH (the connection is closed) or a SUBSCRIBE (SUBACK 0x80) (docs/security.md). Logged by the broker. */
  FORBIDDEN: 'FEDMQ_FORBIDDEN',
  /** Differential privacy: the next round would spend more than `--max-epsilon`; the run stops cleanly before it, checkpointed (docs/privacy.md). */
  PRIVACY_BUDGET: 'FEDMQ_PRIVACY_BUDGET',
  /** Differential privacy: an update to a task with `dp.clipBit` (adaptive clipping) that lacks its `dp.unclipped` bit (docs/protocol.md §5.7). */
  DP_VIOLATION: 'FEDMQ_DP_VIOLATION',
  /** Secure aggregation: fewer than the threshold t of nodes survived a stage, or a node's secret has fewer than t shares left; the round aborts and the coordinator learns nothing of it (docs/privacy.md, "Secure aggregation"). */
  SECAGG_ABORT: 'FEDMQ_SECAGG_ABORT',
  /** Secure aggregation: the configuration could let the sum wrap around mod 2^b (b would exceed 32 bits), or its graph or threshold is impossible (docs/protocol.md §12.4). */
  SECAGG_RANGE: 'FEDMQ_SECAGG_RANGE',
  /** Secure aggregation: a share ciphertext did not authenticate (wrong key, sender, receiver, round or stage), or an X25519 public key is invalid (docs/protocol.md §12.2). */
  SECAGG_AUTH: 'FEDMQ_SECAGG_AUTH',
  /** Secure aggregation: a stage message breaks the protocol: a peer not in the node's neighbourhood, a node named both survivor and dropped, a second unmask task in a round, a share for the wrong node, a key repeating another (docs/protocol.md §12.3, §12.5, §12.6). */
  SECAGG_PROTOCOL: 'FEDMQ_SECAGG_PROTOCOL',
  /** Secure aggregation does not compose with the configured codec, strategy, DP mode or engine mode (docs/privacy.md, "What composes with secure aggregation"). */
  SECAGG_COMPOSITION: 'FEDMQ_SECAGG_COMPOSITION',
  /** The broker closed a connection that broke a limit: packet larger than `maxPacketBytes`, malformed fixed header, or too many connections from one address (docs/security.md). Logged by the broker. */
  LIMIT: 'FEDMQ_LIMIT',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * An error with a stable {@link ErrorCode}. `details` carries structured context for logs
 * (job, round, nodeId, field path …).
 */
export class FedmqError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FedmqError';
    this.code = code;
    this.details = details;
  }
}

/** True when `err` is a {@link FedmqError}, optionally with the given code. */
export function isFedmqError(err: unknown, code?: ErrorCode): err is FedmqError {
  return err instanceof FedmqError && (code === undefined || err.code === code);
}
