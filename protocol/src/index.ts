// The public API of @fedmq/protocol: a curated list (docs/protocol.md, docs/codecs.md, docs/chunking.md).
// Each name is imported by another package, a benchmark or a test outside protocol, or is part of the
// documented contract. Module-internal helpers (sizeOf, assertId, toWireTensor, newTransferId, the
// float16/int8/top-k internals) stay unexported; import them by file inside protocol only.

// errors.ts: stable error codes (docs/protocol.md §7) and the error class that carries them
export { ErrorCodes, FedmqError, isFedmqError, type ErrorCode } from './errors.ts';

// tensor.ts: a named float32 tensor, the unit of weights and deltas
export type { NamedTensor } from './tensor.ts';

// topics.ts: the topic table (§2; v2 root, and the v1 root of the legacy beacon topics), topic builders, subscription filters and the parser
export {
  ID_PATTERN, LEGACY_TOPIC_ROOT, TOPIC_KINDS, TOPIC_ROOT, TOPIC_TABLE, parseTopic, topicFilter, topics,
  type ParsedTopic, type PayloadFormat, type TopicKind, type TopicParams, type TopicReader, type TopicRole, type TopicSpec,
} from './topics.ts';

// codec.ts: wire tensors (§4), the model hash, MessagePack framing
export {
  DTYPES, bytesPerElement, fromWireTensor, packMessage, unpackMessage, weightsFromWire, weightsSha256, weightsToWire,
  type Dtype, type TypedTensor, type WireTensor,
} from './codec.ts';

// messages.ts: protocol version, enumerations, zod schemas and types of every message (§3), decode/encode helpers
export {
  PROTOCOL_VERSION, COORDINATOR_STATES, DOWNLINK_DTYPES, DP_MODES, ENGINE_MODES, MAX_VAL_FRACTION, NODE_STATES, STAGE_NAMES,
  CodecParamsSchema, CoordinatorStatusSchema, DeviceInfoSchema, EvaluateResultSchema, EvaluateTaskSchema, FederatedEvalSchema, FitConfigSchema,
  FitDpSchema, FitTaskSchema, PrivacyRecordSchema, GlobalModelSchema, MESSAGE_SCHEMAS, ModelMetaSchema, NodeStatusSchema, NodeTaskSchema, RoundMetricsSchema, RoundRecordSchema,
  StageStatusSchema, UpdateSchema,
  decodeGlobalModel, decodeJson, decodePacked, decodeUpdate, encodeJson, encodePacked,
  type CoordinatorStatus, type DeviceInfo, type DpMode, type EngineMode, type EvaluateResult, type EvaluateTask, type FederatedEval, type FitConfig, type FitDp, type FitTask,
  type GlobalModelMessage, type ModelMeta, type NodeStage, type NodeStatus, type NodeTask, type PrivacyRecord, type RoundMetrics, type RoundRecord, type StageName,
  type StageStatus, type UpdateMessage,
  // secure aggregation (§12)
  AdvertiseKeysTaskSchema, FitSecAggSchema, SECAGG_KEY_BYTES, SECAGG_MAX_NEIGHBOURS, SECAGG_SEALED_BYTES, SECAGG_SHARE_BYTES, SecAggAnswerSchema, SecAggEncodingSchema,
  ShareKeysTaskSchema, UnmaskTaskSchema, decodeSecAggAnswer, encodeSecAggAnswer,
  type AdvertiseKeysTask, type SecAggAnswer, type SecAggAnswerStage, type SecAggEncoding, type ShareKeysTask, type UnmaskTask,
} from './messages.ts';

// chunking.ts: chunked transfer of large payloads (§10, docs/chunking.md)
export {
  CHUNK_OVERHEAD_BYTES, ChunkErrorCodes, DEFAULT_MAX_PAYLOAD_BYTES, Reassembler, chunkSpan, decodeChunk, splitPayload,
  type Chunk, type ChunkErrorCode, type ReassemblerOptions, type ReassemblerTimers,
} from './chunking.ts';

// codecs/index.ts: update codecs (§11, docs/codecs.md), their registry and shared scratch buffers
export {
  CODEC_NAMES, Scratch, float16Codec, float16ToFloat32, float32Codec, float32ToFloat16, getCodec, int8Codec, isCodecName, seededRng,
  topkCodec, topkInt8Codec, withScratch,
  type CodecName, type CodecParams, type CodecState, type EncodedTensor, type PreparedTensor, type UpdateCodec,
} from './codecs/index.ts';

// downlink.ts: the global model on the wire (float32 or float16)
export { globalFromWire, globalToWire, type DownlinkDtype } from './downlink.ts';

// reconnect.ts: the reconnect policy of coordinator and nodes (§1.3)
export { backoffDelay, keepReconnecting, type BackoffOptions, type ReconnectableClient, type Reconnector } from './reconnect.ts';

// random.ts: the seeded generator and string hash every implementation must reproduce (§5.2, §5.4)
export { createRng, fnv1a32 } from './random.ts';
