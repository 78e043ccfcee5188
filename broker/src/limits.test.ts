import { once } from 'node:events';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ByteRateLimiter, ConnectionRateLimiter, DEFAULT_MAX_CONNECTIONS, MAX_REMAINING_LENGTH, OpenConnections, PacketSizeGuard, clientIdProblem, defaultMaxConnections, guardStream, isLoopback,
} from './limits.ts';
import { resolveLimits } from './index.ts';

/** Fixed header of a packet of type byte `type` with `remaining` bytes after it (MQTT 3.1.1 §2.2.3). */
function header(type: number, remaining: number): Buffer {
  const bytes = [type];
  do {
    let b = remaining % 128;
    remaining = Math.floor(remaining / 128);
    if (remaining > 0) b |= 0x80;
    bytes.push(b);
  } while (remaining > 0);
  return Buffer.from(bytes);
}

/** A whole packet: header + `remaining` zero bytes. */
const packet = (type: number, remaining: number) => Buffer.concat([header(type, remaining), Buffer.alloc(remaining)]);

/** An MQTT 3.1.1 CONNECT, keepalive 60 s. */
function connectPacket(clientId: string, clean = true): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.concat([Buffer.from([0, 4]), Buffer.from('MQTT'), Buffer.from([4, clean ? 0x02 : 0, 0, 60]), Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([header(0x10, body.length), body]);
}

describe('PacketSizeGuard', () => {
  it('follows packet boundaries whatever the chunking, and counts packets', () => {
    const stream = Buffer.concat([packet(0x10, 20), packet(0xc0, 0), packet(0x30, 127), packet(0x30, 128), packet(0x30, 16_383), packet(0x30, 16_384)]);
    for (const size of [1, 2, 3, 7, 1000, stream.length]) {
      const g = new PacketSizeGuard(1 << 20);
      for (let i = 0; i < stream.length; i += size) expect(g.push(stream.subarray(i, i + size))).toBeUndefined();
      expect([size, g.packets]).toEqual([size, 6]);
    }
  });

  it('accepts a packet of exactly the limit and stops at one byte more, from the header alone', () => {
    const max = 1000;
    const exact = new PacketSizeGuard(max);
    expect(exact.push(packet(0x30, max - 3))).toBeUndefined(); // 1 type byte + 2 length bytes + 997
    const over = new PacketSizeGuard(max);
    expect(over.push(header(0x30, max - 2))).toEqual({ reason: 'packet_too_large', packetBytes: max + 1, maxPacketBytes: max });
    // stays stopped
    expect(over.push(packet(0xc0, 0))).toEqual({ reason: 'packet_too_large', packetBytes: max + 1, maxPacketBytes: max });
  });

  it('stops a header split byte by byte as soon as its length is known', () => {
    const g = new PacketSizeGuard(1 << 20);
    const h = header(0x30, 200 << 20);
    expect(h.length).toBe(5);
    for (const byte of h.subarray(0, 4)) expect(g.push(Buffer.from([byte]))).toBeUndefined();
    expect(g.push(h.subarray(4))).toMatchObject({ reason: 'packet_too_large', packetBytes: 1 + 4 + (200 << 20) });
  });

  it('rejects a fifth length byte (malformed) and allows the largest legal length when the limit does', () => {
    expect(new PacketSizeGuard(1 << 20).push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toEqual({ reason: 'malformed_header' });
    expect(new PacketSizeGuard(MAX_REMAINING_LENGTH + 5).push(header(0x30, MAX_REMAINING_LENGTH))).toBeUndefined();
  });

  it('refuses a nonsensical limit', () => {
    expect(() => new PacketSizeGuard(1)).toThrow(RangeError);
    expect(() => new PacketSizeGuard(Number.NaN)).toThrow(RangeError);
  });
});

describe('guardStream', () => {
  it('passes a corked packet to the socket as one write (no Nagle stall between its pieces)', async () => {
    const writes: Buffer[] = [];
    const inner = new Duplex({ read() {}, write(chunk: Buffer, _e, cb) { writes.push(chunk); cb(); } });
    const outer = guardStream(inner, 1024, () => undefined);
    outer.cork();
    for (const piece of [Buffer.from([0x30, 0x05]), Buffer.from([0x00, 0x01, 0x74]), Buffer.from('hi')]) outer.write(piece);
    process.nextTick(() => outer.uncork());
    await new Promise<void>((resolve) => outer.write(Buffer.alloc(0), () => resolve()));
    expect(writes[0]).toEqual(Buffer.from([0x30, 0x05, 0x00, 0x01, 0x74, 0x68, 0x69]));
    expect(Buffer.concat(writes)).toEqual(Buffer.from([0x30, 0x05, 0x00, 0x01, 0x74, 0x68, 0x69]));
    outer.destroy();
  });

  /** A connected pair: the server side wrapped by guardStream, and the raw client side. */
  async function pair(): Promise<{ outer: ReturnType<typeof guardStream>; inner: Socket; client: Socket; close(): Promise<void> }> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const accepted = once(server, 'connection');
    const client = netConnect((server.address() as { port: number }).port, '127.0.0.1');
    client.on('error', () => {});
    const [inner] = (await accepted) as [Socket];
    const outer = guardStream(inner, 1024, () => {});
    outer.on('error', () => {});
    return { outer, inner, client, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  it('passes bytes both ways', async () => {
    const { outer, client, close } = await pair();
    const atServer = once(outer, 'data');
    client.write(packet(0xc0, 0));
    expect([...((await atServer)[0] as Buffer)]).toEqual([0xc0, 0]);
    const atClient = once(client, 'data');
    outer.write(Buffer.from([0xd0, 0]));
    expect([...((await atClient)[0] as Buffer)]).toEqual([0xd0, 0]);
    client.destroy();
    await close();
  });

  it('a normal close ends the connection gracefully, so the client\'s own last bytes meet no reset', async () => {
    const { outer, inner, client, close } = await pair();
    client.resume();
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    const closed = Promise.all([once(inner, 'close'), once(client, 'close')]);
    outer.destroy();
    expect(inner.destroyed).toBe(false); // half-closed, still reading
    client.end(packet(0xe0, 0)); // e.g. the client's DISCONNECT crossing our close
    await closed;
    expect(errors).toEqual([]);
    await close();
  });

  it('a close with an error destroys at once', async () => {
    const { outer, inner, client, close } = await pair();
    const closed = once(client, 'close');
    outer.destroy(new Error('protocol error'));
    await closed;
    expect(inner.destroyed).toBe(true);
    await close();
  });
});

describe('ConnectionRateLimiter', () => {
  it('allows a burst of max per address, then refills at max per perMs', () => {
    let now = 0;
    const l = new ConnectionRateLimiter({ max: 3, perMs: 3000, exemptLoopback: false }, () => now);
    expect([1, 2, 3, 4].map(() => l.allow('10.0.0.1'))).toEqual([true, true, true, false]);
    expect(l.allow('10.0.0.2')).toBe(true); // per address
    now = 999;
    expect(l.allow('10.0.0.1')).toBe(false);
    now = 1000; // one token back
    expect([l.allow('10.0.0.1'), l.allow('10.0.0.1')]).toEqual([true, false]);
    now = 100_000; // idle addresses are forgotten on the next sweep
    expect(l.allow('10.0.0.3')).toBe(true);
    expect(l.size).toBe(1);
  });

  it('exempts loopback unless told otherwise', () => {
    const l = new ConnectionRateLimiter({ max: 1, perMs: 60_000 }, () => 0);
    expect([l.allow('127.0.0.1'), l.allow('127.0.0.1'), l.allow('::1'), l.allow('::ffff:127.0.0.1')]).toEqual([true, true, true, true]);
    expect([l.allow('192.168.1.5'), l.allow('192.168.1.5')]).toEqual([true, false]);
    expect([isLoopback('127.9.9.9'), isLoopback('::ffff:10.0.0.1'), isLoopback('1270.0.0.1')]).toEqual([true, false, false]);
  });
});

describe('clientIdProblem (CONNACK 2)', () => {
  it.each([
    ['fedmq:j:node:pi-1', true, undefined],
    ['', true, undefined],
    ['', false, 'empty client id with clean session false'],
    ['a/b', true, 'client id contains +, # or /'],
    ['a+b', true, 'client id contains +, # or /'],
    ['#', true, 'client id contains +, # or /'],
    ['x'.repeat(128), true, undefined],
    ['x'.repeat(129), true, 'client id longer than 128'],
    ['evil\nFAKE LOG LINE', true, 'client id contains a control character'],
  ])('%j (clean %s) → %s', (id, clean, problem) => {
    expect(clientIdProblem(id, clean)).toBe(problem);
  });
});

describe('limits on a real broker', () => {
  let broker: RunningBroker | undefined;
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });
  const rejections = async (b: RunningBroker) => {
    const m = new Map<string, number>();
    for (const v of (await b.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values) m.set(String(v.labels.reason), v.value);
    return m;
  };
  const rawConnect = async (port: number): Promise<Socket> => {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    return s;
  };

  it('closes a connection on the fixed header of an oversized PUBLISH, before any of its body is sent', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { maxPacketBytes: 64 * 1024 } });
    const raw = await rawConnect(broker.port);
    const connack = once(raw, 'data');
    raw.write(connectPacket('raw-client'));
    expect([...((await connack)[0] as Buffer)]).toEqual([0x20, 2, 0, 0]);
    const closed = once(raw, 'close');
    raw.write(header(0x30, 100 * 1024 * 1024)); // declares 100 MiB, sends nothing more
    await closed;
    expect((await rejections(broker)).get('packet_too_large')).toBe(1);

    // a packet at the limit still passes, and the broker keeps serving
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const got = new Promise<number>((resolve) => c.on('message', (_t, p) => resolve(p.length)));
    await c.subscribeAsync('big', { qos: 1 });
    const payload = 64 * 1024 - 1 - 3 - 2 - 3 - 2; // type byte, 3 length bytes, topic length + "big", message id
    await c.publishAsync('big', Buffer.alloc(payload), { qos: 1 });
    expect(await got).toBe(payload);
    const closedClient = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.publish('big', Buffer.alloc(payload + 1), { qos: 1 });
    await closedClient;
    expect((await rejections(broker)).get('packet_too_large')).toBe(2);
    c.end(true);
  });

  it('guards MQTT over WebSocket the same way', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0, httpAssets: new Map(), limits: { maxPacketBytes: 4096 } });
    const c = await mqtt.connectAsync(broker.wsUrl!, { reconnectPeriod: 0 });
    await c.publishAsync('small', Buffer.alloc(1000), { qos: 1 });
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.publish('large', Buffer.alloc(10_000), { qos: 1 });
    await closed;
    expect((await rejections(broker)).get('packet_too_large')).toBe(1);
    c.end(true);
  });

  it('closes a connection with a malformed remaining length', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const raw = await rawConnect(broker.port);
    const closed = once(raw, 'close');
    raw.write(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]));
    await closed;
    expect((await rejections(broker)).get('malformed_header')).toBe(1);
  });

  it('destroys connections over the per-address rate at once', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { connectionRate: { max: 2, perMs: 60_000, exemptLoopback: false } } });
    const a = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const b = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const third = await rawConnect(broker.port);
    await once(third, 'close');
    expect((await rejections(broker)).get('connection_rate')).toBe(1);
    expect(broker.aedes.connectedClients).toBe(2);
    await Promise.all([a.endAsync(), b.endAsync()]);
  });

  it('answers bad client ids with CONNACK 2 (identifier rejected)', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const code = (opts: mqtt.IClientOptions) => mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, ...opts }).then(
      async (c) => { await c.endAsync(); return 0; },
      (err: { code?: number }) => err.code,
    );
    expect(await code({ clientId: 'sensors/1' })).toBe(2);
    expect(await code({ clientId: 'x'.repeat(200) })).toBe(2);
    // mqtt.js refuses to send this one itself (MQTT-3.1.3-8 asks the server to refuse it)
    const raw = await rawConnect(broker.port);
    const connack = once(raw, 'data');
    raw.write(connectPacket('', false));
    expect([...((await connack)[0] as Buffer)]).toEqual([0x20, 2, 0, 2]);
    raw.destroy();
    expect(await code({ clientId: 'fedmq:j:node:ok' })).toBe(0);
    expect((await rejections(broker)).get('client_id')).toBe(3);
  });
});

describe('ByteRateLimiter', () => {
  it('lets the burst through at once, then asks for the debt / rate (rounded up); refills with time; lift() ends it', () => {
    let now = 0;
    const r = new ByteRateLimiter({ bytesPerSecond: 1000, burstBytes: 5000 }, () => now);
    expect(r.take(4999)).toBe(0);
    expect(r.take(1)).toBe(0); // exactly the burst
    expect(r.take(1)).toBe(1); // one byte over: 1 ms at 1000 B/s
    expect(r.take(499)).toBe(500);
    now += 500; // paid
    expect(r.take(0)).toBe(0);
    now += 10_000; // refills to the burst, no more
    expect(r.take(5000)).toBe(0);
    expect(r.take(2000)).toBe(2000);
    r.lift();
    expect(r.take(1e9)).toBe(0);
  });
  it('refuses a nonsensical rate', () => {
    expect(() => new ByteRateLimiter({ bytesPerSecond: 0, burstBytes: 1 })).toThrow(RangeError);
    expect(() => new ByteRateLimiter({ bytesPerSecond: 1, burstBytes: 0 })).toThrow(RangeError);
  });
});

describe('OpenConnections', () => {
  it('accepts up to the cap per address, refuses one more, and takes one again after a close; loopback exempt only from the per-address cap', () => {
    const o = new OpenConnections(2, 5, true);
    expect([o.open('10.0.0.1'), o.open('10.0.0.1'), o.open('10.0.0.1')]).toEqual([undefined, undefined, 'connections_per_address']);
    o.close('10.0.0.1');
    expect(o.open('10.0.0.1')).toBeUndefined();
    expect([o.open('127.0.0.1'), o.open('127.0.0.1'), o.open('::ffff:127.0.0.1')]).toEqual([undefined, undefined, undefined]);
    expect(o.total).toBe(5);
    expect(o.open('10.0.0.2')).toBe('connections_total'); // the total counts loopback too
    const strict = new OpenConnections(1, 0, false);
    expect([strict.open('127.0.0.1'), strict.open('127.0.0.1')]).toEqual([undefined, 'connections_per_address']);
    expect(() => new OpenConnections(-1, 0)).toThrow(RangeError);
  });
  it('the default total is 10,000, or the open-file limit minus 64 when lower', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fedmq-limits-'));
    const file = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                 524288               files\n`;
    await writeFile(join(dir, 'a'), file('256'));
    await writeFile(join(dir, 'b'), file('1048576'));
    await writeFile(join(dir, 'c'), file('unlimited'));
    expect([defaultMaxConnections(join(dir, 'a')), defaultMaxConnections(join(dir, 'b')), defaultMaxConnections(join(dir, 'c')), defaultMaxConnections(join(dir, 'none'))]).toEqual([192, 10_000, 10_000, DEFAULT_MAX_CONNECTIONS]);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('resolveLimits', () => {
  it('fills in the defaults; exemptLoopback reaches the connection rate unless it names its own', () => {
    const d = resolveLimits();
    expect(d).toMatchObject({ exemptLoopback: true, maxConnectionsPerAddress: 100, handshakeTimeoutMs: 10_000, connectTimeoutMs: 30_000, maxQueuedMessages: 100_000, maxQueuedBytes: 2 ** 30, maxSubscriptions: 100 });
    expect(d.byteRate).toEqual({ bytesPerSecond: 16 * 2 ** 20, burstBytes: 64 * 2 ** 20 });
    expect(resolveLimits({ exemptLoopback: false }).connectionRate).toEqual({ max: 50, perMs: 10_000, exemptLoopback: false });
    expect(resolveLimits({ exemptLoopback: false, connectionRate: { max: 5, perMs: 1000, exemptLoopback: true } }).connectionRate).toMatchObject({ exemptLoopback: true });
    expect(() => resolveLimits({ maxSubscriptions: -1 })).toThrow(RangeError);
    expect(() => resolveLimits({ handshakeTimeoutMs: 0 })).toThrow(RangeError);
  });
});

describe('connection caps, timeouts and the byte rate on a real broker', () => {
  let broker: RunningBroker | undefined;
  const open: { end(force?: boolean): unknown }[] = [];
  const raws: Socket[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) c.end(true);
    for (const s of raws.splice(0)) s.destroy();
    await broker?.close();
    broker = undefined;
  });
  const rejections = async () => {
    const m = new Map<string, number>();
    for (const v of (await broker!.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values) m.set(String(v.labels.reason), v.value);
    return m;
  };
  const raw = async (port: number): Promise<Socket> => {
    const s = netConnect(port, '127.0.0.1');
    s.on('error', () => {});
    raws.push(s);
    await once(s, 'connect');
    return s;
  };
  const client = async (url: string) => {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    open.push(c);
    return c;
  };

  it('idle sockets beyond the per-address cap are destroyed at once; a client connects again once one closes', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { maxConnectionsPerAddress: 3, exemptLoopback: false } });
    const idle = [await raw(broker.port), await raw(broker.port)];
    await client(broker.url); // the third: at the cap, accepted and served
    const fourth = await raw(broker.port);
    await once(fourth, 'close');
    expect((await rejections()).get('connections_per_address')).toBe(1);
    const closed = once(idle[0], 'close');
    idle[0].destroy();
    await closed;
    // the broker may see the close a moment later: a CONNECT then succeeds (polling the real condition)
    let c: MqttClient | undefined;
    while (!c) c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 }, false).catch(() => undefined);
    open.push(c);
    expect(c.connected).toBe(true);
  });

  it('loopback is exempt from the per-address cap by default, not from the total', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { maxConnectionsPerAddress: 1, maxConnections: 3 } });
    await client(broker.url);
    await client(broker.url);
    await client(broker.url); // three from 127.0.0.1 with a per-address cap of 1
    const fourth = await raw(broker.port);
    await once(fourth, 'close');
    const r = await rejections();
    expect([r.get('connections_per_address'), r.get('connections_total')]).toEqual([0, 1]);
  });

  it('a TCP connection that never sends CONNECT is closed by the connect timeout', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { connectTimeoutMs: 200 } });
    const s = await raw(broker.port);
    await once(s, 'close');
    expect((await rejections()).get('connect_timeout')).toBe(1);
  });

  it('a connection to the HTTP port that neither upgrades nor asks for anything is closed by the handshake timeout', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0, httpAssets: new Map(), limits: { handshakeTimeoutMs: 200 } });
    const s = await raw(broker.httpPort!);
    await once(s, 'close');
    expect((await rejections()).get('handshake_timeout')).toBe(1);
    // an upgrade in time is not affected
    const ws = await client(broker.wsUrl!);
    expect(ws.connected).toBe(true);
  });

  it('over the byte rate the broker stops reading (backpressure): every message arrives, the publisher stays connected', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { byteRate: { bytesPerSecond: 512 * 1024, burstBytes: 64 * 1024 }, exemptLoopback: false } });
    const sub = await client(broker.url);
    await sub.subscribeAsync('bulk', { qos: 1 });
    const got: number[] = [];
    const all = new Promise<void>((resolve) => sub.on('message', (_t, p) => got.push(p.readUInt32BE(0)) === 8 && resolve()));
    const pub = await client(broker.url);
    for (let i = 0; i < 8; i++) {
      const p = Buffer.alloc(32 * 1024);
      p.writeUInt32BE(i, 0);
      await pub.publishAsync('bulk', p, { qos: 1 });
    }
    await all;
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(pub.connected).toBe(true);
    expect((await rejections()).get('byte_rate')).toBeGreaterThanOrEqual(1); // 256 KiB against a 64 KiB burst
  });

  it('the byte rate does not touch a loopback client by default, nor traffic within the burst', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', limits: { byteRate: { bytesPerSecond: 1024, burstBytes: 1024 } } });
    const sub = await client(broker.url);
    await sub.subscribeAsync('bulk', { qos: 1 });
    const arrived = new Promise<number>((resolve) => sub.on('message', (_t, p) => resolve(p.length)));
    await (await client(broker.url)).publishAsync('bulk', Buffer.alloc(256 * 1024), { qos: 1 });
    expect(await arrived).toBe(256 * 1024);
    expect((await rejections()).get('byte_rate')).toBe(0);
  });
});
