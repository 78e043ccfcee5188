import { ErrorCodes, FedmqError, getCodec, packMessage, seededRng, type CodecParams, type NamedTensor, type PreparedTensor, type UpdateMessage } from '@fedmq/protocol';

/**
 * Checks an update's tensors against the global model and its codec before anything is folded
 * in: same names in the same order, same shapes, and each tensor valid for the codec (byte
 * lengths, index ranges, finite values and scales). Returns the tensors ready to be added, as
 * views of the payload (no decoded copy), so an update is folded in whole or not at all.
 * @throws FedmqError FEDMQ_WRONG_CODEC (not the task's codec), FEDMQ_MODEL_MISMATCH,
 *   FEDMQ_BAD_TENSOR or FEDMQ_NON_FINITE.
 */
export function checkUpdateTensors(update: UpdateMessage, global: readonly NamedTensor[], taskCodec: string): PreparedTensor[] {
  if (update.codec !== taskCodec) throw new FedmqError(ErrorCodes.WRONG_CODEC, `codec ${JSON.stringify(update.codec)}, the task asked for ${taskCodec}`);
  const codec = getCodec(taskCodec);
  if (update.tensors.length !== global.length) {
    throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `update has ${update.tensors.length} tensors, the global model ${global.length}`);
  }
  return global.map((g, i) => {
    const t = update.tensors[i];
    if (t.name !== g.name) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${i} is ${JSON.stringify(t.name)}, expected ${JSON.stringify(g.name)}`);
    if (t.codec !== taskCodec) throw new FedmqError(ErrorCodes.WRONG_CODEC, `tensor ${g.name} is ${JSON.stringify(t.codec)}, the task asked for ${taskCodec}`);
    if (t.shape.join(',') !== g.shape.join(',')) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${g.name} has shape [${t.shape}], expected [${g.shape}]`);
    return codec.prepare(t);
  });
}

/** Room for an update's envelope (ids ≤ 64 characters, codec name, metrics, MessagePack framing) beside its tensors, bytes. */
const UPDATE_ENVELOPE_BYTES = 64 * 1024;

/**
 * The largest Update payload (docs/protocol.md §3.8) a node can honestly send for a global model
 * of these tensors in `codec`, bytes: the MessagePack size of the encoded tensors of a delta (every
 * codec has a layout fixed by the shapes and params; a seeded random delta is encoded so that no
 * codec can be smaller for zeros), plus 1 % and {@link UPDATE_ENVELOPE_BYTES} for the envelope.
 * The coordinator refuses chunked transfers that announce more (FEDMQ_CHUNK_TOO_LARGE), so one
 * node cannot reserve more of the reassembly budget than a real update takes (docs/chunking.md §3).
 * @throws FedmqError FEDMQ_BAD_CONFIG for an unknown codec.
 */
/**
 * The largest masked-input Update (secure aggregation, docs/protocol.md §12.4) for a model of these
 * tensors: d + 1 words of at most 32 bits, plus {@link UPDATE_ENVELOPE_BYTES}, bytes.
 */
export function maxMaskedInputBytes(global: readonly NamedTensor[]): number {
  const params = global.reduce((n, t) => n + t.data.length, 0);
  return 4 * (params + 1) + UPDATE_ENVELOPE_BYTES;
}

export function maxUpdateBytes(global: readonly NamedTensor[], codec: string, params: CodecParams = {}): number {
  const rng = seededRng(1);
  const delta = global.map((t) => {
    const data = new Float32Array(t.data.length);
    for (let i = 0; i < data.length; i++) data[i] = rng() * 2 - 1;
    return { name: t.name, shape: [...t.shape], data };
  });
  const encoded = getCodec(codec).encode(delta, params, {}, seededRng(2));
  return Math.ceil(packMessage(encoded).byteLength * 1.01) + UPDATE_ENVELOPE_BYTES;
}
