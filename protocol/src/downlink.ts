import { ErrorCodes, FedmqError } from './errors.ts';
import { fromWireTensor, toWireTensor, type WireTensor } from './codec.ts';
import { float16ToFloat32, float32ToFloat16 } from './codecs/float16.ts';
import type { NamedTensor } from './tensor.ts';

/** Encodings of the global model on the downlink. */
export type DownlinkDtype = 'float32' | 'float16';

/**
 * The global model's weights as wire tensors in `dtype`: float32 as they are, or float16
 * (IEEE 754 binary16, round to nearest even, finite values beyond ±65504 saturate), which halves
 * the model's bytes on every node's link. The model hash is computed over these wire bytes.
 */
export function globalToWire(weights: readonly NamedTensor[], dtype: DownlinkDtype = 'float32'): WireTensor[] {
  if (dtype === 'float32') return weights.map((w) => toWireTensor(w, 'float32'));
  return weights.map((w) => toWireTensor({ name: w.name, shape: w.shape, data: float32ToFloat16(w.data, undefined, true) }, 'float16'));
}

/**
 * Float32 weights from a global model's wire tensors (float32 or float16).
 * @throws FedmqError FEDMQ_BAD_TENSOR on a malformed tensor or another dtype.
 */
export function globalFromWire(tensors: readonly unknown[]): NamedTensor[] {
  return tensors.map((w) => {
    const t = fromWireTensor(w);
    if (t.dtype === 'float32') return { name: t.name, shape: t.shape, data: t.data as Float32Array };
    if (t.dtype === 'float16') return { name: t.name, shape: t.shape, data: float16ToFloat32(t.data as Uint16Array) };
    throw new FedmqError(ErrorCodes.BAD_TENSOR, `global model tensor ${JSON.stringify(t.name)} is ${t.dtype}, expected float32 or float16`, { name: t.name });
  });
}
