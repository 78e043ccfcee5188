import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { BrokerPersistence } from './persistence.ts';

const require = createRequire(import.meta.url);

/**
 * A retained PUBLISH as Aedes hands it to the persistence (an `aedes-packet` Packet or a plain
 * object): only `topic` and `payload` matter here, the rest is kept as given.
 */
export interface RetainedPacket {
  topic: string;
  payload: Buffer | string;
  [field: string]: unknown;
}

/** One topic level of the index: the retained packet of the topic ending here, and the next levels. */
interface Level {
  packet?: RetainedPacket;
  /** Insertion order of `packet`: kept when the packet is replaced, new after a delete. */
  seq: number;
  children?: Map<string, Level>;
}

/** `$` (36): topics starting with it are not matched by a filter whose first level is a wildcard. */
const DOLLAR = 36;
const isDollar = (name: string) => name.charCodeAt(0) === DOLLAR;

/**
 * Retained messages indexed by topic level (a trie keyed by the `/`-separated levels), so that the
 * lookup for a subscription costs O(levels + matches) instead of a scan of every retained message.
 *
 * Matching follows MQTT 3.1.1 §4.7 (and MQTT 5 §4.7, which is the same):
 * - `#` is the last level of a filter and matches the parent level and any number of levels below
 *   it (`a/#` matches `a`, `a/b`, `a/b/c`) [MQTT-4.7.1-2];
 * - `+` matches exactly one level, an empty level included (`a/+` matches `a/`) [MQTT-4.7.1-3];
 * - a filter whose first level is `+` or `#` does not match topics starting with `$`
 *   (`$SYS/…`, `$foo`) [MQTT-4.7.2-1]; `$SYS/#` does;
 * - a filter without wildcards matches the one topic equal to it.
 *
 * {@link match} returns packets in the order their topics were first stored, as
 * aedes-persistence's `Map` does (replacing a topic's packet keeps its place; deleting and storing
 * it again moves it to the end). A filter with a `#` that is not its last level is not a valid
 * MQTT filter (Aedes refuses it at SUBSCRIBE, `validateTopic`) and matches nothing here.
 */
export class RetainedIndex {
  #root: Level = { seq: 0 };
  #seq = 0;
  #size = 0;

  /** Number of retained messages held. */
  get size(): number {
    return this.#size;
  }

  /**
   * Stores `packet` as the retained message of its topic, replacing the previous one; an empty
   * payload deletes the topic's retained message instead (MQTT 3.1.1 §3.3.1.3). The packet is
   * kept by reference: copy it first if the caller may change it.
   */
  store(packet: RetainedPacket): void {
    if (packet.payload.length === 0) this.delete(packet.topic);
    else this.#set(packet);
  }

  /** Deletes the retained message of `topic` (exact topic, no wildcards); prunes levels left empty. */
  delete(topic: string): void {
    const names = topic.split('/');
    const path: Level[] = [this.#root];
    for (const name of names) {
      const next = path[path.length - 1].children?.get(name);
      if (!next) return;
      path.push(next);
    }
    const last = path[path.length - 1];
    if (!last.packet) return;
    last.packet = undefined;
    this.#size--;
    for (let i = path.length - 1; i > 0; i--) {
      const level = path[i];
      if (level.packet || level.children?.size) break;
      path[i - 1].children!.delete(names[i - 1]);
    }
  }

  /**
   * The retained packets whose topics match the MQTT filter `filter`, in first-stored order.
   * Cost: O(levels of the filter) for a filter without wildcards; otherwise the levels visited
   * are those on the filter's path (`+` visits every child of a level, `#` the subtree under its
   * parent) plus a sort of the matches.
   */
  match(filter: string): RetainedPacket[] {
    const names = filter.split('/');
    if (!filter.includes('+') && !filter.includes('#')) {
      let level: Level | undefined = this.#root;
      for (const name of names) {
        level = level.children?.get(name);
        if (!level) return [];
      }
      return level.packet ? [level.packet] : [];
    }
    const found: Level[] = [];
    walk(this.#root, names, 0, found);
    if (found.length > 1) found.sort((a, b) => a.seq - b.seq);
    return found.map((l) => l.packet!);
  }

  /** Drops everything. */
  clear(): void {
    this.#root = { seq: 0 };
    this.#size = 0;
  }

  #set(packet: RetainedPacket): void {
    let level = this.#root;
    for (const name of packet.topic.split('/')) {
      level.children ??= new Map();
      let next = level.children.get(name);
      if (!next) {
        next = { seq: 0 };
        level.children.set(name, next);
      }
      level = next;
    }
    if (!level.packet) {
      level.seq = ++this.#seq;
      this.#size++;
    }
    level.packet = packet;
  }
}

/** Collects into `found` the levels under `level` with a packet that match `names[i…]`. */
function walk(level: Level, names: string[], i: number, found: Level[]): void {
  if (i === names.length) {
    if (level.packet) found.push(level);
    return;
  }
  const name = names[i];
  if (name === '#') {
    if (i !== names.length - 1) return; // not a valid filter
    if (level.packet) found.push(level); // `a/#` matches `a`; the root holds no packet
    if (!level.children) return;
    for (const [childName, child] of level.children) {
      if (i === 0 && isDollar(childName)) continue;
      collect(child, found);
    }
    return;
  }
  if (!level.children) return;
  if (name === '+') {
    for (const [childName, child] of level.children) {
      if (i === 0 && isDollar(childName)) continue;
      walk(child, names, i + 1, found);
    }
    return;
  }
  const child = level.children.get(name);
  if (child) walk(child, names, i + 1, found);
}

/** Collects every level with a packet in the subtree of `top` (iteratively: topics may be deep). */
function collect(top: Level, found: Level[]): void {
  const stack = [top];
  while (stack.length > 0) {
    const level = stack.pop()!;
    if (level.packet) found.push(level);
    if (level.children) for (const child of level.children.values()) stack.push(child);
  }
}

/** What fedmq uses of aedes-persistence's in-memory class (asyncPersistence.js). */
interface AsyncMemoryPersistence {
  storeRetained(packet: RetainedPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  destroy(): Promise<void>;
}

/**
 * A packet of a client's outgoing queue, as Aedes hands it to the persistence (an `aedes-packet`
 * Packet; a PUBLISH, or a PUBREL that replaced one for QoS 2).
 */
export interface QueuedPacket {
  cmd?: string;
  topic?: string;
  payload?: Buffer | string;
  qos?: number;
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
  [field: string]: unknown;
}

/** The caps of {@link IndexedMemoryPersistence}'s outgoing queues, per client; 0 = no cap. */
export interface QueueLimits {
  maxMessages: number;
  maxBytes: number;
}

/** A message {@link IndexedMemoryPersistence} did not queue for a client because its queue was full. */
export interface QueueDrop {
  clientId: string;
  /** Which cap: the number of messages or the payload bytes. */
  limit: 'messages' | 'bytes';
  topic: string;
  /** Payload bytes of the dropped message. */
  bytes: number;
  /** The client's queue as it stays (the message not counted). */
  queuedMessages: number;
  queuedBytes: number;
  /** True for the first drop since the client's queue last had room (log this one loudly). */
  first: boolean;
  /** The dropped packet's broker id and counter (Aedes' identity of a message; live deliveries carry them too). */
  brokerId?: string;
  brokerCounter?: number;
}

/** One client's outgoing queue and its payload bytes. */
interface Outgoing {
  packets: QueuedPacket[];
  bytes: number;
  /** A message was dropped and nothing has left the queue since. */
  full: boolean;
}

/** Payload bytes of a queued packet (PUBREL: 0). */
function payloadBytes(packet: QueuedPacket): number {
  const p = packet.payload;
  return p === undefined ? 0 : typeof p === 'string' ? Buffer.byteLength(p) : p.length;
}

// the packet class aedes-persistence queues (a copy of what Aedes hands it)
const AedesPacket = require('aedes-packet') as new (original: QueuedPacket) => QueuedPacket;
type AsyncMemoryClass = new (opts?: Record<string, unknown>) => AsyncMemoryPersistence;

// aedes-persistence 11's own in-memory store and its callback layer, as persistence.js builds them
const AsyncMemory = require('aedes-persistence/asyncPersistence.js') as AsyncMemoryClass;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as {
  CallBackPersistence: new (factory: (opts: Record<string, unknown>) => AsyncMemoryPersistence, opts?: Record<string, unknown>) => BrokerPersistence;
};

/**
 * aedes-persistence 11's in-memory store (sessions, subscriptions, wills: inherited unchanged)
 * with its retained messages in a {@link RetainedIndex} instead of a `Map` scanned in full for
 * every subscription (`retainedMessagesByPattern` in asyncPersistence.js), and its outgoing QoS
 * 1/2 queues kept here with their payload bytes, so they can be capped per client
 * ({@link IndexedMemoryPersistence.queueLimits}; the stock store's queue rules otherwise, checked
 * by aedes-persistence's abstract test suite in retained.test.ts).
 *
 * Differences from the stock store, both where the stock store departs from MQTT 3.1.1 §4.7 and
 * from Aedes' own live routing (mqemitter with `matchEmptyLevels`, `blockDollarSignTopics`):
 * `+` matches an empty level, and a filter starting with a wildcard does not return retained
 * messages on `$` topics. Everything else — which packets, in which order, copies kept on store,
 * empty payload deletes, one packet per topic, duplicates across overlapping filters of one
 * SUBSCRIBE — is the same (broker/src/retained.test.ts checks it against the stock store).
 */
export class IndexedMemoryPersistence extends AsyncMemory {
  #retained = new RetainedIndex();
  /** clientId → its outgoing queue (the stock store's `#outgoing`, plus byte accounting). */
  #outgoing = new Map<string, Outgoing>();

  /**
   * Caps per client's outgoing queue (QoS 1/2 messages for a persistent session, sent and not
   * acknowledged or not yet sent); 0 = no cap. Default none; `startBroker` sets its `limits`.
   * Beyond a cap a new message is not queued for that client (the oldest are kept, as mosquitto's
   * `max_queued_messages` / `max_queued_bytes`) and {@link onQueueDrop} is told.
   */
  queueLimits: QueueLimits = { maxMessages: 0, maxBytes: 0 };

  /** Called for every message not queued because of {@link queueLimits} (synchronously, before Aedes delivers it live). */
  onQueueDrop: ((drop: QueueDrop) => void) | undefined;

  /** Stores a copy of `packet` (as the stock store does); an empty payload deletes the topic's retained message. */
  override async storeRetained(packet: RetainedPacket): Promise<void> {
    this.#retained.store({ ...packet });
  }

  /** The retained messages matching `pattern`, as an object-mode stream. */
  override createRetainedStream(pattern: string): Readable {
    return Readable.from(this.#retained.match(pattern));
  }

  /** The retained messages matching each of `patterns` in turn (one copy per matching pattern, as the stock store). */
  override createRetainedStreamCombi(patterns: string[]): Readable {
    return Readable.from(patterns.flatMap((p) => this.#retained.match(p)));
  }

  /** Number of retained messages held. */
  get retainedCount(): number {
    return this.#retained.size;
  }

  /** Queues `packet` for `sub.clientId` unless a {@link queueLimits} cap is reached (then {@link onQueueDrop}). */
  async outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void> {
    this.#enqueue(sub.clientId, packet);
  }

  /** {@link outgoingEnqueue} for each of `subs` (one copy per subscription, as the stock store). */
  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: QueuedPacket): Promise<void> {
    for (const sub of subs) this.#enqueue(sub.clientId, packet);
  }

  /**
   * Sets the message id of the queued packet with `packet`'s broker id and counter, or replaces
   * the packet of a different broker with the same message id (a PUBREL after PUBREC) — the stock
   * store's rules. @throws Error 'no such packet' when neither is queued (Aedes then drops the client).
   */
  async outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void> {
    const q = this.#outgoing.get(client.id);
    for (const [i, queued] of (q?.packets ?? []).entries()) {
      if (queued.brokerId === packet.brokerId) {
        if (queued.brokerCounter === packet.brokerCounter) {
          queued.messageId = packet.messageId;
          return;
        }
        // same broker, another counter: message ids wrap at 65535, keep searching
      } else if (queued.messageId === packet.messageId) {
        q!.bytes += payloadBytes(packet) - payloadBytes(queued);
        q!.packets[i] = packet;
        return;
      }
    }
    throw new Error('no such packet');
  }

  /**
   * Removes and returns the queued packet with `packet.messageId` (a PUBACK, or a message the
   * client no longer gets). A packet without a message id clears nothing: Aedes asks so when its
   * `authorizeForward` refuses a live delivery, and the stock store would then remove the first
   * queued message not yet sent (which has no id either) — a message lost for an offline client.
   */
  async outgoingClearMessageId(client: { id: string }, packet: QueuedPacket): Promise<QueuedPacket | undefined> {
    if (packet.messageId === undefined || packet.messageId === null) return undefined;
    const q = this.#outgoing.get(client.id);
    if (!q) return undefined;
    const i = q.packets.findIndex((p) => p.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [removed] = q.packets.splice(i, 1);
    q.bytes -= payloadBytes(removed);
    q.full = false;
    if (q.packets.length === 0) this.#outgoing.delete(client.id);
    return removed;
  }

  /** The client's queued packets, oldest first (a copy: the queue may change while it is read). */
  outgoingStream(client: { id: string }): Readable {
    return Readable.from([...(this.#outgoing.get(client.id)?.packets ?? [])]);
  }

  /** What is queued for `clientId` now: messages and their payload bytes. */
  queued(clientId: string): { messages: number; bytes: number } {
    const q = this.#outgoing.get(clientId);
    return { messages: q?.packets.length ?? 0, bytes: q?.bytes ?? 0 };
  }

  #enqueue(clientId: string, packet: QueuedPacket): void {
    let q = this.#outgoing.get(clientId);
    const bytes = payloadBytes(packet);
    const { maxMessages, maxBytes } = this.queueLimits;
    const count = q?.packets.length ?? 0;
    const held = q?.bytes ?? 0;
    const limit = maxMessages > 0 && count >= maxMessages ? 'messages' : maxBytes > 0 && held + bytes > maxBytes ? 'bytes' : undefined;
    if (limit) {
      const first = !q?.full;
      if (q) q.full = true;
      this.onQueueDrop?.({ clientId, limit, topic: String(packet.topic ?? ''), bytes, queuedMessages: count, queuedBytes: held, first, brokerId: packet.brokerId, brokerCounter: packet.brokerCounter });
      return;
    }
    if (!q) {
      q = { packets: [], bytes: 0, full: false };
      this.#outgoing.set(clientId, q);
    }
    q.packets.push(new AedesPacket(packet));
    q.bytes += bytes;
  }

  /**
   * Destroys the store (the stock store's `destroy`) and drops the retained messages.
   * @throws Error when called twice (as the stock store).
   */
  override async destroy(): Promise<void> {
    await super.destroy();
    this.#retained.clear();
  }
}

/**
 * The in-memory persistence of `createPersistence('memory')` and `startBroker`'s default: what
 * `require('aedes-persistence')(opts)` returns (a CallBackPersistence around the in-memory store),
 * with the store replaced by {@link IndexedMemoryPersistence}. `opts` are aedes-persistence's
 * (`broadcastSubscriptions`).
 */
export function indexedMemoryPersistence(opts: Record<string, unknown> = {}): BrokerPersistence {
  return new CallBackPersistence((o) => new IndexedMemoryPersistence(o), opts);
}
