import { ErrorCodes, FedmqError, getCodec, type NamedTensor, type PreparedTensor, type UpdateMessage } from '@fedmq/protocol';

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
