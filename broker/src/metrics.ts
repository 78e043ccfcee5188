import type { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import { ID_PATTERN } from '@fedmq/protocol';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Role } from './acl.ts';

/** Transport an MQTT connection came in on (label `transport` of the byte counters): plain or TLS TCP, WebSocket over HTTP or HTTPS. */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss';

/** Every transport, in label order. */
export const TRANSPORTS: readonly Transport[] = ['tcp', 'tls', 'ws', 'wss'];

/**
 * Whose bytes a socket carries (label `role` of the byte counters, keys of {@link Traffic}), from
 * the MQTT client id once the client has connected ({@link trafficRoleOf}): `node`
 * (`fedmq:{job}:node:{nodeId}`), `coordinator` (`fedmq:{job}:coordinator`), `monitor` (any other
 * id, authenticated as a monitor), `other` (any other id without a monitor's credentials — every
 * such client when auth is off — and every byte before the client is registered: the CONNECT, TLS
 * handshakes, connections refused or never completed).
 */
export type TrafficRole = 'node' | 'coordinator' | 'monitor' | 'other';

/** Every traffic role, in label order. */
export const TRAFFIC_ROLES: readonly TrafficRole[] = ['node', 'coordinator', 'monitor', 'other'];

/**
 * Bytes read from (`read`) and written to (`written`) MQTT sockets, per {@link TrafficRole}:
 * cumulative since the broker started, closed connections included. Socket bytes: MQTT fixed and
 * variable headers included, and TLS records or WebSocket frames for those transports (a
 * WebSocket's HTTP upgrade excluded). `written` of `node` is what the broker delivered to nodes
 * ("bytes down measured at the broker"): take two snapshots and subtract.
 */
export type Traffic = Record<TrafficRole, { read: number; written: number }>;

/**
 * The {@link TrafficRole} of a connected client: by its client id (`fedmq:{job}:node:{nodeId}` →
 * `node`, `fedmq:{job}:coordinator` → `coordinator`, job and node id valid ids), else `monitor`
 * when `principal` (its authenticated user, if any) is a monitor, else `other`. With auth on, the
 * ACL only lets a node or coordinator of that job use those ids (acl.ts `scopeToClientId`).
 */
export function trafficRoleOf(clientId: string, principal?: { role: Role } | null): TrafficRole {
  const parts = clientId.split(':');
  if (parts[0] === 'fedmq' && parts[1] !== undefined && ID_PATTERN.test(parts[1])) {
    if (parts.length === 4 && parts[2] === 'node' && ID_PATTERN.test(parts[3])) return 'node';
    if (parts.length === 3 && parts[2] === 'coordinator') return 'coordinator';
  }
  return principal?.role === 'monitor' ? 'monitor' : 'other';
}

/** One socket counted by {@link BrokerMetrics.trackSocket}. */
export interface TrackedSocket {
  /**
   * Counts the socket's bytes from now on under `role` (what it read and wrote so far stays under
   * the previous role, `other` at first). Called when its MQTT client connects.
   */
  setRole(role: TrafficRole): void;
}

/**
 * Why the broker refused a connection, a packet or a subscription (label `reason` of
 * `fedmq_broker_rejections_total`; docs/security.md):
 *
 * | reason | what happened |
 * |---|---|
 * | `packet_too_large` | a packet's fixed header declared more than `maxPacketBytes`: connection closed |
 * | `malformed_header` | a remaining length of more than 4 bytes: connection closed |
 * | `connection_rate` | too many new connections from one address: closed at once |
 * | `connections_per_address` | too many connections open at once from one address: closed at once |
 * | `connections_total` | too many connections open at once in total: closed at once |
 * | `handshake_timeout` | a TLS handshake or WebSocket upgrade not done within `handshakeTimeoutMs`: closed |
 * | `connect_timeout` | no MQTT CONNECT within `connectTimeoutMs`: closed |
 * | `tls_handshake` | the TLS handshake failed (e.g. no or an untrusted client certificate) |
 * | `byte_rate` | a connection over its byte rate: reading paused until the bucket refills (counted per pause) |
 * | `client_id` | client id empty with clean = false, too long, or with `+ # /` or control characters: CONNACK 2 |
 * | `anonymous` | no username with auth on: CONNACK 5 |
 * | `bad_credentials` | unknown user or wrong password: CONNACK 4 |
 * | `client_id_not_allowed` | the user may not use this client id (role rules): CONNACK 2 |
 * | `client_cert` | a client certificate that is not verified or whose CN is not the username: CONNACK 5 |
 * | `will_denied` | a Last Will on a topic the user may not publish to: CONNACK 5 |
 * | `publish_denied` | a PUBLISH the ACL denies: connection closed |
 * | `subscribe_denied` | a subscription the ACL denies: SUBACK 0x80 |
 * | `subscription_limit` | a subscription over the per-client cap: SUBACK 0x80 |
 * | `queue_full` | a QoS 1/2 message not queued for a persistent session whose queue is full: dropped for that client |
 */
export const REJECTION_REASONS = [
  'packet_too_large', 'malformed_header', 'connection_rate', 'connections_per_address', 'connections_total', 'handshake_timeout', 'connect_timeout',
  'tls_handshake', 'byte_rate', 'client_id', 'anonymous', 'bad_credentials', 'client_id_not_allowed', 'client_cert', 'will_denied', 'publish_denied',
  'subscribe_denied', 'subscription_limit', 'queue_full',
] as const;

/** One of {@link REJECTION_REASONS}. */
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** Prometheus metrics of one broker, on a registry of its own. */
export interface BrokerMetrics {
  /** The broker's own registry (not prom-client's global one): two brokers in a process don't clash. */
  registry: Registry;
  /**
   * Counts the bytes read from and written to `socket` until it closes, under `transport` and the
   * role `other` until {@link TrackedSocket.setRole} names its client's role.
   * `baseline` bytes already read/written (e.g. the HTTP upgrade request of a WebSocket) are not counted.
   */
  trackSocket(socket: Socket, transport: Transport, baseline?: { read: number; written: number }): TrackedSocket;
  /** Bytes per role so far, sockets still open included (a fresh object each call). */
  traffic(): Traffic;
  /** Counts one rejection under `reason`. */
  reject(reason: RejectionReason): void;
  /** Prometheus text exposition format (version 0.0.4). */
  text(): Promise<string>;
}

interface Tracked {
  transport: Transport;
  role: TrafficRole;
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
 * | `fedmq_broker_bytes_received_total{transport, role}` | counter | bytes read from MQTT sockets (`tcp`, `tls`, or `ws`/`wss` after the upgrade; framing included, TLS records included), by {@link TrafficRole} of the client |
 * | `fedmq_broker_bytes_sent_total{transport, role}` | counter | bytes written to MQTT sockets, by {@link TrafficRole} |
 * | `fedmq_broker_rejections_total{reason}` | counter | connections, packets and subscriptions refused, by {@link RejectionReason} |
 *
 * plus prom-client's default process metrics (`process_cpu_seconds_total`, `nodejs_heap_size_used_bytes`, …).
 *
 * Sent PUBLISH packets are counted in Aedes' `authorizeForward` hook (called once per packet and
 * receiving client, after de-duplication); an `authorizeForward` given in the Aedes options keeps
 * working and its `null` (drop) is not counted. Bytes come from the sockets' `bytesRead` /
 * `bytesWritten`, read at scrape time, at {@link BrokerMetrics.traffic}, when a socket's role is
 * set and when it closes; `role` is `other` until the client connects (the caller sets it with
 * {@link TrackedSocket.setRole}, `startBroker` does at Aedes' `client` event, before the CONNACK),
 * so a connection's CONNECT counts as `other` and everything after as its client's role.
 * {@link BrokerMetrics.traffic} gives the same byte counts per role, summed over transports.
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
  const bytesIn: Counter<'transport' | 'role'> = new Counter({
    name: 'fedmq_broker_bytes_received_total', help: 'Bytes read from MQTT sockets, by transport and client role', labelNames: ['transport', 'role'], registers: [registry],
    collect: flushAll,
  });
  const bytesOut: Counter<'transport' | 'role'> = new Counter({
    name: 'fedmq_broker_bytes_sent_total', help: 'Bytes written to MQTT sockets, by transport and client role', labelNames: ['transport', 'role'], registers: [registry],
    collect: flushAll,
  });
  const totals = Object.fromEntries(TRAFFIC_ROLES.map((role) => [role, { read: 0, written: 0 }])) as Traffic;
  for (const transport of TRANSPORTS) {
    for (const role of TRAFFIC_ROLES) {
      bytesIn.inc({ transport, role }, 0);
      bytesOut.inc({ transport, role }, 0);
    }
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
    const labels = { transport: t.transport, role: t.role };
    if (read > t.read) {
      bytesIn.inc(labels, read - t.read);
      totals[t.role].read += read - t.read;
    }
    if (written > t.written) {
      bytesOut.inc(labels, written - t.written);
      totals[t.role].written += written - t.written;
    }
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
      const t: Tracked = { transport, role: 'other', read: baseline.read, written: baseline.written };
      let open = true;
      sockets.set(socket, t);
      socket.once('close', () => {
        flush(socket, t);
        sockets.delete(socket);
        open = false;
      });
      return {
        setRole(role) {
          if (open) flush(socket, t);
          t.role = role;
        },
      };
    },
    traffic() {
      flushAll();
      return Object.fromEntries(TRAFFIC_ROLES.map((role) => [role, { ...totals[role] }])) as Traffic;
    },
    reject: (reason) => rejections.inc({ reason }),
    text: () => registry.metrics(),
  };
}
