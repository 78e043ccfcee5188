/**
 * Reconnection with capped exponential backoff and jitter for the MQTT clients of nodes, the
 * coordinator and the monitor.
 *
 * mqtt.js retries on a fixed `reconnectPeriod`: after a broker restart a whole fleet then
 * reconnects in lock-step, every second, forever. Here the clients are created with
 * `reconnectPeriod: 0` and {@link keepReconnecting} schedules each attempt itself, after
 * `backoffDelay(attempt)`: the n-th consecutive failure waits between half and all of
 * min(maxMs, initialMs · factor^n) ("equal jitter", M. Brooker, "Exponential Backoff And Jitter",
 * AWS Architecture Blog, 2015). A successful CONNACK resets the count.
 *
 * The attempt reuses the client's in-flight stores, so QoS 1 messages published while the broker
 * was unreachable are sent once the connection is back (mqtt.js' own `reconnect()` without
 * arguments would replace them with empty stores and lose them).
 */

/** Options of {@link keepReconnecting}. */
export interface BackoffOptions {
  /** Delay cap of the first attempt, ms. Default 500. */
  initialMs?: number;
  /** Largest delay cap, ms. Default 30 000. */
  maxMs?: number;
  /** Growth of the cap per consecutive failure. Default 2. */
  factor?: number;
  /** Uniform [0, 1) source of the jitter. Default `Math.random`. */
  rng?: () => number;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first after a disconnect), ms: uniform
 * in [cap/2, cap) with cap = min(maxMs, initialMs · factor^attempt).
 * @throws RangeError when initialMs or maxMs is not positive or factor < 1.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  if (!(initial > 0) || !(max > 0) || !(factor >= 1)) throw new RangeError(`bad backoff options ${JSON.stringify({ initial, max, factor })}`);
  const cap = Math.min(max, initial * factor ** Math.min(attempt, 64));
  return cap / 2 + (opts.rng ?? Math.random)() * (cap / 2);
}

/** The part of an mqtt.js `MqttClient` that {@link keepReconnecting} uses. */
export interface ReconnectableClient {
  readonly connected: boolean;
  /** mqtt.js' in-flight message stores (kept across attempts). */
  incomingStore: unknown;
  outgoingStore: unknown;
  on(event: 'close' | 'connect', listener: () => void): unknown;
  off(event: 'close' | 'connect', listener: () => void): unknown;
  // mqtt.js types the stores as `Store`; any store object is handed back unchanged
  reconnect(opts: { incomingStore: never; outgoingStore: never }): unknown;
}

/** Handle returned by {@link keepReconnecting}. */
export interface Reconnector {
  /** Consecutive failed attempts since the last successful connect. */
  readonly failures: number;
  /** Cancels a scheduled attempt and stops reconnecting (call before `client.end()`). */
  stop(): void;
}

/**
 * Reconnects `client` (created with `reconnectPeriod: 0`) after every connection loss, with the
 * delays of {@link backoffDelay}, until `stop()`.
 * @param onAttempt called before each scheduled attempt with its delay (for logs).
 */
export function keepReconnecting(client: ReconnectableClient, opts: BackoffOptions = {}, onAttempt?: (delayMs: number, attempt: number) => void): Reconnector {
  let failures = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const onConnect = () => {
    failures = 0;
  };
  const onClose = () => {
    if (stopped || timer || client.connected) return;
    const delay = backoffDelay(failures, opts);
    onAttempt?.(delay, failures);
    failures++;
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped || client.connected) return;
      client.reconnect({ incomingStore: client.incomingStore as never, outgoingStore: client.outgoingStore as never });
    }, delay);
  };
  client.on('connect', onConnect);
  client.on('close', onClose);
  return {
    get failures() {
      return failures;
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      client.off('connect', onConnect);
      client.off('close', onClose);
    },
  };
}
