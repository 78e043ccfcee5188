import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TlsOptions, TLSSocket } from 'node:tls';
import { ErrorCodes } from '@fedmq/protocol';
import type { Logger } from 'pino';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { ConnectionInfo } from './hooks.ts';
import type { BrokerMetrics } from './metrics.ts';
import { peerIdentity } from './tls.ts';

/** A static file the HTTP server serves (see `dashboardAssets()` of `@fedmq/monitor`). */
export interface StaticAsset {
  file: string;
  contentType: string;
}

/** The broker's HTTP side: dashboard files, `/metrics`, MQTT over WebSocket on `/mqtt`. */
export interface BrokerHttp {
  server: Server;
  port: number;
  /** Terminates the WebSockets and open HTTP connections and stops listening. */
  close(): Promise<void>;
}

/** Path of the MQTT-over-WebSocket endpoint. */
export const MQTT_WS_PATH = '/mqtt';

/**
 * Makes `server` pass each new TCP connection to `accept` before its own `connection` listeners
 * (for a TLS or HTTPS server: before the TLS handshake starts), and destroy the socket at once
 * when `accept` returns false: a refused connection costs no TLS or HTTP work.
 */
export function gateConnections(server: Server | import('node:net').Server, accept: (raw: Socket) => boolean): void {
  const listeners = server.listeners('connection') as ((raw: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (raw: Socket) => {
    if (!accept(raw)) return void raw.destroy();
    for (const listener of listeners) listener.call(server, raw);
  });
}

/** How the HTTP server hands WebSocket connections to the broker (see `startBroker`). */
export interface WebSocketGate {
  /**
   * Counts a new TCP connection to the HTTP port against the open-connection caps (until it
   * closes); false when it is over a cap (it is then destroyed at once, before TLS).
   */
  open(raw: Socket, transport: 'ws' | 'wss'): boolean;
  /** Milliseconds from the TCP connection (with TLS: from the end of the handshake) to the first request or the WebSocket upgrade. */
  handshakeTimeoutMs: number;
  /** False when a new connection from `remoteAddress` is over the connection rate (it is then refused with 429). */
  admit(remoteAddress: string | undefined, transport: 'ws' | 'wss'): boolean;
  /** Hands an MQTT byte stream to the broker (size guard, connection info, `aedes.handle`). */
  handle(stream: Duplex, info: ConnectionInfo, req: IncomingMessage): void;
  /** Largest WebSocket message accepted, in bytes (`ws` buffers a whole message before the size guard sees it). */
  maxPayload: number;
}

/**
 * Starts the broker's HTTP server (HTTPS with `tls`) on `port` (0 = a free one):
 *
 * - `GET /metrics`: `metrics` in the Prometheus text format;
 * - `GET <path>` for each path of `assets` (a fixed table: nothing else on disk is reachable);
 * - WebSocket upgrade on `/mqtt`: the socket becomes an MQTT connection (`ws` +
 *   `createWebSocketStream`) handed to `gate`, counted under `transport="ws"` (`"wss"` with TLS).
 *
 * Anything else is 404 (405 for methods other than GET/HEAD).
 *
 * Each TCP connection first passes `gate.open` (open-connection caps). With TLS the handshake
 * must finish within `gate.handshakeTimeoutMs` (Node's `handshakeTimeout`), and then — or, without
 * TLS, from the TCP connection — the first request or the upgrade must arrive within it too;
 * a connection that does neither is destroyed (`handshake_timeout`). Later requests on a
 * keep-alive connection are left to Node's `keepAliveTimeout` and `headersTimeout`.
 *
 * @throws the listen error (e.g. `EADDRINUSE`).
 */
export async function startHttp(opts: {
  gate: WebSocketGate;
  metrics: BrokerMetrics;
  assets: Map<string, StaticAsset>;
  port: number;
  host: string;
  log: Logger;
  /** Node TLS server options: serve HTTPS and `wss`. */
  tls?: TlsOptions;
}): Promise<BrokerHttp> {
  const { gate, metrics, assets, log } = opts;
  const transport = opts.tls ? 'wss' : 'ws';
  const wss = new WebSocketServer({ noServer: true, maxPayload: gate.maxPayload });
  const upgraded = new Set<Socket>();

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err, url: req.url }, 'http request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  };
  const server: Server = opts.tls ? createHttpsServer({ ...opts.tls, handshakeTimeout: gate.handshakeTimeoutMs }, onRequest) : createServer(onRequest);
  gateConnections(server, (raw) => gate.open(raw, transport));
  if (opts.tls) {
    server.on('tlsClientError', (err: Error & { code?: string }, socket: Socket) => {
      const timeout = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT';
      metrics.reject(timeout ? 'handshake_timeout' : 'tls_handshake');
      log.debug({ err: err.message, remoteAddress: socket.remoteAddress, transport, ...(timeout ? { code: ErrorCodes.LIMIT } : {}) }, timeout ? 'connection closed: TLS handshake not done in time' : 'TLS handshake failed');
      // with a tlsClientError listener Node leaves the socket open (a handshake timeout too): close it here
      socket.destroy();
    });
  }
  // the first request or the upgrade must come within the handshake timeout (slowloris, idle sockets)
  const waiting = new Map<Socket, NodeJS.Timeout>();
  const arm = (socket: Socket) => {
    const t = setTimeout(() => {
      waiting.delete(socket);
      metrics.reject('handshake_timeout');
      log.debug({ remoteAddress: socket.remoteAddress, transport, timeoutMs: gate.handshakeTimeoutMs, code: ErrorCodes.LIMIT }, 'connection closed: no request or WebSocket upgrade in time');
      socket.destroy();
    }, gate.handshakeTimeoutMs);
    t.unref();
    waiting.set(socket, t);
    socket.once('close', () => disarm(socket));
  };
  const disarm = (socket: Socket) => {
    const t = waiting.get(socket);
    if (t) clearTimeout(t);
    waiting.delete(socket);
  };
  server.on(opts.tls ? 'secureConnection' : 'connection', arm);
  server.on('request', (req: IncomingMessage) => disarm(req.socket));

  async function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    let body: Buffer | string;
    let contentType: string;
    if (path === '/metrics') {
      body = await metrics.text();
      contentType = metrics.registry.contentType;
    } else {
      const asset = assets.get(path);
      if (!asset) {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('not found\n');
        return;
      }
      body = await readFile(asset.file);
      contentType = asset.contentType;
    }
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    disarm(socket);
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== MQTT_WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.on('error', (err) => log.debug({ err }, 'websocket socket error'));
    if (!gate.admit(socket.remoteAddress, transport)) {
      socket.end('HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', () => socket.destroy());
      return;
    }
    const baseline = { read: socket.bytesRead - head.length, written: socket.bytesWritten };
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      const traffic = metrics.trackSocket(socket, transport, baseline);
      const stream = createWebSocketStream(ws);
      stream.on('error', (err) => log.debug({ err: err.message }, 'websocket stream error'));
      const peer = opts.tls ? peerIdentity(socket as TLSSocket) : undefined;
      gate.handle(stream, { transport, remoteAddress: socket.remoteAddress, traffic, ...(peer ? { peer } : {}) }, req);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;

  return {
    server,
    port,
    async close() {
      for (const t of waiting.values()) clearTimeout(t);
      for (const ws of wss.clients) ws.terminate();
      for (const s of upgraded) s.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
