import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Aedes } from 'aedes';
import type { Logger } from 'pino';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { BrokerMetrics } from './metrics.ts';

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
 * Starts the broker's HTTP server on `port` (0 = a free one):
 *
 * - `GET /metrics`: `metrics` in the Prometheus text format;
 * - `GET <path>` for each path of `assets` (a fixed table: nothing else on disk is reachable);
 * - WebSocket upgrade on `/mqtt`: the socket becomes an MQTT connection of `aedes`
 *   (`ws` + `createWebSocketStream`), counted under `transport="ws"`.
 *
 * Anything else is 404 (405 for methods other than GET/HEAD).
 *
 * @throws the listen error (e.g. `EADDRINUSE`).
 */
export async function startHttp(opts: {
  aedes: Aedes;
  metrics: BrokerMetrics;
  assets: Map<string, StaticAsset>;
  port: number;
  host: string;
  log: Logger;
}): Promise<BrokerHttp> {
  const { aedes, metrics, assets, log } = opts;
  const wss = new WebSocketServer({ noServer: true });
  const upgraded = new Set<Socket>();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err, url: req.url }, 'http request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('internal error\n');
    });
  });

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
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== MQTT_WS_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.on('error', (err) => log.debug({ err }, 'websocket socket error'));
    const baseline = { read: socket.bytesRead - head.length, written: socket.bytesWritten };
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      metrics.trackSocket(socket, 'ws', baseline);
      const stream = createWebSocketStream(ws);
      stream.on('error', (err) => log.debug({ err: err.message }, 'websocket stream error'));
      aedes.handle(stream, req);
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
      for (const ws of wss.clients) ws.terminate();
      for (const s of upgraded) s.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
