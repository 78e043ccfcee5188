/**
 * Error codes raised by `@fedmq/ml`. Tests and callers should switch on `code`, never on the
 * message (same habit as Fastify's `lib/errors.js`).
 *
 * - `ML_BACKEND_UNAVAILABLE` — the requested TensorFlow.js backend could not be loaded/initialised,
 *   or a model was created before {@link initBackend} finished.
 * - `ML_UNKNOWN_MODEL` — {@link createModel} was given a name no one registered.
 * - `ML_WEIGHTS_MISMATCH` — weights passed to `setWeights` do not match the model (missing, extra,
 *   duplicate name, wrong shape or wrong data length).
 * - `ML_BAD_DATA` — a dataset file or in-memory dataset is malformed (bad IDX magic, truncated or
 *   corrupt file, malformed CSV row, a missing value, a label that is not a class number or not one
 *   of the given names, inconsistent sizes, unknown format, a folder holding more than one
 *   dataset), or does not fit a model (`checkDataFits`: features, classes).
 * - `ML_BAD_PARTITION` — a partition spec string or request cannot be satisfied (bad syntax,
 *   alpha ≤ 0, more nodes than examples, natural split without groups).
 * - `ML_BAD_OPTIONS` — invalid training options (epochs, batchSize, learningRate, optimizer), or
 *   invalid loading options (an empty or repeated class name in `labels`, `labels` for IDX data).
 */
export type FedmqMlErrorCode =
  | 'ML_BACKEND_UNAVAILABLE'
  | 'ML_UNKNOWN_MODEL'
  | 'ML_WEIGHTS_MISMATCH'
  | 'ML_BAD_DATA'
  | 'ML_BAD_PARTITION'
  | 'ML_BAD_OPTIONS';

/**
 * The single error class thrown by `@fedmq/ml`; `code` is one of {@link FedmqMlErrorCode}.
 * `cause` (standard `Error` option) carries the underlying error when there is one.
 */
export class FedmqMlError extends Error {
  /** Stable machine-readable code, e.g. `'ML_WEIGHTS_MISMATCH'`. */
  readonly code: FedmqMlErrorCode;

  constructor(code: FedmqMlErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FedmqMlError';
    this.code = code;
  }
}
