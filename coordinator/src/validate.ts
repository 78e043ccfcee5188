import { ErrorCodes, FedmqError, fromWireTensor, type NamedTensor, type UpdateMessage } from '@fedmq/protocol';

/**
 * Checks an update's tensors against the global model: same names in the same order, same
 * shapes, float32, every value finite. Returns the delta as float32 views.
 * @throws FedmqError FEDMQ_MODEL_MISMATCH, FEDMQ_BAD_TENSOR or FEDMQ_NON_FINITE.
 */
export function checkUpdateTensors(update: UpdateMessage, global: readonly NamedTensor[]): NamedTensor[] {
  if (update.tensors.length !== global.length) {
    throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `update has ${update.tensors.length} tensors, the global model ${global.length}`);
  }
  return global.map((g, i) => {
    const t = fromWireTensor(update.tensors[i]);
    if (t.name !== g.name) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${i} is ${JSON.stringify(t.name)}, expected ${JSON.stringify(g.name)}`);
    if (t.dtype !== 'float32') throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${g.name} is ${t.dtype}, expected float32`);
    if (t.shape.join(',') !== g.shape.join(',')) throw new FedmqError(ErrorCodes.MODEL_MISMATCH, `tensor ${g.name} has shape [${t.shape}], expected [${g.shape}]`);
    const d = t.data as Float32Array;
    for (let j = 0; j < d.length; j++) {
      if (!Number.isFinite(d[j])) throw new FedmqError(ErrorCodes.NON_FINITE, `tensor ${g.name} holds a non-finite value at ${j}`);
    }
    return { name: g.name, shape: g.shape, data: d };
  });
}
