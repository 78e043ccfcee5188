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
type AsyncMemoryClass = new (opts?: Record<string, unknown>) => AsyncMemoryPersistence;

// aedes-persistence 11's own in-memory store and its callback layer, as persistence.js builds them
const AsyncMemory = require('aedes-persistence/asyncPersistence.js') as AsyncMemoryClass;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as {
  CallBackPersistence: new (factory: (opts: Record<string, unknown>) => AsyncMemoryPersistence, opts?: Record<string, unknown>) => BrokerPersistence;
};

/**
 * aedes-persistence 11's in-memory store (sessions, subscriptions, QoS 1/2 queues, wills: all
 * inherited unchanged) with its retained messages in a {@link RetainedIndex} instead of a `Map`
 * scanned in full for every subscription (`retainedMessagesByPattern` in asyncPersistence.js).
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
