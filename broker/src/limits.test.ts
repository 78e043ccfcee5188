import { once } from 'node:events';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';
import { ConnectionRateLimiter, MAX_REMAINING_LENGTH, PacketSizeGuard, clientIdProblem, guardStream, isLoopback } from './limits.ts';

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
