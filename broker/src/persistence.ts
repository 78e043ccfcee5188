import { createRequire } from 'node:module';
import type { AedesOptions } from 'aedes';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { indexedMemoryPersistence } from './retained.ts';

const require = createRequire(import.meta.url);

/** The persistence Aedes takes (`AedesOptions.persistence`). */
export type BrokerPersistence = NonNullable<AedesOptions['persistence']>;

/**
 * Where the broker keeps retained messages, persistent sessions (subscriptions, QoS 1 messages
 * queued for offline clients) and wills:
 * - `memory` (default): in the process; lost when the broker process exits. One instance may be
 *   handed to successive brokers of the same process (a restart keeps everything). It is
 *   aedes-persistence's in-memory store with retained messages indexed by topic level
 *   (retained.ts): a subscription's retained lookup costs O(levels + matches), not a scan of
 *   every retained message (docs/scale.md, "Retained messages and connect cost").
 * - `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS) or `unix:/path/to/redis.sock`:
 *   in Redis through aedes-persistence-redis (two connections), so retained messages and sessions
 *   survive a broker restart or crash. Start one with Debian's redis-server (docs/security.md,
 *   "Broker persistence").
 *
 * @returns the persistence and a `close()` that disconnects it (call after the broker closed).
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown scheme or malformed URL.
 */
export function createPersistence(spec: string): { persistence: BrokerPersistence; close(): Promise<void> } {
  if (spec === 'memory') return { persistence: indexedMemoryPersistence(), close: async () => undefined };
  const redisOptions = parseRedisUrl(spec);
  const redis = require('aedes-persistence-redis') as (opts: Record<string, unknown>) => BrokerPersistence & { destroy(): Promise<void> };
  // aedes-persistence-redis keeps the mqemitter-free single-broker layout: no clustering here
  const persistence = redis({ ...redisOptions, maxRetriesPerRequest: 3 });
  let closed: Promise<void> | undefined;
  return { persistence, close: () => (closed ??= persistence.destroy()) };
}

/**
 * ioredis connection options from a `redis://`, `rediss://` or `unix:` URL.
 * @throws FedmqError FEDMQ_BAD_CONFIG when the URL cannot be parsed or has another scheme.
 */
export function parseRedisUrl(spec: string): Record<string, unknown> {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `persistence must be "memory", redis://host:port[/db] or unix:/path, got ${JSON.stringify(spec)}`);
  }
  if (url.protocol === 'unix:') return { path: url.pathname };
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown persistence scheme ${url.protocol} (memory, redis:, rediss:, unix:)`);
  }
  const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new FedmqError(ErrorCodes.BAD_CONFIG, `bad redis database ${JSON.stringify(url.pathname.slice(1))}`);
  return {
    host: url.hostname || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    db,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
