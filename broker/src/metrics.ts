import type { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Transport an MQTT connection came in on (label `transport` of the byte counters): plain or TLS TCP, WebSocket over HTTP or HTTPS. */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss';

/** Every transport, in label order. */
export const TRANSPORTS: readonly Transport[] = ['tcp', 'tls', 'ws', 'wss'];

/**
 * Why the broker refused a connection, a packet or a subscription (label `reason` of
 * `fedmq_broker_rejections_total`; docs/security.md):
 *
 * | reason | what happened |
 * |---|---|
 * | `packet_too_large` | a packet's fixed header declared more than `maxPacketBytes`: connection closed |
 * | `malformed_header` | a remaining length of more than 4 bytes: connection closed |
 * | `connection_rate` | too many new connections from one address: closed at once |
 * | `tls_handshake` | the TLS handshake failed (e.g. no or an untrusted client certificate) |
 * | `client_id` | client id empty with clean = false, too long, or with `+ # /` or control characters: CONNACK 2 |
 * | `anonymous` | no username with auth on: CONNACK 5 |
 * | `bad_credentials` | unknown user or wrong password: CONNACK 4 |
 * | `client_id_not_allowed` | the user may not use this client id (role rules): CONNACK 2 |
 * | `client_cert` | a client certificate that is not verified or whose CN is not the username: CONNACK 5 |
 * | `will_denied` | a Last Will on a topic the user may not publish to: CONNACK 5 |
 * | `publish_denied` | a PUBLISH the ACL denies: connection closed |
 * | `subscribe_denied` | a subscription the ACL denies: SUBACK 0x80 |
 */
export const REJECTION_REASONS = [
  'packet_too_large', 'malformed_header', 'connection_rate', 'tls_handshake', 'client_id', 'anonymous', 'bad_credentials',
  'client_id_not_allowed', 'client_cert', 'will_denied', 'publish_denied', 'subscribe_denied',
] as const;

/** One of {@link REJECTION_REASONS}. */
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** Prometheus metrics of one broker, on a registry of its own. */
export interface BrokerMetrics {
  /** The broker's own registry (not prom-client's global one): two brokers in a process don't clash. */
  registry: Registry;
  /**
   * Counts the bytes read from and written to `socket` until it closes, under `transport`.
   * `baseline` bytes already read/written (e.g. the HTTP upgrade request of a WebSocket) are not counted.
   */
  trackSocket(socket: Socket, transport: Transport, baseline?: { read: number; written: number }): void;
  /** Counts one rejection under `reason`. */
  reject(reason: RejectionReason): void;
  /** Prometheus text exposition format (version 0.0.4). */
  text(): Promise<string>;
}

interface Tracked {
  transport: Transport;
  read: number;
  written: number;
}

/**
 * Instruments an Aedes broker with prom-client metrics:
 *
 * | metric | type | meaning |
 * |---|---|---|
 * | `fedmq_broker_connections` | gauge | MQTT clients connected now (CONNACK sent, not yet gone) |
 * | `fedmq_broker_connections_total` | counter | MQTT clients that connected (Aedes `client` events) |
 * | `fedmq_broker_messages_received_total` | counter | PUBLISH packets received from clients |
 * | `fedmq_broker_messages_sent_total` | counter | PUBLISH packets forwarded to clients (incl. retained ones on subscribe) |
 * | `fedmq_broker_bytes_received_total{transport}` | counter | bytes read from MQTT sockets (`tcp`, `tls`, or `ws`/`wss` after the upgrade; framing included, TLS records included) |
 * | `fedmq_broker_bytes_sent_total{transport}` | counter | bytes written to MQTT sockets |
 * | `fedmq_broker_rejections_total{reason}` | counter | connections, packets and subscriptions refused, by {@link RejectionReason} |
 *
 * plus prom-client's default process metrics (`process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`, …).
 *
 * Sent PUBLISH packets are counted in Aedes' `authorizeForward` hook (called once per packet and
 * receiving client, after de-duplication); an `authorizeForward` given in the Aedes options keeps
 * working and its `null` (drop) is not counted. Bytes come from the sockets' `bytesRead` /
 * `bytesWritten`, read at scrape time and when a socket closes.
 */
export function instrumentBroker(aedes: Aedes): BrokerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const sockets = new Map<Socket, Tracked>();

  new Gauge({
    name: 'fedmq_broker_connections', help: 'MQTT clients connected now', registers: [registry],
    collect() {
      this.set(aedes.connectedClients);
    },
  });
  const connections = new Counter({ name: 'fedmq_broker_connections_total', help: 'MQTT clients that connected', registers: [registry] });
  const received = new Counter({ name: 'fedmq_broker_messages_received_total', help: 'PUBLISH packets received from clients', registers: [registry] });
  const sent = new Counter({ name: 'fedmq_broker_messages_sent_total', help: 'PUBLISH packets forwarded to clients', registers: [registry] });
  const bytesIn: Counter<'transport'> = new Counter({
    name: 'fedmq_broker_bytes_received_total', help: 'Bytes read from MQTT sockets', labelNames: ['transport'], registers: [registry],
    collect: flushAll,
  });
  const bytesOut: Counter<'transport'> = new Counter({
    name: 'fedmq_broker_bytes_sent_total', help: 'Bytes written to MQTT sockets', labelNames: ['transport'], registers: [registry],
    collect: flushAll,
  });
  for (const transport of TRANSPORTS) {
    bytesIn.inc({ transport }, 0);
    bytesOut.inc({ transport }, 0);
  }
  const rejections: Counter<'reason'> = new Counter({
    name: 'fedmq_broker_rejections_total', help: 'Connections, packets and subscriptions refused, by reason', labelNames: ['reason'], registers: [registry],
  });
  for (const reason of REJECTION_REASONS) rejections.inc({ reason }, 0);

  function flushAll() {
    for (const [socket, t] of sockets) flush(socket, t);
  }

  /** Adds what `socket` read/wrote since the last flush. */
  function flush(socket: Socket, t: Tracked) {
    const read = socket.bytesRead;
    const written = socket.bytesWritten;
    if (read > t.read) bytesIn.inc({ transport: t.transport }, read - t.read);
    if (written > t.written) bytesOut.inc({ transport: t.transport }, written - t.written);
    t.read = Math.max(t.read, read);
    t.written = Math.max(t.written, written);
  }

  aedes.on('client', () => connections.inc());
  aedes.on('publish', (_packet, client) => {
    if (client) received.inc();
  });
  const authorizeForward = aedes.authorizeForward;
  aedes.authorizeForward = function countingAuthorizeForward(client, packet) {
    const forwarded = authorizeForward.call(this, client, packet);
    if (forwarded) sent.inc();
    return forwarded;
  };

  return {
    registry,
    trackSocket(socket, transport, baseline = { read: 0, written: 0 }) {
      const t: Tracked = { transport, read: baseline.read, written: baseline.written };
      sockets.set(socket, t);
      socket.once('close', () => {
        flush(socket, t);
        sockets.delete(socket);
      });
    },
    reject: (reason) => rejections.inc({ reason }),
    text: () => registry.metrics(),
  };
}
