import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import { Aedes, type AedesOptions } from 'aedes';
import { ErrorCodes } from '@fedmq/protocol';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Credentials, loadCredentials } from './auth.ts';
import { installSecurityHooks, type ConnectionInfo } from './hooks.ts';
import { MQTT_WS_PATH, gateConnections, startHttp, type BrokerHttp, type StaticAsset, type WebSocketGate } from './http.ts';
import {
  ByteRateLimiter, ConnectionRateLimiter, DEFAULT_BYTE_RATE, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_CONNECTION_RATE, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_CLIENT_ID_LENGTH,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_PACKET_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_MAX_SUBSCRIPTIONS, OpenConnections,
  defaultMaxConnections, guardStream, isLoopback, type BrokerLimits,
} from './limits.ts';
import { installQueueLimits, installSubscriptionCap, memoryStoreOf, storeGrantedOnly, type GrantedFilters } from './quotas.ts';
import { instrumentBroker, trafficRoleOf, type Traffic, type Transport } from './metrics.ts';
import { createPersistence } from './persistence.ts';
import { assertClusterOptions, startCluster, type PubsubLimitOutcome } from './cluster.ts';
import { peerIdentity, tlsServerOptions, type BrokerTls } from './tls.ts';

// The public API of @fedmq/broker: startBroker (below) and a curated list from its modules (docs/security.md).
// http.ts: dashboard, /metrics and MQTT over WebSocket
export { MQTT_WS_PATH, type StaticAsset } from './http.ts';
// persistence.ts: memory or Redis persistence
export { createPersistence, parseRedisUrl, type BrokerPersistence } from './persistence.ts';
// cluster.ts: several brokers on one Redis
export { CLUSTER_HEARTBEAT_MS, REDIS_DEFAULT_PUBSUB_LIMIT, clusterPubsubLimit, parsePubsubLimit, pubsubLimitLine, type PubsubLimit, type PubsubLimitOutcome } from './cluster.ts';
// metrics.ts: Prometheus metrics and per-role byte counters
export {
  instrumentBroker, REJECTION_REASONS, TRAFFIC_ROLES, TRANSPORTS, trafficRoleOf, type BrokerMetrics, type RejectionReason, type TrackedSocket, type Traffic, type TrafficRole, type Transport,
} from './metrics.ts';
// acl.ts: the ACL generated from the topic table
export {
  ROLES, RESERVED_CLIENT_ID_PREFIX, aclTable, canPublish, canSubscribe, clientIdOwner, filterWithin, publishFlagsProblem, readableFilters, scopeToClientId, writableFilters, type Principal, type Role,
} from './acl.ts';
// auth.ts: credentials file, scrypt passwords
export {
  Credentials, DEFAULT_SCRYPT, addCredential, generatePassword, hashPassword, loadCredentials, parseCredentials, removeCredential, verifyPassword,
  type CredentialEntry, type CredentialSummary, type CredentialsFile, type NewCredential, type ScryptParams,
} from './auth.ts';
// limits.ts: packet size, byte rate, connection rate, open connections, timeouts and client id limits
export {
  ByteRateLimiter, ConnectionRateLimiter, DEFAULT_BYTE_RATE, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_CONNECTION_RATE, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_CLIENT_ID_LENGTH,
  DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_PACKET_BYTES, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_MAX_SUBSCRIPTIONS,
  MAX_REMAINING_LENGTH, OpenConnections, PacketSizeGuard, clientIdProblem, defaultMaxConnections, guardStream, isLoopback,
  type BrokerLimits, type ByteRate, type ConnectionRate, type GuardOptions, type OpenConnectionRefusal, type PacketViolation,
} from './limits.ts';
// quotas.ts and retained.ts: per-client subscription and QoS 1 queue caps
export { memoryStoreOf } from './quotas.ts';
export { IndexedMemoryPersistence, type QueueDrop, type QueueLimits } from './retained.ts';
// tls.ts: TLS listener options and client certificates
export { clientCertProblem, peerIdentity, tlsServerOptions, type BrokerTls, type PeerIdentity } from './tls.ts';
// certs.ts: development certificates (`fedmq certs`)
export { makeDevCerts, type DevCerts, type DevCertsOptions } from './certs.ts';
// dev-redis.ts: a throwaway redis-server (tests, benchmarks, trying a cluster) and a free port for such servers
export { freePort, startRedisServer, type RedisServer } from './dev-redis.ts';
// thread.ts: the broker on a worker thread of its own (the embedded broker of `fedmq simulate`)
export { startBrokerThread, type BrokerThread, type BrokerThreadOptions } from './thread.ts';
// hooks.ts: what the security hooks know about a connection
export type { ConnectionInfo } from './hooks.ts';

/** Default port of MQTT over TLS (IANA). */
export const DEFAULT_TLS_PORT = 8883;

/** Options of {@link startBroker}. */
export interface BrokerOptions {
  /**
   * TCP port for plain MQTT; 0 picks a free one; `null` opens no plain listener.
   * Default 1883 — or `null` when `tls` is given (then only `mqtts` and `wss` are served).
   */
  port?: number | null;
  /** Interface to listen on. Default `0.0.0.0` (all). */
  host?: string;
  /** Structured logger; default silent. */
  logger?: Logger;
  /** Extra Aedes options (persistence, mqemitter, hooks). Hooks given here run after fedmq's own checks accept. */
  aedes?: AedesOptions;
  /**
   * Where retained messages and persistent sessions live: `memory` (default) or a Redis URL
   * (`redis://host:port/db`, `unix:/path`), see {@link createPersistence}. Ignored when
   * `aedes.persistence` is given.
   */
  persistence?: string;
  /**
   * Join a cluster of brokers on one Redis (`redis://host:port[/db]`, see `startCluster` in
   * cluster.ts and docs/scale.md): messages are relayed to the other brokers, retained messages,
   * sessions and wills are kept in that Redis. Implies `persistence` on the same URL; another
   * `persistence` is refused (FEDMQ_BAD_CONFIG).
   */
  cluster?: string;
  /**
   * HTTP port for the web dashboard (`/`), Prometheus metrics (`/metrics`) and MQTT over
   * WebSocket (`/mqtt`); 0 picks a free one. HTTPS and `wss` when `tls` is given. Default: no HTTP server.
   */
  httpPort?: number;
  /** Interface the HTTP server listens on. Default: `host`. */
  httpHost?: string;
  /**
   * Files served over HTTP, by URL path. Default: the web dashboard of `@fedmq/monitor`
   * (`dashboardAssets()`, loaded only when `httpPort` is given).
   */
  httpAssets?: Map<string, StaticAsset>;
  /**
   * Limits (docs/security.md, "Limits"; defaults in {@link BrokerLimits}): packet size, byte rate,
   * connection rate, open connections per address and in total, handshake and CONNECT timeouts,
   * client id, QoS 1 queue and subscriptions per client. Always on.
   */
  limits?: BrokerLimits;
  /**
   * Authentication and ACL: a credentials file path (docs/security.md) or loaded {@link Credentials}.
   * Default: none — every client may connect, publish and subscribe (local development).
   */
  auth?: string | Credentials;
  /** Serve MQTT over TLS on `tlsPort`, and HTTPS/`wss` on `httpPort` (PEM contents, see {@link BrokerTls}). */
  tls?: BrokerTls;
  /** TCP port for MQTT over TLS; 0 picks a free one. Default {@link DEFAULT_TLS_PORT} (only with `tls`). */
  tlsPort?: number;
}

/** A running broker. */
export interface RunningBroker {
  /**
   * `mqtt://HOST:PORT` clients connect to (`localhost` when listening on all interfaces); the
   * `mqtts://` URL when there is no plain listener.
   */
  url: string;
  /** Port of `url`. */
  port: number;
  /** `mqtts://HOST:PORT` (only with `tls`). */
  tlsUrl?: string;
  /** The TLS port actually bound (only with `tls`). */
  tlsPort?: number;
  aedes: Aedes;
  /** The broker's own Prometheus registry (metrics listed at {@link instrumentBroker}). */
  metrics: Registry;
  /** The users, when `auth` is on. */
  credentials?: Credentials;
  /**
   * Bytes read from and written to MQTT sockets so far, per client role (`node`, `coordinator`,
   * `monitor`, `other`; see {@link Traffic} and `TrafficRole`), over every transport, closed
   * connections included. Bytes delivered to the nodes between two moments:
   * `after.node.written - before.node.written`. The same counts as
   * `fedmq_broker_bytes_{received,sent}_total{transport, role}` in {@link RunningBroker.metrics}.
   */
  traffic(): Traffic;
  /** `http://HOST:PORT/` (`https://` with `tls`): the dashboard (only with `httpPort`). `/metrics` is under it. */
  httpUrl?: string;
  /** The HTTP port actually bound (only with `httpPort`). */
  httpPort?: number;
  /** `ws://HOST:PORT/mqtt` (`wss://` with `tls`): MQTT over WebSocket (only with `httpPort`). */
  wsUrl?: string;
  /** With `cluster`: its Redis URL (password removed) and what was done about Redis's pubsub output buffer limit. */
  cluster?: { url: string; pubsubLimit: PubsubLimitOutcome };
  /** Disconnects every client (TCP, TLS and WebSocket), stops the HTTP server and stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/** Pending connections the kernel queues per listener (capped by net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    // a deep accept queue: a fleet reconnecting at once (a broker restart) overflows Node's default of 511
    server.listen(port, host, LISTEN_BACKLOG, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

/**
 * Starts an Aedes 1.x MQTT 3.1.1 broker on a TCP port and/or a TLS port, and with `httpPort` an
 * HTTP(S) server for the web dashboard, `/metrics` (Prometheus) and MQTT over WebSocket on `/mqtt`.
 *
 * Every connection, whatever its transport, first passes the limits (docs/security.md): a
 * per-address connection rate, checked before anything is read (before the TLS handshake on the
 * TLS port); a packet size guard that reads only MQTT fixed headers and closes a connection whose
 * next packet would exceed `maxPacketBytes` before its body is buffered; client id rules at
 * CONNECT. With `auth`, CONNECTs need a username and password from the credentials file and the
 * ACL of `acl.ts` governs every PUBLISH and SUBSCRIBE; with `tls.requestClientCert` or
 * `requireClientCert`, a client certificate's CN must equal the username. Each refusal is logged
 * and counted in `fedmq_broker_rejections_total{reason}`.
 *
 * Malformed frames and client errors are logged (`clientError`, `connectionError`) and close only
 * the offending connection; the broker keeps running.
 *
 * @returns the broker's URLs and a `close()`.
 * @throws the listen error (e.g. `EADDRINUSE`) when a port cannot be bound (whatever was started is
 *   closed first); FedmqError FEDMQ_BAD_CONFIG for an unreadable or invalid credentials file, or
 *   client certificates without `tls.ca`; RangeError for invalid limits.
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<RunningBroker> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const limits = resolveLimits(opts.limits);
  const { maxPacketBytes, exemptLoopback } = limits;
  const limiter = limits.connectionRate === false ? undefined : new ConnectionRateLimiter(limits.connectionRate);
  const openConnections = new OpenConnections(limits.maxConnectionsPerAddress, limits.maxConnections, exemptLoopback);
  const tlsOptions = opts.tls ? tlsServerOptions(opts.tls) : undefined;
  const credentials = typeof opts.auth === 'string' ? await loadCredentials(opts.auth) : opts.auth;
  if (credentials?.fileMode !== undefined && (credentials.fileMode & 0o077) !== 0) {
    log.warn({ file: credentials.file, mode: credentials.fileMode.toString(8) }, 'credentials file is readable by group or others: chmod 600 it');
  }

  // the default too is fedmq's memory store (retained messages indexed by topic level), not Aedes' own
  if (opts.cluster) assertClusterOptions(opts.cluster, opts);
  const cluster = opts.cluster ? await startCluster(opts.cluster, { logger: log, maxPacketBytes, concurrency: opts.aedes?.concurrency }) : undefined;
  const store = cluster ?? (opts.aedes?.persistence ? undefined : createPersistence(opts.persistence ?? 'memory'));
  const persistence = store?.persistence ?? opts.aedes?.persistence;
  // the filters each client was granted: the persistence stores no others (quotas.ts)
  const granted: GrantedFilters = new WeakMap();
  const aedes = await Aedes.createBroker({
    connectTimeout: limits.connectTimeoutMs, ...cluster?.aedes, ...opts.aedes, ...(persistence ? { persistence: storeGrantedOnly(persistence, granted) } : {}),
  }).catch(async (err: unknown) => {
    await store?.close().catch(() => undefined);
    throw err;
  });
  const metrics = instrumentBroker(aedes);
  const memoryStore = memoryStoreOf(persistence);
  if (memoryStore) installQueueLimits(aedes, memoryStore, { maxMessages: limits.maxQueuedMessages, maxBytes: limits.maxQueuedBytes, reject: metrics.reject, log });
  else log.info({ persistence: cluster ? 'cluster' : opts.persistence ?? 'custom' }, 'QoS 1 queue limits apply to the memory persistence only: queued messages live in the persistence (docs/security.md)');
  // before the security hooks: their ACL is asked first, the cap counts only what it grants
  installSubscriptionCap(aedes, { maxSubscriptions: limits.maxSubscriptions, reject: metrics.reject, log, granted });
  const connections = new WeakMap<object, ConnectionInfo>();
  const security = installSecurityHooks(aedes, {
    credentials, maxClientIdLength: limits.maxClientIdLength,
    connectionOf: (conn) => (conn && typeof conn === 'object' ? connections.get(conn) : undefined), reject: metrics.reject, log,
  });

  /** False (and counted, logged) when `remoteAddress` is over the connection rate. */
  const admit = (remoteAddress: string | undefined, transport: Transport): boolean => {
    if (!limiter || limiter.allow(remoteAddress)) return true;
    metrics.reject('connection_rate');
    log.debug({ remoteAddress, transport, code: ErrorCodes.LIMIT }, 'connection refused: over the connection rate');
    return false;
  };
  /** Counts a new TCP connection against the open-connection caps until it closes; false (counted, logged) when over one. */
  const open = (raw: Socket, transport: Transport): boolean => {
    const remoteAddress = raw.remoteAddress;
    const refusal = openConnections.open(remoteAddress);
    if (refusal) {
      metrics.reject(refusal);
      log.debug({ remoteAddress, transport, open: openConnections.total, code: ErrorCodes.LIMIT }, `connection refused: ${refusal === 'connections_total' ? `${limits.maxConnections} connections open` : `${limits.maxConnectionsPerAddress} connections open from this address`}`);
      return false;
    }
    raw.once('close', () => openConnections.close(remoteAddress));
    return true;
  };
  /** Size guard and byte rate, connection info for the hooks, then Aedes. */
  const handle = (stream: Duplex, info: ConnectionInfo, req?: IncomingMessage): void => {
    const rate = limits.byteRate === false || (exemptLoopback && isLoopback(info.remoteAddress ?? '')) ? undefined : new ByteRateLimiter(limits.byteRate);
    const conn: ConnectionInfo = { ...info, ...(rate ? { rate } : {}) };
    let throttled = 0;
    const guarded = guardStream(stream, maxPacketBytes, (v) => {
      metrics.reject(v.reason);
      log.warn({ ...info, traffic: undefined, ...v, code: ErrorCodes.LIMIT }, v.reason === 'packet_too_large' ? `connection closed: packet of ${v.packetBytes} bytes over the limit of ${v.maxPacketBytes}` : 'connection closed: malformed fixed header');
    }, {
      rate,
      onThrottle: (delayMs) => {
        metrics.reject('byte_rate');
        const fields = { clientId: conn.clientId, remoteAddress: info.remoteAddress, transport: info.transport, delayMs, byteRate: limits.byteRate, code: ErrorCodes.LIMIT };
        // the first pause of a connection at warn, the next ones at debug (a steady sender pauses often)
        if (throttled++ === 0) log.warn(fields, 'reading paused: connection over its byte rate');
        else log.debug(fields, 'reading paused: connection over its byte rate');
      },
    });
    guarded.on('error', (err) => log.debug({ err: err.message, transport: info.transport }, 'connection error'));
    connections.set(guarded, conn);
    aedes.handle(guarded, req);
  };

  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => log.debug({ err }, 'socket error'));
  };
  const plainPort = opts.port === undefined ? (opts.tls ? null : 1883) : opts.port;
  const server: Server | undefined = plainPort === null ? undefined : createServer({ noDelay: true }, (socket) => {
    track(socket);
    if (!open(socket, 'tcp') || !admit(socket.remoteAddress, 'tcp')) return void socket.destroy();
    const traffic = metrics.trackSocket(socket, 'tcp');
    handle(socket, { transport: 'tcp', remoteAddress: socket.remoteAddress, traffic });
  });
  let tlsServer: TlsServer | undefined;
  if (tlsOptions) {
    tlsServer = createTlsServer({ ...tlsOptions, handshakeTimeout: limits.handshakeTimeoutMs }, (socket: TLSSocket) => {
      track(socket);
      const traffic = metrics.trackSocket(socket, 'tls');
      const peer = peerIdentity(socket);
      handle(socket, { transport: 'tls', remoteAddress: socket.remoteAddress, traffic, ...(peer ? { peer } : {}) });
    });
    // the caps and the rate are checked before the TLS server sees the socket: a flood costs no
    // TLS work and is not also counted as a failed handshake
    gateConnections(tlsServer, (raw) => {
      track(raw);
      return open(raw, 'tls') && admit(raw.remoteAddress, 'tls');
    });
    tlsServer.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      const timeout = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
      metrics.reject(timeout ? 'handshake_timeout' : 'tls_handshake');
      log.debug({ err: err.message, remoteAddress: socket.remoteAddress, transport: 'tls', ...(timeout ? { code: ErrorCodes.LIMIT } : {}) }, timeout ? 'connection closed: TLS handshake not done in time' : 'TLS handshake failed');
      // with a tlsClientError listener Node leaves the socket open (a handshake timeout too): close it here
      socket.destroy();
    });
  }
  aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => {
    const info = connections.get(client?.conn);
    if (err.message === CONNECT_TIMEOUT_MESSAGE) {
      metrics.reject('connect_timeout');
      log.debug({ remoteAddress: info?.remoteAddress, transport: info?.transport, timeoutMs: limits.connectTimeoutMs, code: ErrorCodes.LIMIT }, 'connection closed: no CONNECT in time');
    } else log.debug({ clientId: client?.id, err: err.message }, 'connection error');
  });
  aedes.on('client', (client) => {
    // registered, CONNACK not yet written: the CONNECT counts as `other`, the CONNACK and the rest as the client's role
    const info = connections.get(client.conn);
    const principal = security.principalOf(client);
    info?.traffic?.setRole(trafficRoleOf(client.id, principal));
    if (info) info.clientId = client.id;
    // the byte rate is for everyone but an authenticated coordinator (it publishes the models)
    if (principal?.role === 'coordinator') info?.rate?.lift();
    log.debug({ clientId: client.id }, 'client connected');
  });
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'client disconnected'));

  const gate: WebSocketGate = { open, admit, handle, maxPayload: maxPacketBytes, handshakeTimeoutMs: limits.handshakeTimeoutMs };
  const host = opts.host ?? '0.0.0.0';
  let http: BrokerHttp | undefined;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      // A broker shutdown is not the clients' failure: their Last Wills are not published now.
      // They stay in the persistence, and the next broker on it publishes the wills of the
      // clients that do not come back (Aedes' will check), as after a crash.
      for (const c of Object.values((aedes as unknown as { clients: Record<string, { will: unknown }> }).clients)) c.will = null;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await store?.close();
      for (const s of sockets) s.destroy();
      await http?.close();
      for (const srv of [server, tlsServer]) if (srv?.listening) await new Promise<void>((resolve) => srv.close(() => resolve()));
    })();
    return closing;
  };

  let port: number | undefined;
  let tlsPort: number | undefined;
  try {
    if (server) port = await listen(server, plainPort ?? 1883, host);
    if (tlsServer) tlsPort = await listen(tlsServer, opts.tlsPort ?? DEFAULT_TLS_PORT, host);
    if (opts.httpPort !== undefined) {
      const assets = opts.httpAssets ?? (await import('@fedmq/monitor')).dashboardAssets();
      http = await startHttp({ gate, metrics, assets, port: opts.httpPort, host: opts.httpHost ?? host, log, tls: tlsOptions });
    }
  } catch (err) {
    await close();
    throw err;
  }
  const urlHost = urlHostOf(host);
  const tlsUrl = tlsPort === undefined ? undefined : `mqtts://${urlHost}:${tlsPort}`;
  const url = port === undefined ? tlsUrl! : `mqtt://${urlHost}:${port}`;
  log.info({ url, tlsUrl, cluster: cluster?.url, brokerId: aedes.id, auth: credentials ? `${credentials.size} users` : 'off (open broker)', limits }, 'broker listening');
  const running: RunningBroker = { url, port: port ?? tlsPort!, aedes, metrics: metrics.registry, traffic: metrics.traffic, close };
  if (tlsUrl) Object.assign(running, { tlsUrl, tlsPort });
  if (credentials) running.credentials = credentials;
  if (cluster) running.cluster = { url: cluster.url, pubsubLimit: cluster.pubsubLimit };
  if (http) {
    const httpHost = urlHostOf(opts.httpHost ?? host);
    running.httpPort = http.port;
    running.httpUrl = `${tlsOptions ? 'https' : 'http'}://${httpHost}:${http.port}/`;
    running.wsUrl = `${tlsOptions ? 'wss' : 'ws'}://${httpHost}:${http.port}${MQTT_WS_PATH}`;
    log.info({ httpUrl: running.httpUrl, wsUrl: running.wsUrl }, 'dashboard listening');
  }
  return running;
}

/** Aedes' error when no CONNECT arrived within `connectTimeout` (lib/client.js). */
const CONNECT_TIMEOUT_MESSAGE = 'connect did not arrive in time';

/** {@link BrokerLimits} with every default filled in. */
export type ResolvedLimits = Required<Omit<BrokerLimits, 'connectionRate' | 'byteRate'>> & Pick<Required<BrokerLimits>, 'connectionRate' | 'byteRate'>;

/**
 * `limits` with the defaults filled in (docs/security.md, "Limits"). The connection rate's
 * `exemptLoopback` is the top-level `exemptLoopback` unless the rate names its own.
 * @throws RangeError for a negative or fractional count, a timeout ≤ 0, or a bad rate.
 */
export function resolveLimits(limits: BrokerLimits = {}): ResolvedLimits {
  const exemptLoopback = limits.exemptLoopback ?? true;
  const rate = limits.connectionRate ?? { max: DEFAULT_CONNECTION_RATE.max, perMs: DEFAULT_CONNECTION_RATE.perMs };
  const r: ResolvedLimits = {
    maxPacketBytes: limits.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES,
    maxClientIdLength: limits.maxClientIdLength ?? DEFAULT_MAX_CLIENT_ID_LENGTH,
    exemptLoopback,
    connectionRate: rate === false ? false : { ...rate, exemptLoopback: rate.exemptLoopback ?? exemptLoopback },
    byteRate: limits.byteRate ?? DEFAULT_BYTE_RATE,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    maxConnections: limits.maxConnections ?? defaultMaxConnections(),
    handshakeTimeoutMs: limits.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    connectTimeoutMs: limits.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    maxQueuedMessages: limits.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES,
    maxQueuedBytes: limits.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    maxSubscriptions: limits.maxSubscriptions ?? DEFAULT_MAX_SUBSCRIPTIONS,
  };
  for (const k of ['maxConnectionsPerAddress', 'maxConnections', 'maxQueuedMessages', 'maxQueuedBytes', 'maxSubscriptions'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 0) throw new RangeError(`limits.${k} must be an integer ≥ 0 (0 = no cap), got ${r[k]}`);
  }
  for (const k of ['handshakeTimeoutMs', 'connectTimeoutMs'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 1) throw new RangeError(`limits.${k} must be an integer ≥ 1 ms, got ${r[k]}`);
  }
  if (r.byteRate !== false) new ByteRateLimiter(r.byteRate); // validates
  return r;
}

/** Host name for a URL: `localhost` for the wildcard addresses, brackets around IPv6. */
function urlHostOf(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return 'localhost';
  return host.includes(':') ? `[${host}]` : host;
}
