import { Readable } from 'node:stream';
import type { AedesOptions } from 'aedes';
import MQEmitterRedis from 'mqemitter-redis';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import type { Logger } from 'pino';
import { createPersistence, parseRedisUrl, type BrokerPersistence } from './persistence.ts';

/**
 * Several Aedes brokers serving one fleet through one Redis (docs/scale.md, "Broker cluster"):
 * messages are relayed between the brokers by mqemitter-redis (Redis PUBLISH / (P)SUBSCRIBE, one
 * channel per MQTT topic), retained messages, persistent sessions and wills live in the same Redis
 * through aedes-persistence-redis ({@link createPersistence}). A node or coordinator may connect
 * to any broker of the cluster.
 */

/** The mq Aedes takes (`AedesOptions.mq`). */
type BrokerMq = NonNullable<AedesOptions['mq']>;

/**
 * Redis's `client-output-buffer-limit` for the pubsub class: a subscriber connection (each
 * broker's relay connection is one) whose pending output exceeds `hardBytes`, or stays above
 * `softBytes` for `softSeconds`, is disconnected by Redis, and every message relayed to it in the
 * meantime is lost without a word. 0 = no limit.
 */
export interface PubsubLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** Redis's default (redis.conf: `client-output-buffer-limit pubsub 32mb 8mb 60`). */
export const REDIS_DEFAULT_PUBSUB_LIMIT: PubsubLimit = { hardBytes: 32 * 2 ** 20, softBytes: 8 * 2 ** 20, softSeconds: 60 };

/**
 * The pubsub limit a cluster broker asks Redis for, at least: hard 512 MiB (or 4 × `maxPacketBytes`
 * when that is larger), soft a quarter of it for 60 s. With fedmq's default 16 MiB packet limit
 * that is 32 of the largest messages waiting for one broker, where Redis's default allows 2
 * (docs/scale.md).
 */
export function clusterPubsubLimit(maxPacketBytes: number): PubsubLimit {
  const hardBytes = Math.max(512 * 2 ** 20, 4 * maxPacketBytes);
  return { hardBytes, softBytes: Math.floor(hardBytes / 4), softSeconds: 60 };
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Structured logger (the limit check and relay errors are logged). */
  logger: Logger;
  /** The broker's `maxPacketBytes`: sizes the pubsub limit asked for ({@link clusterPubsubLimit}). */
  maxPacketBytes: number;
  /** Pubsub limit to ask Redis for instead of {@link clusterPubsubLimit}; `false` leaves Redis's configuration alone. */
  pubsubLimit?: PubsubLimit | false;
  /** Concurrency of the relay (mqemitter's, as Aedes' own default mq). Default 100. */
  concurrency?: number;
  /** How long to wait for Redis at start, ms. Default 10,000. */
  connectTimeoutMs?: number;
}

/** What {@link startCluster} did about Redis's pubsub output buffer limit. */
export type PubsubLimitOutcome =
  | { action: 'kept'; limit: PubsubLimit }
  | { action: 'raised'; from: PubsubLimit; to: PubsubLimit }
  | { action: 'refused'; wanted: PubsubLimit; error: string; redisConf: string }
  | { action: 'skipped' };

/** A broker's connection to its cluster: hand `aedes` to Aedes, `close()` after the broker closed. */
export interface BrokerCluster {
  /** `mq` (the relay), `persistence` (Redis) and a 10 s `heartbeatInterval` for Aedes. */
  aedes: Pick<AedesOptions, 'mq' | 'persistence' | 'heartbeatInterval'>;
  persistence: BrokerPersistence;
  /** The Redis URL, password removed (for logs). */
  url: string;
  pubsubLimit: PubsubLimitOutcome;
  /** Closes the relay (if Aedes has not already) and the persistence: every Redis connection. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Heartbeat of a cluster broker, ms. Aedes' default is 60 s: a broker counts as dead 3 heartbeats
 * after its last one, and the others look for the wills of dead brokers every 4 heartbeats, so the
 * Last Wills of a crashed broker's clients came 3–7 minutes late. With 10 s: 30–70 s.
 */
export const CLUSTER_HEARTBEAT_MS = 10_000;

/** The ioredis connection API this module uses (mqemitter-redis' `pubConn`). */
interface RedisConn {
  status: string;
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  ping(): Promise<string>;
  exists(key: string): Promise<number>;
  disconnect(): void;
}
/** mqemitter-redis' instance fields this module uses (not in its typings). */
interface RelayInternals {
  pubConn: RedisConn;
  subConn: RedisConn;
  state: NodeJS.EventEmitter;
  closed?: boolean;
  close(cb: () => void): void;
}

/**
 * Connects a broker to the cluster of `spec` (`redis://[user:password@]host[:port][/db]`,
 * `rediss://…`, `unix:/path`, see {@link parseRedisUrl}): a relay (mqemitter-redis, two
 * connections: one publishes, one subscribes) and the Redis persistence (aedes-persistence-redis,
 * one more). Checks that Redis
 * answers, then raises Redis's pubsub output buffer limit to {@link clusterPubsubLimit} (CONFIG
 * SET; only ever raised) — when Redis refuses CONFIG, logs a warning with the redis.conf line to
 * add, and goes on. Wills of brokers that are gone are published only for clients that did not
 * reconnect to a live broker of the cluster ({@link skipWillsOfReconnected}), and a SUBSCRIBE with
 * several filters from a persistent session stores them once ({@link oneAddSubscriptionsPerSubscribe}).
 *
 * @throws FedmqError FEDMQ_BAD_CONFIG on a malformed URL, or when Redis does not answer within
 *   `connectTimeoutMs` (everything opened is closed first).
 */
export async function startCluster(spec: string, opts: ClusterOptions): Promise<BrokerCluster> {
  const redisOptions = parseRedisUrl(spec);
  const url = redactRedisUrl(spec);
  const log = opts.logger.child({ cluster: url });
  const mq = MQEmitterRedis({
    ...redisOptions, matchEmptyLevels: true, concurrency: opts.concurrency ?? 100,
    // fail commands rather than queue them forever while Redis is away; ioredis reconnects on its own
    maxRetriesPerRequest: 3,
  });
  const relay = mq as unknown as RelayInternals;
  relay.state.on('error', (err: Error) => log.warn({ err: err.message }, 'cluster relay: Redis connection error'));
  // mqemitter-redis closes with QUIT, which waits for Redis (and rejects, unhandled, when it is
  // away): disconnect at once when a connection is not up, and after 2 s when Redis does not answer
  const close = relay.close.bind(relay);
  const closeEmitter = (relay as unknown as { _close(cb: () => void): void })._close.bind(relay);
  relay.close = (cb) => {
    if (relay.closed || (relay as { closing?: boolean }).closing) return void close(cb);
    const conns = [relay.pubConn, relay.subConn];
    const disconnect = () => {
      for (const c of conns) c.disconnect();
      (relay as { closing?: boolean }).closing = true;
      closeEmitter(cb);
    };
    if (conns.some((c) => c.status !== 'ready')) return disconnect();
    const timer = setTimeout(disconnect, 2_000);
    close(() => {
      clearTimeout(timer);
      cb();
    });
  };
  const closeRelay = () => new Promise<void>((resolve) => relay.close(() => resolve()));

  const timeoutMs = opts.connectTimeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  // Wait until both connections are `ready` before anything subscribes. ioredis writes a SUBSCRIBE
  // issued after `connect` but before `ready`; its ready check (INFO) then fails in subscriber
  // mode, the connection never becomes `ready`, and when Redis later drops it ioredis does not
  // subscribe again (it restores subscriptions only of a connection that was `ready`): the broker
  // would stop hearing the cluster for good. Seen here with mqemitter-redis 7.2.1 / ioredis 5.11
  // (docs/scale.md); cluster.test.ts checks that a broker subscribes again after Redis drops it.
  const ready = (c: RedisConn) => (c.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve, reject) => {
    (c as unknown as NodeJS.EventEmitter).once('ready', () => resolve());
    relay.state.once('error', reject);
  }));
  const readies = [ready(relay.pubConn), ready(relay.subConn)];
  for (const r of readies) r.catch(() => undefined); // the first failure is the one reported
  try {
    await Promise.race([
      Promise.all(readies),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    await closeRelay();
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `cluster: cannot reach Redis at ${url}: ${(err as Error).message}`, { cluster: url }, { cause: err });
  } finally {
    clearTimeout(timer);
  }

  const wanted = opts.pubsubLimit === false ? undefined : opts.pubsubLimit ?? clusterPubsubLimit(opts.maxPacketBytes);
  const report = (outcome: PubsubLimitOutcome) => {
    if (outcome.action === 'refused') {
      log.warn({ err: outcome.error, redisConf: outcome.redisConf },
        `cluster: Redis refused CONFIG, so its pubsub output buffer limit could not be checked or raised; a broker whose relay falls behind by more than Redis's limit (default 32 MB) is disconnected by Redis and loses the messages in between. Add to redis.conf: ${outcome.redisConf}`);
    } else if (outcome.action === 'raised') {
      log.info({ from: pubsubLimitLine(outcome.from), to: pubsubLimitLine(outcome.to) }, 'cluster: raised Redis\'s pubsub output buffer limit');
    }
    return outcome;
  };
  const pubsubLimit = wanted ? report(await ensurePubsubLimit(relay.pubConn, wanted)) : { action: 'skipped' as const };
  // CONFIG SET does not outlive a Redis restart: check again whenever the relay reconnects
  if (wanted) (relay.pubConn as unknown as NodeJS.EventEmitter).on('ready', () => void ensurePubsubLimit(relay.pubConn, wanted).then(report));

  const store = createPersistence(spec);
  skipWillsOfReconnected(store.persistence, relay.pubConn);
  oneAddSubscriptionsPerSubscribe(store.persistence);
  let closing: Promise<void> | undefined;
  return {
    aedes: { mq: mq as unknown as BrokerMq, persistence: store.persistence, heartbeatInterval: CLUSTER_HEARTBEAT_MS },
    persistence: store.persistence,
    url,
    pubsubLimit,
    close: () => (closing ??= (async () => {
      await closeRelay();
      await store.close().catch((err: Error) => log.warn({ err: err.message }, 'cluster: closing the Redis persistence failed'));
    })()),
  };
}

/**
 * A will left in Redis by a broker that is gone (crashed, or shut down: fedmq's `close()` keeps
 * its clients' wills) is published by a live broker once the dead one missed 3 heartbeats. But
 * aedes 1.2 deletes a reconnecting client's old will only under the broker id it connects to
 * (`delWill` with `client.brokerId` undefined), so a node that reconnected to another broker in
 * the meantime would be announced `offline` minutes later, while it is online. Here the wills
 * Aedes is about to publish skip (and delete) those of clients that have a will stored by a live
 * broker — fedmq's nodes and coordinator always connect with one.
 *
 * Relies on aedes-persistence-redis 11's key layout (`will:{brokerId}:{clientId}`); cluster.test.ts
 * checks it.
 */
export function skipWillsOfReconnected(persistence: BrokerPersistence, redis: Pick<RedisConn, 'exists'>): void {
  type Will = { clientId: string; brokerId: string };
  const p = persistence as unknown as {
    streamWill(brokers: Record<string, number>): AsyncIterable<Will>;
    delWill(client: { id: string; brokerId: string }): Promise<unknown>;
    broker?: { id: string };
  };
  const streamWill = p.streamWill.bind(p);
  p.streamWill = (brokers) => Readable.from((async function* () {
    const live = [...new Set([...Object.keys(brokers), ...(p.broker ? [p.broker.id] : [])])];
    for await (const will of streamWill(brokers)) {
      const id = encodeURIComponent(will.clientId);
      const back = (await Promise.all(live.filter((b) => b !== will.brokerId).map((b) => redis.exists(`will:${b}:${id}`)))).some((n) => n > 0);
      if (back) await p.delWill({ id: will.clientId, brokerId: will.brokerId });
      else yield will;
    }
  })());
}

/**
 * Aedes 1.2 stores the subscriptions of a persistent session's SUBSCRIBE once per topic filter of
 * the packet, in parallel, each time with the packet's whole list (`storeSubscriptions` in
 * lib/handlers/subscribe.js). aedes-persistence-redis then broadcasts each call on `$SYS/sub/add`
 * and waits for its own broadcast to come back through the broker's mq, keyed by client id and
 * the list's first filter: with mqemitter-redis the broadcasts come back later than the next
 * call, which replaces the waiter, so all but one call wait forever and the SUBACK is never sent
 * (fedmq's coordinator subscribes 4 filters at once and hung). Here the calls for one packet's list
 * share the first call's work: one store, one broadcast, one wait. `cluster.test.ts` covers it.
 */
export function oneAddSubscriptionsPerSubscribe(persistence: BrokerPersistence): void {
  type Add = (client: unknown, subs: object, cb?: (...args: unknown[]) => void) => Promise<unknown> | void;
  const p = persistence as unknown as { addSubscriptions: Add };
  const add = p.addSubscriptions.bind(p);
  const pending = new WeakMap<object, Promise<unknown>>();
  p.addSubscriptions = (client, subs, cb) => {
    if (cb) return add(client, subs, cb);
    let first = pending.get(subs);
    if (!first) {
      first = add(client, subs) as Promise<unknown>;
      pending.set(subs, first);
    }
    return first;
  };
}

/** Reads Redis's pubsub limit and raises it to at least `wanted` (never lowers it). */
async function ensurePubsubLimit(redis: RedisConn, wanted: PubsubLimit): Promise<PubsubLimitOutcome> {
  const redisConf = `client-output-buffer-limit ${pubsubLimitLine(wanted)}`;
  try {
    const reply = (await redis.call('CONFIG', 'GET', 'client-output-buffer-limit')) as string[];
    const current = parsePubsubLimit(String(reply?.[1] ?? ''));
    const to: PubsubLimit = {
      hardBytes: current.hardBytes === 0 ? 0 : Math.max(current.hardBytes, wanted.hardBytes),
      softBytes: current.softBytes === 0 ? 0 : Math.max(current.softBytes, wanted.softBytes),
      softSeconds: current.softBytes === 0 ? current.softSeconds : Math.max(current.softSeconds, wanted.softSeconds),
    };
    if (to.hardBytes === current.hardBytes && to.softBytes === current.softBytes && to.softSeconds === current.softSeconds) return { action: 'kept', limit: current };
    await redis.call('CONFIG', 'SET', 'client-output-buffer-limit', `pubsub ${to.hardBytes} ${to.softBytes} ${to.softSeconds}`);
    return { action: 'raised', from: current, to };
  } catch (err) {
    return { action: 'refused', wanted, error: (err as Error).message, redisConf };
  }
}

/**
 * The pubsub class of a `CONFIG GET client-output-buffer-limit` value
 * (`normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60`).
 * @throws Error when there is no pubsub class.
 */
export function parsePubsubLimit(value: string): PubsubLimit {
  const t = value.trim().split(/\s+/);
  const i = t.indexOf('pubsub');
  const n = t.slice(i + 1, i + 4).map(Number);
  if (i < 0 || n.length !== 3 || n.some((x) => !Number.isInteger(x) || x < 0)) throw new Error(`no pubsub class in client-output-buffer-limit ${JSON.stringify(value)}`);
  return { hardBytes: n[0], softBytes: n[1], softSeconds: n[2] };
}

/** `pubsub 512mb 128mb 60`: the class as redis.conf writes it (Redis's `mb` = 2^20 bytes). */
export function pubsubLimitLine(l: PubsubLimit): string {
  const size = (b: number) => (b % 2 ** 20 === 0 ? `${b / 2 ** 20}mb` : String(b));
  return `pubsub ${size(l.hardBytes)} ${size(l.softBytes)} ${l.softSeconds}`;
}

/** The URL without its password, for logs and output. */
export function redactRedisUrl(spec: string): string {
  try {
    const u = new URL(spec);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return spec;
  }
}

/**
 * Refuses options that contradict `cluster`: a `persistence` other than the cluster's own URL (a
 * cluster's brokers must share retained messages and sessions; `--cluster` implies the Redis
 * persistence on the same URL), or an `aedes.mq` / `aedes.persistence` of the caller's.
 * @throws FedmqError FEDMQ_BAD_CONFIG.
 */
export function assertClusterOptions(cluster: string, opts: { persistence?: string; aedes?: AedesOptions }): void {
  if (opts.persistence !== undefined && opts.persistence !== cluster) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `cluster: the brokers of a cluster keep retained messages and sessions in the cluster's Redis (${redactRedisUrl(cluster)}); drop the persistence option (${JSON.stringify(redactRedisUrl(opts.persistence))}), it is implied`);
  }
  if (opts.aedes?.mq || opts.aedes?.persistence) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'cluster: aedes.mq and aedes.persistence are the cluster\'s; do not pass them with cluster');
}
