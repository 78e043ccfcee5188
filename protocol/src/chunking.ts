import { createHash, randomBytes } from 'node:crypto';
import { packMessage, unpackMessage } from './codec.ts';
import { ErrorCodes, FedmqError } from './errors.ts';

/**
 * Chunked transfer of large payloads over MQTT (docs/chunking.md).
 *
 * Cloud brokers cap messages (AWS IoT Core 128 KB, Azure IoT Hub 256 KB), so every payload on a
 * chunked topic is sent as one or more **chunks**: MessagePack maps carrying a transfer id, the
 * chunk's index, the chunk count, the whole payload's size and sha256, and a slice of the bytes.
 * A payload that fits is still one chunk (`count: 1`): receivers of a chunked topic see chunks
 * only. {@link splitPayload} cuts; {@link Reassembler} puts back together with bounded memory.
 */

/** Chunked-transfer error codes (a view of {@link ErrorCodes}; documented there). */
export const ChunkErrorCodes = {
  CHUNK_BAD: ErrorCodes.CHUNK_BAD,
  CHUNK_INCONSISTENT: ErrorCodes.CHUNK_INCONSISTENT,
  CHUNK_TOO_LARGE: ErrorCodes.CHUNK_TOO_LARGE,
  CHUNK_LIMIT: ErrorCodes.CHUNK_LIMIT,
  CHUNK_TIMEOUT: ErrorCodes.CHUNK_TIMEOUT,
  CHUNK_HASH: ErrorCodes.CHUNK_HASH,
} as const;
export type ChunkErrorCode = (typeof ChunkErrorCodes)[keyof typeof ChunkErrorCodes];

function chunkError(code: ChunkErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }): FedmqError {
  return new FedmqError(code, message, details, options);
}

/** Wire form of one chunk: a standard MessagePack map (packed with `packMessage`). */
export interface Chunk {
  /** Protocol version, always 2 (the chunk layout is that of protocol v2). */
  v: 2;
  /** Transfer id: 16 random bytes as 32 lowercase hex characters, unique per transfer. */
  transfer: string;
  /** 0-based index of this chunk, `0 ≤ index < count`. */
  index: number;
  /** Number of chunks in the transfer, ≥ 1 (exactly 1 when `total` is 0). */
  count: number;
  /** Size of the whole payload, bytes. */
  total: number;
  /** sha256 of the whole payload, 64 lowercase hex characters. */
  sha256: string;
  /** This chunk's slice of the payload: bytes `[offset, offset + length)` given by {@link chunkSpan}. */
  data: Uint8Array;
}

/** Default cap on one MQTT payload, bytes (128 KiB: AWS IoT Core's per-message limit). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 128 * 1024;

const TRANSFER_RE = /^[0-9a-f]{32}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/**
 * Upper bound on the bytes a chunk takes besides its `data` (map header, keys, the fixed-size
 * strings, integers in their widest 9-byte form, a 5-byte `bin 32` header), as `packMessage`
 * writes it. A chunk payload is at most `CHUNK_OVERHEAD_BYTES + data.length` bytes.
 */
export const CHUNK_OVERHEAD_BYTES: number = (() => {
  const widest = Number.MAX_SAFE_INTEGER;
  const empty = packMessage({ v: 2, transfer: '0'.repeat(32), index: widest, count: widest, total: widest, sha256: '0'.repeat(64), data: new Uint8Array(0) });
  return empty.length - 2 + 5; // an empty bin is `c4 00`; the widest bin header is `c6` + 4 bytes
})();

/**
 * The split rule: where chunk `index` of a transfer of `total` bytes in `count` chunks lies.
 * Every chunk but the last holds `size = ceil(total / count)` bytes; the last holds the rest,
 * `total − (count − 1) · size`, which is ≥ 1 for any valid (total, count). `total = 0` has one
 * empty chunk.
 *
 * @returns `offset` and `length` in bytes, or `undefined` when (total, count, index) is not a
 *   valid combination (count < 1, index ≥ count, count > 1 with total 0, or an empty last chunk).
 */
export function chunkSpan(total: number, count: number, index: number): { offset: number; length: number } | undefined {
  if (!Number.isSafeInteger(total) || !Number.isSafeInteger(count) || !Number.isSafeInteger(index)) return undefined;
  if (total < 0 || count < 1 || index < 0 || index >= count) return undefined;
  if (total === 0) return count === 1 ? { offset: 0, length: 0 } : undefined;
  const size = Math.ceil(total / count);
  if ((count - 1) * size >= total) return undefined; // the last chunk would be empty
  const offset = index * size;
  return { offset, length: Math.min(size, total - offset) };
}

/** A fresh transfer id: 16 random bytes, hex. */
export function newTransferId(): string {
  return randomBytes(16).toString('hex');
}

/**
 * Splits `payload` into chunk payloads, each (header included) at most `maxPayloadBytes` long.
 * Every payload becomes a transfer, even one that fits (`count: 1`), and even an empty one
 * (`count: 1, total: 0`), so a receiver on a chunked topic handles chunks only.
 *
 * Split rule (docs/chunking.md): with `room = maxPayloadBytes − CHUNK_OVERHEAD_BYTES`,
 * `count = max(1, ceil(total / room))` and every chunk but the last holds `ceil(total / count)`
 * bytes ({@link chunkSpan}). Chunks are returned in index order; publish them in that order.
 *
 * @param payload the whole payload (not copied until packed).
 * @param maxPayloadBytes cap on one chunk payload, bytes; default {@link DEFAULT_MAX_PAYLOAD_BYTES}.
 * @param transferId 32 lowercase hex characters; default a fresh random id. Never reuse one.
 * @throws FedmqError FEDMQ_BAD_CONFIG when `maxPayloadBytes` is not an integer greater than
 *   {@link CHUNK_OVERHEAD_BYTES} or `transferId` is not 32 lowercase hex characters.
 */
export function splitPayload(payload: Uint8Array, maxPayloadBytes: number = DEFAULT_MAX_PAYLOAD_BYTES, transferId: string = newTransferId()): Buffer[] {
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes <= CHUNK_OVERHEAD_BYTES) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `maxPayloadBytes must be an integer > ${CHUNK_OVERHEAD_BYTES}, got ${maxPayloadBytes}`, { maxPayloadBytes });
  }
  if (typeof transferId !== 'string' || !TRANSFER_RE.test(transferId)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, 'transferId must be 32 lowercase hex characters', { transferId });
  }
  const total = payload.byteLength;
  const room = maxPayloadBytes - CHUNK_OVERHEAD_BYTES;
  const count = total === 0 ? 1 : Math.ceil(total / room);
  const sha256 = createHash('sha256').update(payload).digest('hex');
  const out: Buffer[] = [];
  for (let index = 0; index < count; index++) {
    const { offset, length } = chunkSpan(total, count, index)!;
    const chunk: Chunk = { v: 2, transfer: transferId, index, count, total, sha256, data: payload.subarray(offset, offset + length) };
    out.push(packMessage(chunk));
  }
  return out;
}

/**
 * Decodes and validates one chunk payload (without reference to other chunks).
 *
 * @throws FedmqError FEDMQ_CHUNK_BAD when the payload is not MessagePack, not a map, lacks a
 *   field or has one of the wrong type, `transfer`/`sha256` are not lowercase hex of 32/64
 *   characters, (total, count, index) is not valid under the split rule ({@link chunkSpan}),
 *   or `data` is not binary of exactly the length the split rule gives its index;
 *   FEDMQ_UNSUPPORTED_VERSION when `v` is present and not 2.
 */
export function decodeChunk(payload: Uint8Array): Chunk {
  let value: unknown;
  try {
    value = unpackMessage(payload);
  } catch (err) {
    throw chunkError(ChunkErrorCodes.CHUNK_BAD, `chunk: payload is not MessagePack (${payload.byteLength} bytes)`, { bytes: payload.byteLength }, { cause: err });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw chunkError(ChunkErrorCodes.CHUNK_BAD, 'chunk: payload is not a MessagePack map');
  }
  const { v, transfer, index, count, total, sha256, data } = value as Record<string, unknown>;
  if (v !== undefined && v !== 2) throw new FedmqError(ErrorCodes.UNSUPPORTED_VERSION, `chunk: unsupported protocol version ${JSON.stringify(v)}`, { v });
  const bad = (what: string): FedmqError => chunkError(ChunkErrorCodes.CHUNK_BAD, `chunk: ${what}`, { transfer: typeof transfer === 'string' ? transfer.slice(0, 64) : undefined, index, count, total });
  if (v !== 2) throw bad('missing v');
  if (typeof transfer !== 'string' || !TRANSFER_RE.test(transfer)) throw bad('transfer must be 32 lowercase hex characters');
  if (typeof sha256 !== 'string' || !SHA256_RE.test(sha256)) throw bad('sha256 must be 64 lowercase hex characters');
  for (const [name, n] of [['index', index], ['count', count], ['total', total]] as const) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw bad(`${name} must be a non-negative integer`);
  }
  if (!(data instanceof Uint8Array)) throw bad('data must be binary');
  const span = chunkSpan(total as number, count as number, index as number);
  if (span === undefined) throw bad(`index ${index} / count ${count} / total ${total} is not a valid split`);
  if (data.byteLength !== span.length) throw bad(`data is ${data.byteLength} bytes, chunk ${index} of ${count} (total ${total}) holds ${span.length}`);
  return { v: 2, transfer, index: index as number, count: count as number, total: total as number, sha256, data };
}

/** Timer functions a {@link Reassembler} uses (inject for tests; default the global ones). */
export interface ReassemblerTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ReassemblerOptions {
  /** Largest whole payload accepted, bytes. A bigger transfer is refused at its first chunk: `push` throws FEDMQ_CHUNK_TOO_LARGE. */
  maxTotalBytes: number;
  /** Give up on an incomplete transfer this long after its last new (non-duplicate) chunk arrived, ms: `onError` FEDMQ_CHUNK_TIMEOUT. */
  timeoutMs: number;
  /** Bound on bytes held in incomplete transfers across all senders (the sum of their `total`); a new transfer beyond it is refused at its first chunk: `push` throws FEDMQ_CHUNK_LIMIT. */
  maxPendingBytes: number;
  /** Bound on the number of incomplete transfers (bookkeeping per transfer is small but not zero); beyond it `push` throws FEDMQ_CHUNK_LIMIT. Default 10 000. */
  maxPendingTransfers?: number;
  /**
   * Bound on the incomplete transfers of one sender. A new transfer from a sender that already
   * holds this many supersedes its oldest one: the oldest is dropped and reported to `onError`
   * (FEDMQ_CHUNK_LIMIT, naming the sender), so a sender can hold at most this many × `maxTotalBytes`
   * of the shared budget, and an honest sender that restarted an upload under a new transfer id is
   * not blocked by its own abandoned one. Default: no bound.
   */
  maxPendingPerSender?: number;
  /** How many finished (delivered, failed or refused) transfer ids to remember, so that their late chunks are ignored instead of starting a new transfer. Oldest forgotten first. Default 10 000. */
  rememberFinished?: number;
  /**
   * Called once per accepted transfer that fails (FEDMQ_CHUNK_TIMEOUT, FEDMQ_CHUNK_HASH,
   * FEDMQ_CHUNK_INCONSISTENT), after its memory is released, with the coded error and the
   * transfer/sender ids. Must not throw (it may run from a timer). Refusals and malformed chunks
   * are thrown by `push` instead.
   */
  onError?: (err: FedmqError, info: { transfer: string; sender: string }) => void;
  /** Timer functions; default the global `setTimeout`/`clearTimeout` (looked up at each call, so `vi.useFakeTimers()` works). Timers are `unref`'d when possible. */
  timers?: ReassemblerTimers;
}

interface PendingTransfer {
  sender: string;
  transfer: string;
  count: number;
  total: number;
  sha256: string;
  buf: Buffer;
  /** Bit i set once chunk i was written. */
  bitmap: Uint8Array;
  received: number;
  /** Bytes of every chunk payload received for the transfer (duplicates included): what it took on the wire. */
  wireBytes: number;
  timer: unknown;
}

const defaultTimers: ReassemblerTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Reassembles chunked transfers from many senders with bounded memory (docs/chunking.md,
 * "Receiver rules"). Transfers are keyed by (sender, transfer id). A transfer's buffer of
 * `total` bytes is allocated at its first accepted chunk, after the size and budget checks;
 * received chunks are tracked in a bitmap; the whole payload is hashed once complete.
 */
export class Reassembler {
  private readonly maxTotalBytes: number;
  private readonly timeoutMs: number;
  private readonly maxPendingBytes: number;
  private readonly maxPendingTransfers: number;
  private readonly maxPendingPerSender: number;
  private readonly rememberFinished: number;
  private readonly onError: ReassemblerOptions['onError'];
  private readonly timers: ReassemblerTimers;
  private readonly transfers = new Map<string, PendingTransfer>();
  /** Finished transfer keys, oldest first (a Map keeps insertion order). */
  private readonly finished = new Map<string, true>();
  private heldBytes = 0;

  /** @throws FedmqError FEDMQ_BAD_CONFIG on a limit that is not a non-negative integer (timeoutMs: positive finite). */
  constructor(opts: ReassemblerOptions) {
    const int = (name: string, v: unknown, min: number): number => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new FedmqError(ErrorCodes.BAD_CONFIG, `Reassembler: ${name} must be an integer ≥ ${min}, got ${String(v)}`, { [name]: v });
      return v;
    };
    this.maxTotalBytes = int('maxTotalBytes', opts.maxTotalBytes, 0);
    this.maxPendingBytes = int('maxPendingBytes', opts.maxPendingBytes, 0);
    this.maxPendingTransfers = int('maxPendingTransfers', opts.maxPendingTransfers ?? 10_000, 1);
    this.maxPendingPerSender = opts.maxPendingPerSender === undefined ? Infinity : int('maxPendingPerSender', opts.maxPendingPerSender, 1);
    this.rememberFinished = int('rememberFinished', opts.rememberFinished ?? 10_000, 0);
    if (typeof opts.timeoutMs !== 'number' || !Number.isFinite(opts.timeoutMs) || opts.timeoutMs <= 0) {
      throw new FedmqError(ErrorCodes.BAD_CONFIG, `Reassembler: timeoutMs must be a positive number of ms, got ${String(opts.timeoutMs)}`, { timeoutMs: opts.timeoutMs });
    }
    this.timeoutMs = opts.timeoutMs;
    this.onError = opts.onError;
    this.timers = opts.timers ?? defaultTimers;
  }

  /** Bytes currently held in incomplete transfers (sum of their `total`). */
  get pendingBytes(): number {
    return this.heldBytes;
  }

  /** Number of incomplete transfers. */
  get pending(): number {
    return this.transfers.size;
  }

  /**
   * Feeds one chunk payload received from `sender` (the MQTT topic, or a node id).
   *
   * @returns the whole payload when this chunk completes a transfer whose sha256 matches
   *   (a Buffer the caller owns), `undefined` otherwise — including for a duplicate chunk, a
   *   chunk of a finished transfer (late duplicate), and a chunk that makes its transfer fail
   *   (then `onError` was called).
   * @throws FedmqError FEDMQ_CHUNK_BAD (malformed chunk; state unchanged),
   *   FEDMQ_UNSUPPORTED_VERSION, FEDMQ_CHUNK_TOO_LARGE or FEDMQ_CHUNK_LIMIT (a new transfer
   *   refused at its first chunk; its later chunks are then ignored silently).
   */
  push(sender: string, chunkPayload: Uint8Array): Buffer | undefined {
    return this.pushTransfer(sender, chunkPayload)?.payload;
  }

  /**
   * {@link push}, and with the whole payload the bytes its transfer took on the wire: the sum of
   * the sizes of every chunk payload received for it (duplicates included), so a receiver counts
   * exactly one transfer's chunks even when other transfers of the same sender interleave.
   * @throws as {@link push}.
   */
  pushTransfer(sender: string, chunkPayload: Uint8Array): { payload: Buffer; wireBytes: number } | undefined {
    const c = decodeChunk(chunkPayload);
    const key = c.transfer + sender; // transfer ids have a fixed length: unambiguous
    if (this.finished.has(key)) return undefined;
    const info = { transfer: c.transfer, sender };
    let t = this.transfers.get(key);

    if (t === undefined) {
      if (c.total > this.maxTotalBytes) {
        this.remember(key);
        throw chunkError(ChunkErrorCodes.CHUNK_TOO_LARGE, `chunked transfer of ${c.total} bytes exceeds the limit of ${this.maxTotalBytes} bytes`, { ...info, total: c.total, maxTotalBytes: this.maxTotalBytes });
      }
      if (c.count === 1) {
        // Complete on arrival: nothing to hold.
        this.remember(key);
        const whole = Buffer.from(c.data); // a copy the caller owns
        if (sha256Hex(whole) !== c.sha256) {
          this.fail(chunkError(ChunkErrorCodes.CHUNK_HASH, `chunked transfer of ${c.total} bytes does not match its sha256`, { ...info, total: c.total }), info);
          return undefined;
        }
        return { payload: whole, wireBytes: chunkPayload.byteLength };
      }
      const own = [...this.transfers.entries()].filter(([, p]) => p.sender === sender);
      // a sender over its own bound gives up its oldest transfers (Map order is arrival order)
      for (const [oldKey, old] of own.slice(0, Math.max(0, own.length - this.maxPendingPerSender + 1))) {
        this.drop(oldKey, old);
        this.fail(
          chunkError(ChunkErrorCodes.CHUNK_LIMIT, `chunked transfer ${old.transfer} from ${sender} superseded by its transfer ${c.transfer} (at most ${this.maxPendingPerSender} pending per sender)`, {
            ...info, superseded: old.transfer, received: old.received, count: old.count, maxPendingPerSender: this.maxPendingPerSender,
          }),
          { transfer: old.transfer, sender },
        );
      }
      if (this.transfers.size >= this.maxPendingTransfers || this.heldBytes + c.total > this.maxPendingBytes) {
        this.remember(key);
        throw chunkError(ChunkErrorCodes.CHUNK_LIMIT, `chunked transfer of ${c.total} bytes from ${sender} refused: ${this.transfers.size} transfers / ${this.heldBytes} bytes pending (limits ${this.maxPendingTransfers} / ${this.maxPendingBytes}; largest holders ${this.holders(3)})`, {
          ...info,
          total: c.total,
          pending: this.transfers.size,
          pendingBytes: this.heldBytes,
          maxPendingTransfers: this.maxPendingTransfers,
          maxPendingBytes: this.maxPendingBytes,
        });
      }
      t = { sender, transfer: c.transfer, count: c.count, total: c.total, sha256: c.sha256, buf: Buffer.allocUnsafeSlow(c.total), bitmap: new Uint8Array(Math.ceil(c.count / 8)), received: 0, wireBytes: 0, timer: undefined };
      this.transfers.set(key, t);
      this.heldBytes += c.total;
    } else if (c.count !== t.count || c.total !== t.total || c.sha256 !== t.sha256) {
      this.drop(key, t);
      this.fail(
        chunkError(ChunkErrorCodes.CHUNK_INCONSISTENT, `chunk ${c.index} disagrees with its transfer (count ${c.count}/${t.count}, total ${c.total}/${t.total}, sha256 ${c.sha256 === t.sha256 ? 'same' : 'differs'})`, {
          ...info,
          index: c.index,
          count: c.count,
          total: c.total,
          expectedCount: t.count,
          expectedTotal: t.total,
        }),
        info,
      );
      return undefined;
    }

    t.wireBytes += chunkPayload.byteLength;
    const byte = c.index >> 3;
    const bit = 1 << (c.index & 7);
    if ((t.bitmap[byte] & bit) !== 0) return undefined; // duplicate: counted once
    t.bitmap[byte] |= bit;
    t.received++;
    t.buf.set(c.data, chunkSpan(t.total, t.count, c.index)!.offset);

    if (t.received < t.count) {
      this.arm(key, t);
      return undefined;
    }
    this.drop(key, t);
    if (sha256Hex(t.buf) !== t.sha256) {
      this.fail(chunkError(ChunkErrorCodes.CHUNK_HASH, `chunked transfer of ${t.total} bytes in ${t.count} chunks does not match its sha256`, { ...info, total: t.total, count: t.count }), info);
      return undefined;
    }
    return { payload: t.buf, wireBytes: t.wireBytes };
  }

  /** Drops every incomplete transfer (no `onError`) and clears its timer. Call on shutdown; the reassembler stays usable. */
  close(): void {
    for (const [key, t] of this.transfers) this.drop(key, t);
  }

  /**
   * Drops the incomplete transfers of every sender for which `stale(sender)` is true (no
   * `onError`: the caller knows why, e.g. the round they answer has closed); their late chunks are
   * then ignored. Returns the transfers dropped.
   */
  dropWhere(stale: (sender: string) => boolean): { sender: string; transfer: string; total: number }[] {
    const dropped: { sender: string; transfer: string; total: number }[] = [];
    for (const [key, t] of this.transfers) {
      if (!stale(t.sender)) continue;
      this.drop(key, t);
      dropped.push({ sender: t.sender, transfer: t.transfer, total: t.total });
    }
    return dropped;
  }

  /** `sender (bytes)` of the `n` senders holding the most pending bytes, for error messages. */
  private holders(n: number): string {
    const by = new Map<string, number>();
    for (const t of this.transfers.values()) by.set(t.sender, (by.get(t.sender) ?? 0) + t.total);
    const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, n);
    return top.length === 0 ? 'none' : top.map(([s, b]) => `${s} (${b} bytes)`).join(', ');
  }

  /** (Re)starts the inactivity timer of a pending transfer. */
  private arm(key: string, t: PendingTransfer): void {
    if (t.timer !== undefined) this.timers.clearTimeout(t.timer);
    const handle: unknown = this.timers.setTimeout(() => {
      if (t.timer !== handle || this.transfers.get(key) !== t) return; // stale or cleared timer
      const missing = t.count - t.received;
      this.drop(key, t);
      this.fail(
        chunkError(ChunkErrorCodes.CHUNK_TIMEOUT, `chunked transfer incomplete after ${this.timeoutMs} ms: ${missing} of ${t.count} chunks missing`, {
          transfer: t.transfer,
          sender: t.sender,
          received: t.received,
          count: t.count,
          total: t.total,
          timeoutMs: this.timeoutMs,
        }),
        { transfer: t.transfer, sender: t.sender },
      );
    }, this.timeoutMs);
    t.timer = handle;
    const h = handle as { unref?: () => unknown } | null;
    if (h !== null && typeof h === 'object' && typeof h.unref === 'function') h.unref();
  }

  /** Removes a pending transfer, releases its bytes and timer, and remembers it as finished. */
  private drop(key: string, t: PendingTransfer): void {
    if (t.timer !== undefined) this.timers.clearTimeout(t.timer);
    t.timer = undefined;
    this.transfers.delete(key);
    this.heldBytes -= t.total;
    this.remember(key);
  }

  private remember(key: string): void {
    if (this.rememberFinished === 0) return;
    this.finished.delete(key);
    this.finished.set(key, true);
    if (this.finished.size > this.rememberFinished) this.finished.delete(this.finished.keys().next().value as string);
  }

  private fail(err: FedmqError, info: { transfer: string; sender: string }): void {
    this.onError?.(err, info);
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
