import { Worker } from 'node:worker_threads';
import type { Traffic } from './metrics.ts';

/** Options of {@link startBrokerThread} (plain data: they are copied to the broker's thread). */
export interface BrokerThreadOptions {
  /** TCP port for plain MQTT; 0 picks a free one. */
  port: number;
  /** Interface to listen on. Default `0.0.0.0`. */
  host?: string;
  /** Port of the dashboard, `/metrics` and MQTT over WebSocket; 0 picks a free one. Default: none. */
  httpPort?: number;
  /** `memory` (default) or a Redis URL, as `createPersistence` takes. Kept across {@link BrokerThread.restart}. */
  persistence?: string;
  /** pino level of the broker's log (stderr). Default `silent`. */
  logLevel?: string;
}

/** A broker running on its own worker thread (see {@link startBrokerThread}). */
export interface BrokerThread {
  /** `mqtt://HOST:PORT` clients connect to. */
  readonly url: string;
  readonly port: number;
  /** `http://HOST:PORT/`: dashboard and `/metrics` (only with `httpPort`). */
  readonly httpUrl?: string;
  readonly httpPort?: number;
  /** `ws://HOST:PORT/mqtt` (only with `httpPort`). */
  readonly wsUrl?: string;
  /** Bytes read from and written to MQTT sockets so far, per client role (`RunningBroker.traffic`). */
  traffic(): Promise<Traffic>;
  /**
   * Closes the broker (every client is disconnected) and opens it again on the same ports with
   * the same retained messages and sessions, as a restarted broker with durable storage would.
   */
  restart(): Promise<void>;
  /** Closes the broker and ends its thread. Safe to call twice. */
  close(): Promise<void>;
}

/** @internal Messages between {@link startBrokerThread} and thread-worker.ts. */
export type BrokerThreadInit = BrokerThreadOptions;
/** @internal */
export type ToBrokerThread = { type: 'traffic' | 'restart' | 'close'; id: number };
/** @internal */
export type FromBrokerThread =
  | { type: 'listening'; url: string; port: number; httpUrl?: string; httpPort?: number; wsUrl?: string }
  | { type: 'traffic'; id: number; traffic: Traffic }
  | { type: 'restarted' | 'closed'; id: number }
  | { type: 'failed'; id?: number; message: string; code?: string; port?: number };

/**
 * Starts fedmq's broker (`startBroker`: plain MQTT, optional dashboard) on a worker thread of its
 * own, so routing messages never waits behind the work of the thread that started it (a
 * coordinator decoding and folding updates, a central evaluation). The embedded broker of
 * `fedmq simulate` runs this way. Security options (auth, TLS, limits other than the defaults)
 * are `startBroker`'s, in the calling thread.
 * @throws the listen error (e.g. `EADDRINUSE`, with `port` set to the port that was taken).
 */
export async function startBrokerThread(opts: BrokerThreadOptions): Promise<BrokerThread> {
  const worker = new Worker(new URL('./thread-boot.mjs', import.meta.url), { workerData: opts satisfies BrokerThreadInit });
  let next = 0;
  const pending = new Map<number, { resolve: (m: FromBrokerThread) => void; reject: (err: Error) => void }>();
  const failure = (m: { message: string; code?: string; port?: number }) => Object.assign(new Error(m.message), { code: m.code, port: m.port });
  let exited: Error | undefined;
  const listening = new Promise<Extract<FromBrokerThread, { type: 'listening' }>>((resolve, reject) => {
    worker.on('message', (m: FromBrokerThread) => {
      if (m.type === 'listening') return resolve(m);
      if ('id' in m && m.id !== undefined) {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.type === 'failed') p?.reject(failure(m));
        else p?.resolve(m);
      } else if (m.type === 'failed') reject(failure(m));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      exited = new Error(`broker thread exited with code ${code}`);
      reject(exited);
      for (const p of pending.values()) p.reject(exited);
      pending.clear();
    });
  });
  const call = (type: ToBrokerThread['type']): Promise<FromBrokerThread> => {
    if (exited) return Promise.reject(exited);
    const id = next++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ type, id } satisfies ToBrokerThread);
    });
  };
  let where: Extract<FromBrokerThread, { type: 'listening' }>;
  try {
    where = await listening;
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    url: where.url, port: where.port, httpUrl: where.httpUrl, httpPort: where.httpPort, wsUrl: where.wsUrl,
    traffic: async () => (await call('traffic') as Extract<FromBrokerThread, { type: 'traffic' }>).traffic,
    restart: async () => void (await call('restart')),
    close: () => (closing ??= (exited ? Promise.resolve() : call('close').then(() => undefined, () => undefined))
      .then(async () => void (await worker.terminate()))),
  };
}
