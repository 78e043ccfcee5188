import type { Aedes, Client, Subscription } from 'aedes';
import { ErrorCodes } from '@fedmq/protocol';
import type { Logger } from 'pino';
import type { RejectionReason } from './metrics.ts';
import type { BrokerPersistence } from './persistence.ts';
import { IndexedMemoryPersistence, type QueueDrop, type QueueLimits } from './retained.ts';

/**
 * Per-client quotas above the transport (docs/security.md, "Limits"):
 *
 * - **subscriptions per client** ({@link installSubscriptionCap}): a SUBSCRIBE beyond the cap gets
 *   SUBACK 0x80 for the extra filters (MQTT 3.1.1 §3.9.3), and a persistent session restored at
 *   CONNECT counts its stored subscriptions, so reconnecting cannot add up past the cap;
 * - **QoS 1/2 messages queued per persistent-session client** ({@link installQueueLimits}): by
 *   count and payload bytes, in the memory store ({@link IndexedMemoryPersistence}); beyond a cap
 *   a new message is dropped for that client (mosquitto's semantics: the oldest are kept).
 */

/** Longest topic or client id written to a log line. */
const LOG_CHARS = 200;

/** What {@link installSubscriptionCap} needs. */
export interface SubscriptionCapOptions {
  /** Distinct filters per client; 0 = no cap. */
  maxSubscriptions: number;
  /** Where to record the granted filters (default: a new map). */
  granted?: GrantedFilters;
  /** Counts a rejection (`fedmq_broker_rejections_total`). */
  reject(reason: RejectionReason): void;
  log: Logger;
}

/** The filters each client has been granted (shared by the hook and the persistence wrapper). */
export type GrantedFilters = WeakMap<Client, Set<string>>;

/**
 * Caps the subscriptions of each client at `maxSubscriptions` distinct filters, in Aedes'
 * `authorizeSubscribe` hook (the hook present before — Aedes' default or the caller's — runs
 * after the cap accepts; install this before the ACL so that the ACL is asked first).
 *
 * A filter the client already holds is always granted again (re-subscribing changes nothing).
 * Filters are counted from the moment they are granted (concurrent filters of one SUBSCRIBE
 * cannot slip past together) and forgotten at UNSUBSCRIBE. At a persistent session's CONNECT,
 * Aedes restores the stored subscriptions through the same hook: they count, and those beyond the
 * cap are not restored. Refusals are counted as `subscription_limit` and logged at warn with
 * `FEDMQ_LIMIT`.
 *
 * @returns the granted filters per client: pass them to {@link storeGrantedOnly} so the
 *   persistence stores nothing else.
 */
export function installSubscriptionCap(aedes: Aedes, opts: SubscriptionCapOptions): GrantedFilters {
  const granted: GrantedFilters = opts.granted ?? new WeakMap();
  const next = aedes.authorizeSubscribe;
  const filtersOf = (client: Client) => {
    let set = granted.get(client);
    if (!set) granted.set(client, (set = new Set()));
    return set;
  };
  aedes.authorizeSubscribe = function fedmqSubscriptionCap(client: Client, sub: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void) {
    const set = filtersOf(client);
    if (set.has(sub.topic)) return next.call(this, client, sub, callback);
    if (opts.maxSubscriptions > 0 && set.size >= opts.maxSubscriptions) {
      opts.reject('subscription_limit');
      const restoring = !(client as Client & { connackSent?: boolean }).connackSent;
      opts.log.warn(
        { clientId: client.id?.slice(0, LOG_CHARS), topic: sub.topic.slice(0, LOG_CHARS), maxSubscriptions: opts.maxSubscriptions, restoring, code: ErrorCodes.LIMIT },
        restoring ? 'stored subscription over the cap not restored' : 'subscription refused: over the subscription cap',
      );
      return callback(null, null); // SUBACK 0x80 for this filter (§3.9.3)
    }
    set.add(sub.topic); // reserved now: the other filters of the same SUBSCRIBE are checked concurrently
    next.call(this, client, sub, (err, granted) => {
      if (err || !granted) set.delete(sub.topic);
      else if (granted.topic !== sub.topic) {
        set.delete(sub.topic);
        set.add(granted.topic);
      }
      callback(err, granted);
    });
  };
  aedes.on('unsubscribe', (unsubscriptions: string[], client: Client) => {
    const set = granted.get(client);
    if (set) for (const topic of unsubscriptions) set.delete(topic);
  });
  return granted;
}

/**
 * The persistence Aedes should use: `persistence` itself, except that `addSubscriptions` stores
 * only the filters `granted` holds for that client. Aedes 1.2 stores a SUBSCRIBE's whole filter
 * list for each filter it grants (`storeSubscriptions` in lib/handlers/subscribe.js), refused
 * filters of the same packet included, so without this a refused filter (over the cap, or denied
 * by the ACL) would still be kept in the session — and restored, and counted — forever.
 *
 * A Proxy: every other property and method is the persistence's own (methods bound to it), so one
 * persistence can serve successive brokers, each with its own wrapper.
 */
export function storeGrantedOnly(persistence: BrokerPersistence, granted: GrantedFilters): BrokerPersistence {
  type AddSubscriptions = (client: Client, subs: Subscription[], cb?: (err?: Error | null) => void) => Promise<void> | void;
  // Aedes passes the same array (the SUBSCRIBE's filters) once per granted filter: store each filter
  // once, in the call after it was granted. One filter per call also keeps aedes-persistence's
  // broadcast waiters apart (keyed by client id and the first filter of the call).
  const stored = new WeakMap<Subscription[], Set<string>>();
  return new Proxy(persistence, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop === 'addSubscriptions' && typeof value === 'function') {
        const add = value as AddSubscriptions;
        return (client: Client, subs: Subscription[], cb?: (err?: Error | null) => void) => {
          const set = granted.get(client);
          if (!set) return add.call(target, client, subs, cb);
          let done = stored.get(subs);
          if (!done) stored.set(subs, (done = new Set()));
          const fresh = subs.filter((s) => set.has(s.topic) && !done.has(s.topic));
          for (const s of fresh) done.add(s.topic);
          if (fresh.length === 0) {
            if (cb) return void process.nextTick(cb, null);
            return Promise.resolve();
          }
          return add.call(target, client, fresh, cb);
        };
      }
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The {@link IndexedMemoryPersistence} behind a persistence from `createPersistence('memory')`, if it is one. */
export function memoryStoreOf(persistence: unknown): IndexedMemoryPersistence | undefined {
  if (persistence instanceof IndexedMemoryPersistence) return persistence;
  const inner = (persistence as { asyncPersistence?: unknown } | null)?.asyncPersistence;
  return inner instanceof IndexedMemoryPersistence ? inner : undefined;
}

/** What {@link installQueueLimits} needs. */
export interface QueueLimitOptions extends QueueLimits {
  /** Counts a rejection (`fedmq_broker_rejections_total`). */
  reject(reason: RejectionReason): void;
  log: Logger;
}

/** Drops remembered for live deliveries to suppress; older ones are forgotten (they matter for microseconds). */
const MAX_DROP_MARKS = 10_000;

/**
 * Caps the outgoing queue of every persistent-session client of `store` (QoS 1/2 messages, sent
 * and unacknowledged or waiting for the client to come back) at `maxMessages` and `maxBytes`
 * payload bytes (0 = no cap). Beyond a cap the new message is not queued for that client and is
 * not delivered to it live either — Aedes would find no queued copy to give a message id to and
 * disconnect the client — so the client gets the oldest messages and loses the newest, as with
 * mosquitto's `max_queued_messages` / `max_queued_bytes`. Each drop is counted as `queue_full`;
 * the first drop of a full queue is logged at warn with `FEDMQ_LIMIT`, the next ones at debug
 * until the queue has room again.
 *
 * The store's limits and drop callback are set to this broker's (a store handed to successive
 * brokers takes the latest broker's). Install after `instrumentBroker`: a suppressed delivery is
 * then not counted as sent.
 */
export function installQueueLimits(aedes: Aedes, store: IndexedMemoryPersistence, opts: QueueLimitOptions): void {
  const marks = new Map<string, true>();
  const key = (clientId: string, brokerId: unknown, counter: unknown) => `${clientId}\u0000${String(brokerId)}\u0000${String(counter)}`;
  store.queueLimits = { maxMessages: opts.maxMessages, maxBytes: opts.maxBytes };
  store.onQueueDrop = (drop: QueueDrop) => {
    opts.reject('queue_full');
    // remembered for the live delivery that follows (Aedes' publish: enqueue for the persistent sessions, then emit)
    marks.set(key(drop.clientId, drop.brokerId, drop.brokerCounter), true);
    if (marks.size > MAX_DROP_MARKS) marks.delete(marks.keys().next().value!);
    const fields = {
      clientId: drop.clientId.slice(0, LOG_CHARS), topic: drop.topic.slice(0, LOG_CHARS), limit: drop.limit, bytes: drop.bytes,
      queuedMessages: drop.queuedMessages, queuedBytes: drop.queuedBytes, maxQueuedMessages: opts.maxMessages, maxQueuedBytes: opts.maxBytes, code: ErrorCodes.LIMIT,
    };
    const message = `message dropped for ${drop.clientId.slice(0, LOG_CHARS)}: its queue is full (${drop.limit})`;
    if (drop.first) opts.log.warn(fields, message);
    else opts.log.debug(fields, message);
  };

  const next = aedes.authorizeForward;
  aedes.authorizeForward = function fedmqQueueLimit(client, packet) {
    if (marks.size > 0 && packet.qos > 0 && marks.delete(key(client.id, packet.brokerId, packet.brokerCounter))) return null;
    return next.call(this, client, packet);
  };
}
