/**
 * Update codecs (docs/codecs.md): one {@link UpdateCodec} per file, looked up by name.
 */
import { ErrorCodes, FedmqError } from '../errors.ts';
import { float16Codec } from './float16.ts';
import { float32Codec } from './float32.ts';
import { int8Codec } from './int8.ts';
import { topkInt8Codec } from './topk-int8.ts';
import { topkCodec } from './topk.ts';
import type { CodecName, UpdateCodec } from './types.ts';

export { Scratch, withScratch } from './wire.ts';
export type { CodecName, CodecParams, CodecState, EncodedTensor, PreparedTensor, UpdateCodec } from './types.ts';
export { float32Codec } from './float32.ts';
export { float16Codec, float32ToFloat16, float16ToFloat32, halfToNumber, numberToHalf, FLOAT16_MAX } from './float16.ts';
export { int8Codec, quantizeInt8, type Int8Blocks } from './int8.ts';
export { topkCodec } from './topk.ts';
export { topkInt8Codec } from './topk-int8.ts';
export { keptCount, topKIndices, selectNth } from './select.ts';
export { seededRng } from './rng.ts';
export { MAX_TENSOR_ELEMENTS } from './wire.ts';

const CODECS: Record<CodecName, UpdateCodec> = {
  float32: float32Codec,
  float16: float16Codec,
  int8: int8Codec,
  topk: topkCodec,
  'topk-int8': topkInt8Codec,
};

/** Every codec name, in order of increasing compression. Downlink codecs: `float32`, `float16`. */
export const CODEC_NAMES: readonly CodecName[] = Object.freeze(Object.keys(CODECS) as CodecName[]);

/** True when `name` names a codec. */
export function isCodecName(name: unknown): name is CodecName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(CODECS, name);
}

/**
 * The codec called `name`.
 * @throws FedmqError FEDMQ_WRONG_CODEC for an unknown name.
 */
export function getCodec(name: string): UpdateCodec {
  if (!isCodecName(name)) throw new FedmqError(ErrorCodes.WRONG_CODEC, `unknown codec ${JSON.stringify(name)}; known: ${CODEC_NAMES.join(', ')}`, { codec: name });
  return CODECS[name];
}
