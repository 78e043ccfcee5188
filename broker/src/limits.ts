import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * Limits the broker applies to every connection (docs/security.md, "Limits"), on TCP, TLS and
 * WebSocket alike, before Aedes sees a byte:
 *
 * - a packet size guard ({@link PacketSizeGuard}, {@link guardStream}): Aedes 1.2 has no maximum
 *   packet size (moscajs/aedes#831) and its parser buffers a whole packet before handling it, so a
 *   client could make the broker hold up to 256 MB per connection;
 * - a per-connection byte rate ({@link ByteRateLimiter}, applied by {@link guardStream} as
 *   backpressure: the socket is not read until the bucket has refilled);
 * - a per-address connection rate ({@link ConnectionRateLimiter});
 * - caps on open connections per address and in total ({@link OpenConnections});
 * - client id rules ({@link clientIdProblem}), answered with CONNACK return code 2.
 *
 * The per-client quotas that live above the transport (QoS 1 queue, subscriptions) are in
 * quotas.ts and retained.ts.
 */

/** Default maximum size of one MQTT packet, fixed header included: 16 MiB. */
export const DEFAULT_MAX_PACKET_BYTES = 16 * 1024 * 1024;

/** Default maximum length of an MQTT client id, in UTF-16 code units. */
export const DEFAULT_MAX_CLIENT_ID_LENGTH = 128;

/** Default connection rate per remote address: 50 per 10 s, loopback exempt. */
export const DEFAULT_CONNECTION_RATE: ConnectionRate = { max: 50, perMs: 10_000, exemptLoopback: true };

/**
 * Default byte rate per connection: a burst of 64 MiB, then 16 MiB/s (128 Mbit/s) sustained.
 * A node's chunked 40 MB update goes out at line speed from a full bucket; one connection cannot
 * keep the broker busy with more than 16 MiB/s (docs/security.md, "Why these defaults").
 */
export const DEFAULT_BYTE_RATE: ByteRate = { bytesPerSecond: 16 * 1024 * 1024, burstBytes: 64 * 1024 * 1024 };

/** Default cap on connections open at once from one remote address (loopback exempt): 100. */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 100;

/** Upper bound of the default total connection cap: 10,000 (lower when the open-file limit is; {@link defaultMaxConnections}). */
export const DEFAULT_MAX_CONNECTIONS = 10_000;

/** File descriptors kept free for everything else (listeners, Redis, logs, files) below the open-file limit. */
export const FD_RESERVE = 64;

/** Default time a TLS handshake or a WebSocket upgrade may take after the TCP connection: 10 s. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Default time from the TCP connection (or the TLS handshake / upgrade) to the MQTT CONNECT: 30 s (Aedes' `connectTimeout`). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

/**
 * Default cap on the QoS 1/2 messages queued for one persistent-session client: 100,000.
 * Counts every message in the session's outgoing queue (sent and not yet acknowledged, or not
 * yet sent because the client is offline).
 */
export const DEFAULT_MAX_QUEUED_MESSAGES = 100_000;

/** Default cap on the payload bytes queued for one persistent-session client: 1 GiB. */
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024 * 1024;

/** Default cap on the subscriptions (distinct filters) of one client, its stored session's included: 100. */
export const DEFAULT_MAX_SUBSCRIPTIONS = 100;

/**
 * A byte rate limit (token bucket): `burstBytes` tokens, one spent per byte received, refilled at
 * `bytesPerSecond`.
 */
export interface ByteRate {
  bytesPerSecond: number;
  burstBytes: number;
}

/**
 * Largest "remaining length" MQTT 3.1.1 can encode: four 7-bit groups (§2.2.3), 268,435,455 bytes.
 */
export const MAX_REMAINING_LENGTH = 268_435_455;

/** A connection rate limit: at most `max` new connections per remote address in `perMs` ms. */
export interface ConnectionRate {
  max: number;
  perMs: number;
  /**
   * Do not limit loopback addresses (127.0.0.0/8, ::1), so a local simulation can connect hundreds
   * of nodes at once. Behind a reverse proxy on the same host every client looks like loopback:
   * set this to false there. Default true.
   */
  exemptLoopback?: boolean;
}

/** The limits of one broker (option `limits` of `startBroker`; docs/security.md, "Limits"). */
export interface BrokerLimits {
  /** Largest MQTT packet accepted, in bytes, fixed header included. Default {@link DEFAULT_MAX_PACKET_BYTES}. */
  maxPacketBytes?: number;
  /** New connections per remote address; `false` turns the limit off. Default {@link DEFAULT_CONNECTION_RATE}. */
  connectionRate?: ConnectionRate | false;
  /** Longest client id accepted. Default {@link DEFAULT_MAX_CLIENT_ID_LENGTH}. */
  maxClientIdLength?: number;
  /**
   * Exempt loopback addresses (127.0.0.0/8, ::1) from every per-address limit: the connection
   * rate, the open connections per address and the byte rate. Default true (`fedmq simulate`
   * connects thousands of nodes from 127.0.0.1). Set false behind a reverse proxy or TLS
   * terminator on the same host, where every client looks like loopback (`--no-loopback-exempt`).
   * `connectionRate.exemptLoopback`, when given, still decides for the connection rate alone.
   */
  exemptLoopback?: boolean;
  /**
   * Bytes received per connection (token bucket), for every client but an authenticated
   * coordinator; `false` turns it off. Over the rate the broker stops reading the socket until the
   * bucket has refilled (backpressure: nothing is lost). Default {@link DEFAULT_BYTE_RATE}.
   */
  byteRate?: ByteRate | false;
  /** Connections open at once from one remote address (loopback exempt, see `exemptLoopback`). Default {@link DEFAULT_MAX_CONNECTIONS_PER_ADDRESS}; `0` = no cap. */
  maxConnectionsPerAddress?: number;
  /** Connections open at once in total, loopback included. Default {@link defaultMaxConnections}(); `0` = no cap. */
  maxConnections?: number;
  /** Milliseconds a TLS handshake (mqtts, https/wss) or a WebSocket upgrade may take after the TCP connection. Default {@link DEFAULT_HANDSHAKE_TIMEOUT_MS}. */
  handshakeTimeoutMs?: number;
  /** Milliseconds until the MQTT CONNECT must have arrived (Aedes' `connectTimeout`). Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  connectTimeoutMs?: number;
  /** QoS 1/2 messages queued per persistent-session client (memory persistence). Default {@link DEFAULT_MAX_QUEUED_MESSAGES}; `0` = no cap. */
  maxQueuedMessages?: number;
  /** Payload bytes queued per persistent-session client (memory persistence). Default {@link DEFAULT_MAX_QUEUED_BYTES}; `0` = no cap. */
  maxQueuedBytes?: number;
  /** Subscriptions (distinct filters) per client, a persistent session's stored ones included. Default {@link DEFAULT_MAX_SUBSCRIPTIONS}; `0` = no cap. */
  maxSubscriptions?: number;
}

/** Why the size guard stopped a connection. */
export type PacketViolation =
  /** A packet's declared size (1 + length bytes + remaining length) exceeds the limit. */
  | { reason: 'packet_too_large'; packetBytes: number; maxPacketBytes: number }
  /** The remaining length has a fifth continuation byte (MQTT 3.1.1 §2.2.3 allows four). */
  | { reason: 'malformed_header' };

/**
 * Follows the MQTT packet boundaries of a byte stream by reading only the fixed headers (MQTT
 * 3.1.1 §2.2: one type/flags byte, then the "remaining length" in 1–4 bytes of 7 bits, least
 * significant group first, high bit = "more bytes follow") and counting body bytes through,
 * without buffering anything. Reports a packet as soon as its header declares more than
 * `maxPacketBytes` in total — before its body arrives.
 *
 * State is a handful of numbers; a header split across chunks (even one byte per chunk) is fine.
 * After a violation the guard stays stopped (every later `push` returns the same violation).
 */
export class PacketSizeGuard {
  /** Bytes of the current packet's body still to come. */
  private bodyLeft = 0;
  /** 0: expecting a type byte; 1–4: reading length byte number `stage`. */
  private stage = 0;
  private length = 0;
  private multiplier = 1;
  private violation: PacketViolation | undefined;
  /** Complete packets seen. */
  packets = 0;

  /** @param maxPacketBytes largest packet accepted, in bytes (≥ 2: the smallest packet is 2 bytes). */
  constructor(readonly maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES) {
    if (!Number.isInteger(maxPacketBytes) || maxPacketBytes < 2) throw new RangeError(`maxPacketBytes must be an integer ≥ 2, got ${maxPacketBytes}`);
  }

  /** Feeds the next bytes of the stream. Returns `undefined` while all is well, else the violation. */
  push(chunk: Uint8Array): PacketViolation | undefined {
    if (this.violation) return this.violation;
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= n;
        i += n;
        if (this.bodyLeft === 0) this.packets++;
        continue;
      }
      const byte = chunk[i++];
      if (this.stage === 0) {
        this.stage = 1; // the type byte; any value is left for the MQTT parser to judge
        this.length = 0;
        this.multiplier = 1;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      if (byte & 0x80) {
        if (this.stage === 4) return (this.violation = { reason: 'malformed_header' });
        this.stage++;
        this.multiplier *= 128;
        continue;
      }
      const packetBytes = 1 + this.stage + this.length;
      if (packetBytes > this.maxPacketBytes) return (this.violation = { reason: 'packet_too_large', packetBytes, maxPacketBytes: this.maxPacketBytes });
      this.stage = 0;
      this.bodyLeft = this.length;
      if (this.length === 0) this.packets++;
    }
    return undefined;
  }
}

/** Options of {@link guardStream} beyond the packet size. */
export interface GuardOptions {
  /**
   * Bytes-received budget of this connection: after each chunk the guard spends its length; when
   * the bucket is in debt it stops reading `inner` until the debt is paid (backpressure down to
   * TCP: the peer's writes block, nothing is dropped). {@link ByteRateLimiter.lift} ends it.
   */
  rate?: ByteRateLimiter;
  /** Called each time reading is paused for the rate, with the pause in ms. */
  onThrottle?(delayMs: number): void;
}

/**
 * Puts a {@link PacketSizeGuard} between `inner` (a socket, TLS socket or WebSocket stream) and
 * Aedes: returns a Duplex that passes every chunk `inner` reads through the guard before it
 * becomes readable, and writes straight to `inner`. On a violation, `onViolation` is called once
 * and both streams are destroyed, so the oversized body is never read into the broker. With
 * `opts.rate`, reading also follows a byte rate ({@link GuardOptions.rate}).
 *
 * Backpressure is kept both ways (`inner` is paused while the guarded side is full; a write
 * returns false while `inner` is full). Ending, errors and close travel both ways; destroying the
 * returned stream without an error ends `inner` gracefully (FIN, TLS close_notify) and destroys it
 * 2 s later if the peer has not closed by then.
 */
export function guardStream(inner: Duplex, maxPacketBytes: number, onViolation: (v: PacketViolation) => void, opts: GuardOptions = {}): Duplex {
  const guard = new PacketSizeGuard(maxPacketBytes);
  let stopped = false;
  /** The guarded side is full: wait for its read(). */
  let full = false;
  /** Paused for the byte rate until this timer fires. */
  let throttle: NodeJS.Timeout | undefined;
  const outer: Duplex = new Duplex({
    readableHighWaterMark: 64 * 1024,
    writableHighWaterMark: 64 * 1024,
    read() {
      full = false;
      if (!stopped && !throttle) inner.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      if (inner.destroyed) return callback(new Error('connection closed'));
      if (inner.write(chunk)) callback();
      else inner.once('drain', () => callback());
    },
    // Aedes (mqtt-packet) corks the stream and writes a packet in pieces: hand them to the socket as
    // one write, or each piece waits for the peer's delayed ACK behind Nagle's algorithm (~40 ms a packet)
    writev(chunks, callback) {
      if (inner.destroyed) return callback(new Error('connection closed'));
      const buf = chunks.length === 1 ? (chunks[0].chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer));
      if (inner.write(buf)) callback();
      else inner.once('drain', () => callback());
    },
    final(callback) {
      inner.end();
      callback();
    },
    destroy(err, callback) {
      if (throttle) clearTimeout(throttle);
      throttle = undefined;
      if (err || inner.destroyed || !inner.writable) inner.destroy();
      else {
        // a normal close (Aedes after a DISCONNECT, or broker shutdown of a client): end our side and
        // read out what the client still sends (its own DISCONNECT/TLS close_notify), so the kernel
        // does not answer it with a reset; a client that never closes is cut off after 2 s
        stopped = true;
        inner.end();
        inner.resume();
        const t = setTimeout(() => inner.destroy(), 2000);
        t.unref();
        inner.once('close', () => clearTimeout(t));
      }
      callback(err);
    },
  });
  inner.on('data', (chunk: Buffer) => {
    if (stopped) return;
    const v = guard.push(chunk);
    if (v) {
      stopped = true;
      inner.pause();
      onViolation(v);
      inner.destroy();
      outer.destroy();
      return;
    }
    if (!outer.push(chunk)) {
      full = true;
      inner.pause();
    }
    const delay = opts.rate?.take(chunk.length) ?? 0;
    if (delay > 0 && !throttle && !stopped) {
      inner.pause();
      opts.onThrottle?.(delay);
      throttle = setTimeout(() => {
        throttle = undefined;
        if (!stopped && !full && !outer.destroyed) inner.resume();
      }, delay);
    }
  });
  inner.on('end', () => {
    if (!stopped) outer.push(null);
  });
  inner.on('error', (err) => outer.destroy(err));
  inner.on('close', () => {
    if (!outer.destroyed) outer.destroy();
  });
  return outer;
}

/**
 * A token bucket over bytes ({@link ByteRate}): starts full with `burstBytes` tokens and refills
 * at `bytesPerSecond`. {@link take} spends bytes that were already received (the bucket may go
 * into debt) and says how long to stop reading until the debt is paid.
 */
export class ByteRateLimiter {
  private tokens: number;
  private at: number;
  private lifted = false;

  /**
   * @param rate bytes per second (> 0) and burst bytes (≥ 1).
   * @param now clock in ms (injectable for tests).
   * @throws RangeError for a rate or burst that is not a positive number.
   */
  constructor(readonly rate: ByteRate, private readonly now: () => number = Date.now) {
    if (!(rate.bytesPerSecond > 0) || !(rate.burstBytes >= 1) || !Number.isFinite(rate.bytesPerSecond) || !Number.isFinite(rate.burstBytes)) {
      throw new RangeError(`byte rate must have bytesPerSecond > 0 and burstBytes ≥ 1, got ${JSON.stringify(rate)}`);
    }
    this.tokens = rate.burstBytes;
    this.at = now();
  }

  /**
   * Spends `bytes` (just received). Returns 0 while the bucket holds enough, else the ms to wait
   * before reading again: the debt divided by the rate, rounded up.
   */
  take(bytes: number): number {
    if (this.lifted) return 0;
    const t = this.now();
    this.tokens = Math.min(this.rate.burstBytes, this.tokens + ((t - this.at) * this.rate.bytesPerSecond) / 1000);
    this.at = t;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate.bytesPerSecond);
  }

  /** Ends the limit for this connection (e.g. once it authenticated as a coordinator). */
  lift(): void {
    this.lifted = true;
  }

  /** True after {@link lift}. */
  get isLifted(): boolean {
    return this.lifted;
  }
}

/** Why {@link OpenConnections.open} refused a connection. */
export type OpenConnectionRefusal = 'connections_per_address' | 'connections_total';

/**
 * Counts the connections open now, per remote address and in total, against two caps. Loopback
 * addresses are exempt from the per-address cap when `exemptLoopback`, never from the total.
 * Memory is bounded by the addresses with a connection open.
 */
export class OpenConnections {
  private readonly byAddress = new Map<string, number>();
  private open_ = 0;

  /**
   * @param maxPerAddress cap per address (0 = none).
   * @param maxTotal cap in total (0 = none).
   * @throws RangeError for a negative or fractional cap.
   */
  constructor(readonly maxPerAddress: number, readonly maxTotal: number, readonly exemptLoopback = true) {
    for (const [name, v] of [['maxConnectionsPerAddress', maxPerAddress], ['maxConnections', maxTotal]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be an integer ≥ 0, got ${v}`);
    }
  }

  /**
   * Counts a new connection from `address` and returns undefined, or refuses it (nothing counted)
   * with the cap it would exceed. Call {@link close} once for each accepted connection.
   */
  open(address: string | undefined): OpenConnectionRefusal | undefined {
    const addr = address ?? 'unknown';
    if (this.maxTotal > 0 && this.open_ >= this.maxTotal) return 'connections_total';
    const n = this.byAddress.get(addr) ?? 0;
    if (this.maxPerAddress > 0 && n >= this.maxPerAddress && !(this.exemptLoopback && isLoopback(addr))) return 'connections_per_address';
    this.byAddress.set(addr, n + 1);
    this.open_++;
    return undefined;
  }

  /** Forgets one connection of `address` counted by {@link open}. */
  close(address: string | undefined): void {
    const addr = address ?? 'unknown';
    const n = this.byAddress.get(addr);
    if (n === undefined) return;
    if (n <= 1) this.byAddress.delete(addr);
    else this.byAddress.set(addr, n - 1);
    this.open_--;
  }

  /** Connections open now. */
  get total(): number {
    return this.open_;
  }

  /** Connections open now from `address`. */
  of(address: string): number {
    return this.byAddress.get(address) ?? 0;
  }
}

/**
 * The default total connection cap: {@link DEFAULT_MAX_CONNECTIONS}, or the process's soft
 * open-file limit (RLIMIT_NOFILE, read from /proc/self/limits on Linux) minus {@link FD_RESERVE}
 * when that is lower (at least 16), so a flood is refused by the broker before accept() fails
 * with EMFILE for everyone. Elsewhere (no /proc) {@link DEFAULT_MAX_CONNECTIONS}.
 */
export function defaultMaxConnections(limitsFile = '/proc/self/limits'): number {
  let soft: number | undefined;
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(limitsFile, 'utf8'));
    if (m && m[1] !== 'unlimited') soft = Number(m[1]);
  } catch {
    soft = undefined;
  }
  return soft === undefined ? DEFAULT_MAX_CONNECTIONS : Math.min(DEFAULT_MAX_CONNECTIONS, Math.max(16, soft - FD_RESERVE));
}

/**
 * Counts new connections per remote address with a token bucket: `max` tokens per address, one
 * spent per connection, refilled at `max` per `perMs` ms (so a burst of `max`, then `max / perMs`
 * per ms on average). Idle addresses are forgotten, so memory is bounded by the addresses seen in
 * the last `perMs` ms.
 */
export class ConnectionRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep: number;

  /** @param now clock in ms (injectable for tests). */
  constructor(readonly rate: ConnectionRate, private readonly now: () => number = Date.now) {
    if (!(rate.max >= 1) || !(rate.perMs > 0)) throw new RangeError(`connection rate must have max ≥ 1 and perMs > 0, got ${JSON.stringify(rate)}`);
    this.lastSweep = now();
  }

  /** True when a connection from `address` may proceed (a token is spent); false when over the rate. */
  allow(address: string | undefined): boolean {
    const addr = address ?? 'unknown';
    if ((this.rate.exemptLoopback ?? true) && isLoopback(addr)) return true;
    const t = this.now();
    if (t - this.lastSweep >= this.rate.perMs) this.sweep(t);
    const b = this.buckets.get(addr) ?? { tokens: this.rate.max, at: t };
    b.tokens = Math.min(this.rate.max, b.tokens + ((t - b.at) * this.rate.max) / this.rate.perMs);
    b.at = t;
    this.buckets.set(addr, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.buckets.size;
  }

  /** Forgets every bucket that is full again. */
  private sweep(t: number): void {
    this.lastSweep = t;
    for (const [addr, b] of this.buckets) if (b.tokens + ((t - b.at) * this.rate.max) / this.rate.perMs >= this.rate.max) this.buckets.delete(addr);
  }
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms. */
export function isLoopback(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (a === '::1') return true;
  return isIP(a) === 4 && a.startsWith('127.');
}

/**
 * Why a client id is refused (CONNACK return code 2, "identifier rejected", MQTT 3.1.1 §3.2.2.3),
 * or `undefined` when it is acceptable:
 *
 * - empty with `clean` false: §3.1.3.1 [MQTT-3.1.3-8] requires the refusal (a session needs a name);
 * - longer than `maxLength`;
 * - containing `+`, `#` or `/`: a client id is not a topic, but ids are often put into topics and
 *   logs, where these characters are wildcards or separators;
 * - containing a control character (U+0000–U+001F, U+007F), which only serves log injection.
 */
export function clientIdProblem(clientId: string, clean: boolean, maxLength: number = DEFAULT_MAX_CLIENT_ID_LENGTH): string | undefined {
  if (clientId.length === 0) return clean ? undefined : 'empty client id with clean session false';
  if (clientId.length > maxLength) return `client id longer than ${maxLength}`;
  if (/[+#/]/.test(clientId)) return 'client id contains +, # or /';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(clientId)) return 'client id contains a control character';
  return undefined;
}
