import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MQTT_WS_PATH, startHttp, type BrokerHttp, type StaticAsset } from './http.ts';
import { instrumentBroker } from './metrics.ts';
import { createPersistence } from './persistence.ts';

export { MQTT_WS_PATH, type StaticAsset } from './http.ts';
export { instrumentBroker, type BrokerMetrics, type Transport } from './metrics.ts';
export { createPersistence, parseRedisUrl, type BrokerPersistence } from './persistence.ts';

/** Options of {@link startBroker}. */
export interface BrokerOptions {
  /** TCP port for MQTT; 0 picks a free one. Default 1883. */
  port?: number;
  /** Interface to listen on. Default `0.0.0.0` (all). */
  host?: string;
  /** Structured logger; default silent. */
  logger?: Logger;
  /** Extra Aedes options (persistence, mqemitter, hooks). */
  aedes?: AedesOptions;
  /**
   * Where retained messages and persistent sessions live: `memory` (default) or a Redis URL
   * (`redis://host:port/db`, `unix:/path`), see {@link createPersistence}. Ignored when
   * `aedes.persistence` is given.
   */
  persistence?: string;
  /**
   * HTTP port for the web dashboard (`/`), Prometheus metrics (`/metrics`) and MQTT over
   * WebSocket (`/mqtt`); 0 picks a free one. Default: no HTTP server.
   */
  httpPort?: number;
  /** Interface the HTTP server listens on. Default: `host`. */
  httpHost?: string;
  /**
   * Files served over HTTP, by URL path. Default: the web dashboard of `@fedmq/monitor`
   * (`dashboardAssets()`, loaded only when `httpPort` is given).
   */
  httpAssets?: Map<string, StaticAsset>;
}

/** A running broker. */
export interface RunningBroker {
  /** `mqtt://HOST:PORT` clients connect to (`localhost` when listening on all interfaces). */
  url: string;
  port: number;
  aedes: Aedes;
  /** The broker's own Prometheus registry (metrics listed at {@link instrumentBroker}). */
  metrics: Registry;
  /** `http://HOST:PORT/`: the dashboard (only with `httpPort`). `/metrics` is under it. */
  httpUrl?: string;
  /** The HTTP port actually bound (only with `httpPort`). */
  httpPort?: number;
  /** `ws://HOST:PORT/mqtt`: MQTT over WebSocket (only with `httpPort`). */
  wsUrl?: string;
  /** Disconnects every client (TCP and WebSocket), stops the HTTP server and stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts an Aedes 1.x MQTT 3.1.1 broker on a TCP port, and with `httpPort` an HTTP server for the
 * web dashboard, `/metrics` (Prometheus) and MQTT over WebSocket on `/mqtt`.
 *
 * Malformed frames and client errors are logged (`clientError`, `connectionError`) and close only
 * the offending connection; the broker keeps running.
 *
 * @returns the broker's URL and a `close()`.
 * @throws the listen error (e.g. `EADDRINUSE`) when the MQTT or HTTP port cannot be bound (whatever
 *   was started is closed first).
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<RunningBroker> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const store = opts.persistence && !opts.aedes?.persistence ? createPersistence(opts.persistence) : undefined;
  const aedes = await Aedes.createBroker({ ...opts.aedes, ...(store ? { persistence: store.persistence } : {}) }).catch(async (err: unknown) => {
    await store?.close().catch(() => undefined);
    throw err;
  });
  const metrics = instrumentBroker(aedes);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    metrics.trackSocket(socket, 'tcp');
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => log.debug({ err }, 'socket error'));
    aedes.handle(socket);
  });
  aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'connection error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'client disconnected'));

  const host = opts.host ?? '0.0.0.0';
  let http: BrokerHttp | undefined;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await store?.close();
      for (const s of sockets) s.destroy();
      await http?.close();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return closing;
  };

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 1883, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if (opts.httpPort !== undefined) {
      const assets = opts.httpAssets ?? (await import('@fedmq/monitor')).dashboardAssets();
      http = await startHttp({ aedes, metrics, assets, port: opts.httpPort, host: opts.httpHost ?? host, log });
    }
  } catch (err) {
    await close();
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? 1883);
  const url = `mqtt://${urlHostOf(host)}:${port}`;
  log.info({ url }, 'broker listening');
  const running: RunningBroker = { url, port, aedes, metrics: metrics.registry, close };
  if (http) {
    const httpHost = urlHostOf(opts.httpHost ?? host);
    running.httpPort = http.port;
    running.httpUrl = `http://${httpHost}:${http.port}/`;
    running.wsUrl = `ws://${httpHost}:${http.port}${MQTT_WS_PATH}`;
    log.info({ httpUrl: running.httpUrl, wsUrl: running.wsUrl }, 'dashboard listening');
  }
  return running;
}

/** Host name for a URL: `localhost` for the wildcard addresses, brackets around IPv6. */
function urlHostOf(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return 'localhost';
  return host.includes(':') ? `[${host}]` : host;
}
