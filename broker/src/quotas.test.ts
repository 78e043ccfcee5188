import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type BrokerOptions, type RunningBroker } from './index.ts';
import { memoryStoreOf } from './quotas.ts';
import type { IndexedMemoryPersistence } from './retained.ts';

const KiB = 1024;
const UPDATE_FILTER = 'fedmq/v2/j/nodes/+/update';
const COORDINATOR = 'fedmq:j:coordinator';

let broker: RunningBroker | undefined;
const clients: MqttClient[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  for (const s of sockets.splice(0)) s.destroy();
  await broker?.close();
  broker = undefined;
});

async function start(opts: BrokerOptions): Promise<RunningBroker> {
  broker = await startBroker({ port: 0, host: '127.0.0.1', ...opts });
  return broker;
}
async function connect(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, ...opts });
  clients.push(c);
  return c;
}
async function rejections(): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const v of (await broker!.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values) m.set(String(v.labels.reason), v.value);
  return m;
}
/** Aedes' persistence (not in its type declarations). */
const persistenceOf = (b: RunningBroker) => (b.aedes as unknown as { persistence: { subscriptionsByClient(c: { id: string }): Promise<unknown[]> } }).persistence;
const store = (): IndexedMemoryPersistence => memoryStoreOf(persistenceOf(broker!))!;
/** A payload of `bytes` bytes that says which message it is. */
const payload = (i: number, bytes: number) => Buffer.concat([Buffer.from(String(i).padStart(4, '0')), Buffer.alloc(bytes - 4)]);

/** A persistent session subscribed to `filter` (QoS 1), then gone: its messages queue on the broker. */
async function offlineSession(clientId: string, filter: string): Promise<void> {
  const c = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, clientId, clean: false });
  await c.subscribeAsync(filter, { qos: 1 });
  await c.endAsync();
}

/** Reconnects the session and collects the first `n` messages it is given. */
async function drain(clientId: string, n: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  const c = mqtt.connect(broker!.url, { reconnectPeriod: 0, clientId, clean: false });
  clients.push(c);
  await new Promise<void>((resolve) => c.on('message', (_t, p) => got.push(p) === n && resolve()));
  return got;
}

describe('QoS 1 queue per persistent-session client', () => {
  it('the attack, small: an offline coordinator session, one node publishing 64 KiB updates; the queue stops at 1 MiB, oldest kept', async () => {
    await start({ limits: { maxQueuedBytes: 1024 * KiB, maxQueuedMessages: 1000 } });
    await offlineSession(COORDINATOR, UPDATE_FILTER);
    const node = await connect({ clientId: 'fedmq:j:node:n1' });
    for (let i = 0; i < 20; i++) await node.publishAsync('fedmq/v2/j/nodes/n1/update', payload(i, 64 * KiB), { qos: 1 });
    // 16 × 64 KiB is exactly the cap (accepted); the 17th and later are dropped for this client
    expect(store().queued(COORDINATOR)).toEqual({ messages: 16, bytes: 1024 * KiB });
    expect((await rejections()).get('queue_full')).toBe(4);
    // the node was not disconnected, and the coordinator gets the 16 oldest when it comes back
    expect(node.connected).toBe(true);
    const got = await drain(COORDINATOR, 16);
    expect(got.map((p) => Number(p.subarray(0, 4).toString()))).toEqual([...Array(16).keys()]);
  });

  it('counts messages too: the cap is accepted, one more is dropped; room again once acknowledged', async () => {
    await start({ limits: { maxQueuedMessages: 3 } });
    await offlineSession(COORDINATOR, UPDATE_FILTER);
    const node = await connect();
    for (let i = 0; i < 4; i++) await node.publishAsync('fedmq/v2/j/nodes/n1/update', payload(i, 8), { qos: 1 });
    expect(store().queued(COORDINATOR)).toEqual({ messages: 3, bytes: 24 });
    expect((await rejections()).get('queue_full')).toBe(1);
    const got = await drain(COORDINATOR, 3);
    expect(got.map((p) => p.subarray(0, 4).toString())).toEqual(['0000', '0001', '0002']);
    // the session acknowledged them: the queue is empty and takes messages again (delivered live)
    const next = new Promise<string>((resolve) => clients.at(-1)!.on('message', (_t, p) => resolve(p.subarray(0, 4).toString())));
    await node.publishAsync('fedmq/v2/j/nodes/n1/update', payload(9, 8), { qos: 1 });
    expect(await next).toBe('0009');
  });

  it('a connected session that does not acknowledge: beyond the cap messages are not sent to it, and it stays connected', async () => {
    await start({ limits: { maxQueuedMessages: 3 } });
    const raw = new RawClient(await rawSocket(broker!.port));
    raw.send(connectPacket(COORDINATOR, false));
    await raw.next(0x20); // CONNACK
    raw.send(subscribePacket(1, UPDATE_FILTER));
    await raw.next(0x90); // SUBACK
    const node = await connect();
    for (let i = 0; i < 5; i++) await node.publishAsync('fedmq/v2/j/nodes/n1/update', payload(i, 8), { qos: 1 });
    // the broker has handled all five (their PUBACKs came back); the raw client has three, never acknowledged
    const publishes = await raw.until(0x30, 3);
    expect(publishes.map((b) => b.subarray(-8, -4).toString())).toEqual(['0000', '0001', '0002']);
    expect(store().queued(COORDINATOR).messages).toBe(3);
    expect((await rejections()).get('queue_full')).toBe(2);
    // still connected: a PINGREQ is answered
    raw.send(Buffer.from([0xc0, 0x00]));
    await raw.next(0xd0);
    expect(raw.types.filter((t) => t === 0x30)).toHaveLength(3);
  });

  it('retained messages are not queue entries: a session capped at 2 gets all 5 retained statuses when it subscribes', async () => {
    await start({ limits: { maxQueuedMessages: 2 } });
    const node = await connect();
    for (let i = 0; i < 5; i++) await node.publishAsync(`fedmq/v2/j/nodes/n${i}/status`, payload(i, 8), { qos: 1, retain: true });
    const c = await connect({ clientId: COORDINATOR, clean: false });
    const got: string[] = [];
    const all = new Promise<void>((resolve) => c.on('message', (t) => got.push(t) === 5 && resolve()));
    await c.subscribeAsync('fedmq/v2/j/nodes/+/status', { qos: 1 });
    await all;
    expect(got.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `fedmq/v2/j/nodes/n${i}/status`));
    expect((await rejections()).get('queue_full')).toBe(0);
  });
});

describe('subscriptions per client', () => {
  const grant = (c: MqttClient, filters: string[]) => c.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }]))).then(
    (g) => g.map((x) => x.qos),
    (err: { packet?: { granted?: number[] } }) => err.packet?.granted,
  );
  const f = (i: number) => `t/${i}`;

  it('N−1 and N are granted, N+1 gets 0x80; re-subscribing a held filter is fine; an unsubscribe makes room', async () => {
    await start({ limits: { maxSubscriptions: 5 } });
    const c = await connect();
    expect(await grant(c, [0, 1, 2, 3].map(f))).toEqual([1, 1, 1, 1]); // N − 1
    expect(await grant(c, [f(4)])).toEqual([1]); // N
    expect(await grant(c, [f(5)])).toEqual([128]); // N + 1
    expect(await grant(c, [f(0), f(6)])).toEqual([1, 128]);
    expect((await rejections()).get('subscription_limit')).toBe(2);
    await c.unsubscribeAsync(f(0));
    expect(await grant(c, [f(5)])).toEqual([1]);
  });

  it('one SUBSCRIBE of many filters: the cap is kept and only the granted filters are stored in the session', async () => {
    await start({ limits: { maxSubscriptions: 5 } });
    const c = await connect({ clientId: 'many', clean: false });
    const granted = (await grant(c, [...Array(50).keys()].map(f)))!;
    expect(granted.filter((q) => q === 1)).toHaveLength(5);
    expect(granted.filter((q) => q === 128)).toHaveLength(45);
    const stored = await persistenceOf(broker!).subscriptionsByClient({ id: 'many' });
    expect(stored).toHaveLength(5);
  });

  it('a persistent session counts its stored subscriptions after reconnecting: no more than N summed over connections', async () => {
    await start({ limits: { maxSubscriptions: 3 } });
    const first = await connect({ clientId: 'p', clean: false });
    expect(await grant(first, [f(0), f(1), f(2)])).toEqual([1, 1, 1]);
    await first.endAsync();
    const again = await connect({ clientId: 'p', clean: false });
    expect(await grant(again, [f(3)])).toEqual([128]);
    expect(await grant(again, [f(1)])).toEqual([1]);
    // the restored subscriptions work
    const got = new Promise<string>((resolve) => again.on('message', (t) => resolve(t)));
    await (await connect()).publishAsync(f(2), 'x', { qos: 1 });
    expect(await got).toBe(f(2));
  });
});

// ------------------------------------------------------------- a raw MQTT client that never acknowledges

function rawSocket(port: number): Promise<Socket> {
  const s = netConnect(port, '127.0.0.1');
  sockets.push(s);
  return once(s, 'connect').then(() => s);
}

/** Splits the broker's byte stream into packets (MQTT 3.1.1 §2.2) and waits for types. */
class RawClient {
  private buf = Buffer.alloc(0);
  readonly packets: Buffer[] = [];
  readonly types: number[] = [];
  private waiters: (() => void)[] = [];
  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      for (;;) {
        let len = 0;
        let mul = 1;
        let i = 1;
        for (; i < this.buf.length && i <= 4; i++) {
          len += (this.buf[i] & 0x7f) * mul;
          mul *= 128;
          if (!(this.buf[i] & 0x80)) break;
        }
        if (i >= this.buf.length || this.buf.length < i + 1 + len) break;
        const p = this.buf.subarray(0, i + 1 + len);
        this.buf = this.buf.subarray(i + 1 + len);
        this.packets.push(p);
        this.types.push(p[0] & 0xf0);
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }
  send(b: Buffer): void {
    this.socket.write(b);
  }
  /** Resolves when `count` packets of `type` have arrived in all. */
  async until(type: number, count: number): Promise<Buffer[]> {
    for (;;) {
      const found = this.packets.filter((p) => (p[0] & 0xf0) === type);
      if (found.length >= count) return found;
      if (this.socket.destroyed) throw new Error('socket closed');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
  /** Resolves with the next packet of `type` not seen by an earlier call. */
  private seen = new Map<number, number>();
  async next(type: number): Promise<Buffer> {
    const n = (this.seen.get(type) ?? 0) + 1;
    this.seen.set(type, n);
    return (await this.until(type, n))[n - 1];
  }
}

function remaining(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}
const str = (s: string) => Buffer.concat([Buffer.from([s.length >> 8, s.length & 0xff]), Buffer.from(s)]);
function connectPacket(clientId: string, clean: boolean): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, clean ? 0x02 : 0, 0, 60]), str(clientId)]);
  return Buffer.concat([Buffer.from([0x10, ...remaining(body.length)]), body]);
}
function subscribePacket(messageId: number, filter: string): Buffer {
  const body = Buffer.concat([Buffer.from([messageId >> 8, messageId & 0xff]), str(filter), Buffer.from([1])]);
  return Buffer.concat([Buffer.from([0x82, ...remaining(body.length)]), body]);
}
