import assert from 'node:assert';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { createRng } from '@fedmq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { createPersistence, startBroker, type BrokerPersistence, type RunningBroker } from './index.ts';
import { IndexedMemoryPersistence, RetainedIndex, indexedMemoryPersistence, type RetainedPacket } from './retained.ts';

const require = createRequire(import.meta.url);
/** aedes-persistence 11's stock in-memory store (asyncPersistence.js), the reference. */
const StockMemory = require('aedes-persistence/asyncPersistence.js') as new () => {
  storeRetained(p: RetainedPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
};
const stockPersistence = require('aedes-persistence') as () => BrokerPersistence;

const packet = (topic: string, payload: string): RetainedPacket => ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: true });
const show = (list: readonly RetainedPacket[]) => list.map((p) => `${p.topic}=${p.payload.toString()}`);
const drain = async (stream: Readable) => (await stream.toArray()) as RetainedPacket[];

/** MQTT 3.1.1 §4.7 matching, written from the spec as the oracle: one filter, one topic. */
function mqttMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if ((f[0] === '+' || f[0] === '#') && topic.startsWith('$')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true; // the parent level and any below [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false; // `+`: one level, empty or not [MQTT-4.7.1-3]
  }
  return f.length === t.length;
}

describe('RetainedIndex', () => {
  const index = (...topics: string[]) => {
    const r = new RetainedIndex();
    for (const t of topics) r.store(packet(t, t));
    return r;
  };
  const topicsOf = (r: RetainedIndex, filter: string) => r.match(filter).map((p) => p.topic);

  it('matches exact topics, + (one level, empty ones too) and # (the parent level and below)', () => {
    const r = index('a', 'a/b', 'a/b/c', 'a/', 'a//c', '/a', 'b/b');
    expect(topicsOf(r, 'a/b')).toEqual(['a/b']);
    expect(topicsOf(r, 'a/b/c/d')).toEqual([]);
    expect(topicsOf(r, 'a/+')).toEqual(['a/b', 'a/']);
    expect(topicsOf(r, 'a/+/c')).toEqual(['a/b/c', 'a//c']);
    expect(topicsOf(r, '+/a')).toEqual(['/a']);
    expect(topicsOf(r, '+/b')).toEqual(['a/b', 'b/b']);
    expect(topicsOf(r, 'a/#')).toEqual(['a', 'a/b', 'a/b/c', 'a/', 'a//c']);
    expect(topicsOf(r, 'a/b/#')).toEqual(['a/b', 'a/b/c']);
    expect(topicsOf(r, '+/#')).toEqual(['a', 'a/b', 'a/b/c', 'a/', 'a//c', '/a', 'b/b']);
    expect(topicsOf(r, '#')).toEqual(['a', 'a/b', 'a/b/c', 'a/', 'a//c', '/a', 'b/b']);
    expect(topicsOf(r, '+')).toEqual(['a']);
  });

  it('does not match $ topics with a filter starting with a wildcard, and does with a literal first level', () => {
    const r = index('$SYS/broker/uptime', '$x', 'a/$x', 'a');
    expect(topicsOf(r, '#')).toEqual(['a/$x', 'a']);
    expect(topicsOf(r, '+')).toEqual(['a']);
    expect(topicsOf(r, '+/broker/#')).toEqual([]);
    expect(topicsOf(r, '$SYS/#')).toEqual(['$SYS/broker/uptime']);
    expect(topicsOf(r, '$SYS/+/uptime')).toEqual(['$SYS/broker/uptime']);
    expect(topicsOf(r, '$x')).toEqual(['$x']);
    expect(topicsOf(r, 'a/+')).toEqual(['a/$x']);
  });

  it('keeps one packet per topic in first-stored order; an empty payload deletes and prunes', () => {
    const r = new RetainedIndex();
    r.store(packet('n/1/s', 'one'));
    r.store(packet('n/2/s', 'two'));
    r.store(packet('n/1/s', 'one again')); // replaced in place
    expect(show(r.match('n/+/s'))).toEqual(['n/1/s=one again', 'n/2/s=two']);
    r.store(packet('n/1/s', ''));
    r.store(packet('n/1/s', 'back')); // deleted, then stored: now last
    expect(show(r.match('n/#'))).toEqual(['n/2/s=two', 'n/1/s=back']);
    expect(r.size).toBe(2);
    r.store(packet('n/3/s', '')); // deleting what is not there changes nothing
    r.delete('n');
    expect(r.size).toBe(2);
    for (const t of ['n/1/s', 'n/2/s']) r.store(packet(t, ''));
    expect(r.size).toBe(0);
    expect(r.match('#')).toEqual([]);
  });

  it('matches nothing for a # that is not the last level (not a valid filter)', () => {
    expect(topicsOf(index('a/b/c'), 'a/#/c')).toEqual([]);
  });
});

describe('IndexedMemoryPersistence against aedes-persistence\'s stock memory store', () => {
  // levels chosen so that random topics collide, share prefixes, start with $ and have empty levels
  const LEVELS = ['a', 'b', 'c', 'fedmq', 'nodes', 'status', '$SYS', '$x', ''];
  const pick = <T>(rng: () => number, xs: readonly T[]) => xs[Math.floor(rng() * xs.length)];
  const randomTopic = (rng: () => number) => {
    for (;;) {
      const t = Array.from({ length: 1 + Math.floor(rng() * 4) }, () => pick(rng, LEVELS)).join('/');
      if (t !== '') return t; // Aedes refuses an empty topic
    }
  };
  const randomFilter = (rng: () => number) => {
    const n = 1 + Math.floor(rng() * 4);
    const levels = Array.from({ length: n }, () => (rng() < 0.35 ? '+' : pick(rng, LEVELS)));
    if (rng() < 0.3) levels[n - 1] = '#';
    return levels.join('/');
  };
  /** Where the stock store departs from MQTT §4.7 (and from Aedes' live routing): `$` topics under a leading wildcard, `+` on an empty level. */
  const stockDeparts = (filter: string, topic: string) => ((filter[0] === '+' || filter[0] === '#') && topic[0] === '$') || topic.split('/').includes('');

  for (const seed of [1, 2, 3]) {
    it(`returns what the MQTT rules say and what the stock store returns, in the same order (seed ${seed})`, async () => {
      const rng = createRng(seed);
      const pool = Array.from({ length: 120 }, () => randomTopic(rng));
      const indexed = new IndexedMemoryPersistence();
      const stock = new StockMemory();
      const reference = new Map<string, RetainedPacket>(); // insertion-ordered, as the stock store
      let checked = 0;
      let departures = 0;
      for (let op = 1; op <= 600; op++) {
        const p = packet(pick(rng, pool), rng() < 0.15 ? '' : `v${op}`);
        await indexed.storeRetained(p);
        await stock.storeRetained(p);
        if (p.payload.length === 0) reference.delete(p.topic);
        else reference.set(p.topic, p);
        if (op % 50 !== 0) continue;
        for (let k = 0; k < 40; k++) {
          const filter = randomFilter(rng);
          const got = show(await drain(indexed.createRetainedStream(filter)));
          const spec = show([...reference.values()].filter((r) => mqttMatches(filter, r.topic)));
          expect(got, filter).toEqual(spec);
          const fromStock = await drain(stock.createRetainedStream(filter));
          const agreed = (list: string[]) => list.filter((s) => !stockDeparts(filter, s.slice(0, s.lastIndexOf('='))));
          expect(agreed(got), filter).toEqual(agreed(show(fromStock)));
          if (got.length !== fromStock.length) departures++;
          checked++;
        }
        const filters = [randomFilter(rng), randomFilter(rng), pick(rng, pool)];
        const combi = show(await drain(indexed.createRetainedStreamCombi(filters)));
        expect(combi, filters.join(' ')).toEqual(filters.flatMap((f) => show([...reference.values()].filter((r) => mqttMatches(f, r.topic)))));
      }
      expect(indexed.retainedCount).toBe(reference.size);
      expect(checked).toBe(480);
      expect(departures).toBeGreaterThan(0); // the workload does reach the two rules where the stores differ
      await indexed.destroy();
    });
  }

  it('keeps a copy of the stored packet, as the stock store does', async () => {
    const indexed = new IndexedMemoryPersistence();
    const p = packet('a/b', 'x');
    await indexed.storeRetained(p);
    p.topic = 'changed';
    expect(show(await drain(indexed.createRetainedStream('a/b')))).toEqual(['a/b=x']);
    await indexed.destroy();
  });
});

/**
 * aedes-persistence's own abstract test suite (abstract.js, written for node:test) run under
 * vitest: each of its tests becomes a vitest test with a node:test-like context (`t.plan`,
 * `t.assert` with node:assert's functions — loose `equal`/`deepEqual` as in node:test —, and
 * `t.diagnostic`). A planned count is checked when the test function returns, as node:test does.
 */
const abstractSuite = require('aedes-persistence/abstract.js') as (opts: Record<string, unknown>) => void;
type AssertFn = (...args: unknown[]) => void;
function nodeTestShim(prefix: string) {
  return (name: string, fn: (t: unknown) => unknown) => {
    it(`${prefix}: ${name}`, async () => {
      let planned: number | undefined;
      let count = 0;
      const asserts = Object.fromEntries(
        Object.entries(assert).filter(([, v]) => typeof v === 'function').map(([k, v]) => [k, (...args: unknown[]) => { count++; return (v as AssertFn)(...args); }]),
      );
      await fn({ name, plan: (n: number) => { planned = n; }, assert: asserts, diagnostic: () => undefined });
      if (planned !== undefined) expect(count, `${name}: assertions made against t.plan`).toBe(planned);
    });
  };
}

describe('aedes-persistence abstract suite', () => {
  // the four ways aedes-persistence's own test/ directory drives it
  abstractSuite({ test: nodeTestShim('async store'), persistence: () => new IndexedMemoryPersistence(), testAsync: true });
  abstractSuite({ test: nodeTestShim('callbacks'), persistence: indexedMemoryPersistence });
  abstractSuite({ test: nodeTestShim('async callbacks, broadcast'), persistence: () => indexedMemoryPersistence({ broadcastSubscriptions: true }), testAsync: true });
  abstractSuite({ test: nodeTestShim('wait for ready, broadcast'), persistence: () => indexedMemoryPersistence({ broadcastSubscriptions: true }), waitForReady: true });
});

describe('the broker\'s memory persistence', () => {
  let broker: RunningBroker | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await broker?.close();
    broker = undefined;
  });
  const connect = async (clientId: string) => {
    const c = await mqtt.connectAsync(broker!.url, { clientId, reconnectPeriod: 0 });
    clients.push(c);
    return c;
  };

  /**
   * Publishes retained messages, then subscribes with one SUBSCRIBE to `#` and the retained
   * `$end/marker`: the broker sends the retained messages of the filters in order, so the marker
   * arrives after every retained message of `#`. Returns the topics received before it.
   */
  async function retainedUnderHash(): Promise<string[]> {
    const pub = await connect('pub');
    for (const topic of ['fedmq/v2/j/nodes/n1/status', 'fedmq/v2/j/nodes/n2/status', '$fedmq/x', '$end/marker']) {
      await pub.publishAsync(topic, 'x', { qos: 1, retain: true });
    }
    const sub = await connect('sub');
    const got: string[] = [];
    const done = new Promise<void>((resolve) => sub.on('message', (topic, _payload, pkt) => {
      if (topic === '$end/marker') resolve();
      else if (pkt.retain) got.push(topic);
    }));
    await sub.subscribeAsync({ '#': { qos: 0 }, '$end/marker': { qos: 0 } });
    await done;
    return got.sort();
  }

  it('is the indexed store by default: `#` gets the retained messages but not those on $ topics [MQTT-4.7.2-1]', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    expect(await retainedUnderHash()).toEqual(['fedmq/v2/j/nodes/n1/status', 'fedmq/v2/j/nodes/n2/status']);
  });

  it('(the stock store, for contrast, hands `#` the $ topic as well)', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', aedes: { persistence: stockPersistence() } });
    expect(await retainedUnderHash()).toEqual(['$fedmq/x', 'fedmq/v2/j/nodes/n1/status', 'fedmq/v2/j/nodes/n2/status']);
  });

  it('is what createPersistence("memory") makes, and what persistence: "memory" uses', async () => {
    const { persistence, close } = createPersistence('memory');
    expect((persistence as unknown as { asyncPersistence: unknown }).asyncPersistence).toBeInstanceOf(IndexedMemoryPersistence);
    await close();
    broker = await startBroker({ port: 0, host: '127.0.0.1', persistence: 'memory' });
    expect((broker.aedes as unknown as { persistence: { asyncPersistence: unknown } }).persistence.asyncPersistence).toBeInstanceOf(IndexedMemoryPersistence);
  });
});
