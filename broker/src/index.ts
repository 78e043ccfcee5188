import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import { pino, type Logger } from 'pino';

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
}

/** A running broker. */
export interface RunningBroker {
  /** `mqtt://HOST:PORT` clients connect to (`localhost` when listening on all interfaces). */
  url: string;
  port: number;
  aedes: Aedes;
  /** Disconnects every client and stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts an Aedes 1.x MQTT 3.1.1 broker on a TCP port.
 *
 * Malformed frames and client errors are logged (`clientError`, `connectionError`) and close only
 * the offending connection; the broker keeps running.
 *
 * @returns the broker's URL and a `close()`.
 * @throws the listen error (e.g. `EADDRINUSE`) when the port cannot be bound.
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<RunningBroker> {
  const log = opts.logger ?? pino({ level: 'silent' });
  const aedes = await Aedes.createBroker(opts.aedes ?? {});
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', (err) => log.debug({ err }, 'socket error'));
    aedes.handle(socket);
  });
  aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client?.id, err: err.message }, 'connection error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'client disconnected'));

  const host = opts.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 1883, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? 1883);
  const urlHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host;
  const url = `mqtt://${urlHost}:${port}`;
  log.info({ url }, 'broker listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return closing;
  };
  return { url, port, aedes, close };
}
