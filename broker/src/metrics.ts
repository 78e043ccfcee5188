import type { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Transport an MQTT connection came in on (label `transport` of the byte counters). */
export type Transport = 'tcp' | 'ws';

/** Prometheus metrics of one broker, on a registry of its own. */
export interface BrokerMetrics {
  /** The broker's own registry (not prom-client's global one): two brokers in a process don't clash. */
  registry: Registry;
  /**
   * Counts the bytes read from and written to `socket` until it closes, under `transport`.
   * `baseline` bytes already read/written (e.g. the HTTP upgrade request of a WebSocket) are not counted.
   */
  trackSocket(socket: Socket, transport: Transport, baseline?: { read: number; written: number }): void;
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
 * | `fedmq_broker_bytes_received_total{transport}` | counter | bytes read from MQTT sockets (`tcp`, or `ws` after the upgrade, framing included) |
 * | `fedmq_broker_bytes_sent_total{transport}` | counter | bytes written to MQTT sockets |
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
  for (const transport of ['tcp', 'ws'] as const) {
    bytesIn.inc({ transport }, 0);
    bytesOut.inc({ transport }, 0);
  }

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
    text: () => registry.metrics(),
  };
}
