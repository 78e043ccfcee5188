/**
 * Malformed MQTT 3.1.1 frames for fuzzing a broker port over raw TCP (node:net).
 *
 * The frames are built by a small hand-written encoder rather than `mqtt-packet`'s generator: the
 * encoder has to write what a correct generator refuses to (lying length prefixes, reserved
 * packet types and flags, invalid UTF-8, wildcards in PUBLISH topics), and it keeps the test free
 * of an undeclared dependency. References are to the MQTT 3.1.1 OASIS standard, section 2 (fixed
 * header, remaining length) and section 3 (control packets).
 *
 * Every topic a frame publishes or subscribes to lies outside `fedmq/`, except PUBLISHes and
 * wills the broker must refuse (an empty topic level), so raw frames never reach the
 * coordinator's subscriptions (the payload fuzzers cover those topics with counted payloads).
 */
import { connect, type Socket } from 'node:net';
import { LEGACY_TOPIC_ROOT, TOPIC_ROOT } from '@fedmq/protocol';
import { mutateBytes, type Rand } from './rand.ts';

// ---------------------------------------------------------------- encoder

/** Remaining length as MQTT's variable byte integer (1–4 bytes, 7 bits each, §2.2.3). */
export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A length-prefixed UTF-8 string (§1.5.3); a Buffer is written as is (for invalid UTF-8). */
export function mqttString(s: string | Buffer, lengthOverride?: number): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(lengthOverride ?? bytes.length);
  return Buffer.concat([len, bytes]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

/** The body of a well-formed frame (what follows its fixed header). */
export function bodyOf(f: Buffer): Buffer {
  let i = 1;
  while (f[i] & 0x80) i++;
  return f.subarray(i + 1);
}

/** A frame: first byte (type << 4 | flags), remaining length (or raw bytes in its place), body. */
export function frame(first: number, body: Buffer, remainingLength?: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first & 0xff]), remainingLength ?? varint(body.length), body]);
}

export interface ConnectFields {
  protocolName?: string | Buffer;
  level?: number;
  /** Connect flags byte (§3.1.2.3); default computed from the fields below (clean session). */
  flags?: number;
  keepalive?: number;
  clientId: string | Buffer;
  will?: { topic: string | Buffer; payload: Buffer };
  username?: string | Buffer;
  password?: Buffer;
}

/** CONNECT (§3.1). */
export function connectFrame(f: ConnectFields): Buffer {
  let flags = 0x02;
  if (f.will) flags |= 0x04;
  if (f.username !== undefined) flags |= 0x80;
  if (f.password !== undefined) flags |= 0x40;
  const parts = [mqttString(f.protocolName ?? 'MQTT'), Buffer.from([f.level ?? 4, f.flags ?? flags]), u16(f.keepalive ?? 30), mqttString(f.clientId)];
  if (f.will) parts.push(mqttString(f.will.topic), mqttString(f.will.payload));
  if (f.username !== undefined) parts.push(mqttString(f.username));
  if (f.password !== undefined) parts.push(mqttString(f.password));
  return frame(0x10, Buffer.concat(parts));
}

/** PUBLISH (§3.3); `qos` 3 and `dup` on QoS 0 are malformed on purpose when asked for. */
export function publishFrame(p: { topic: string | Buffer; payload: Buffer; qos?: number; retain?: boolean; dup?: boolean; packetId?: number; topicLength?: number }): Buffer {
  const qos = p.qos ?? 0;
  const first = 0x30 | (p.dup ? 0x08 : 0) | ((qos & 3) << 1) | (p.retain ? 1 : 0);
  const parts = [mqttString(p.topic, p.topicLength)];
  if (qos > 0) parts.push(u16(p.packetId ?? 1));
  parts.push(p.payload);
  return frame(first, Buffer.concat(parts));
}

/** SUBSCRIBE (§3.8): fixed header flags must be 0010. */
export function subscribeFrame(packetId: number, subs: { filter: string | Buffer; options: number }[], first = 0x82): Buffer {
  return frame(first, Buffer.concat([u16(packetId), ...subs.flatMap((s) => [mqttString(s.filter), Buffer.from([s.options])])]));
}

/** UNSUBSCRIBE (§3.10): fixed header flags must be 0010. */
export function unsubscribeFrame(packetId: number, filters: (string | Buffer)[], first = 0xa2): Buffer {
  return frame(first, Buffer.concat([u16(packetId), ...filters.map((f) => mqttString(f))]));
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

// ---------------------------------------------------------------- malformed cases

/** One connection's worth of fuzz: an optional valid preamble, then the malformed frames. */
export interface FrameCase {
  kind: string;
  /** Valid bytes written first (a CONNECT), not counted as fuzz. */
  preamble: Buffer[];
  /** Malformed frames, counted. */
  frames: Buffer[];
  /** Write the frames one byte at a time (parser state across TCP segments). */
  dribble: boolean;
}

const INVALID_UTF8 = [
  Buffer.from([0xc3, 0x28]), Buffer.from([0xff]), Buffer.from([0xed, 0xa0, 0x80]) /* surrogate */, Buffer.from([0xe2, 0x82]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]) /* > U+10FFFF */, Buffer.from([0xc0, 0xaf]) /* overlong */, Buffer.from('a\u0000b') /* U+0000, §1.5.3 */,
];

/** Client ids of raw fuzz connections: never an id a fedmq node or coordinator uses (those contain ':'). */
function rawClientId(r: Rand): string {
  return `fzraw-${r.str(8)}`;
}

function validConnect(r: Rand): Buffer {
  return connectFrame({ clientId: rawClientId(r), keepalive: 30 });
}

function rawTopic(r: Rand): string {
  return `fuzzraw/${r.str(r.range(1, 12))}${r.chance(0.3) ? `/${r.str(4)}` : ''}`;
}

function badTopic(r: Rand): string | Buffer {
  const prefix = Buffer.from('fuzzraw/');
  return r.pick<string | Buffer>([
    '', '#', '+', 'fuzzraw/+/x', 'fuzzraw/#', 'fuzzraw/a#', 'fuzzraw/+a', '/'.repeat(r.range(1, 300)), `fuzzraw/${'a/'.repeat(r.range(100, 2000))}`,
    Buffer.concat([prefix, r.pick(INVALID_UTF8)]), `$SYS/fuzz/${r.str(4)}`, 'fuzzraw/\u{10FFFF}', `fuzzraw/${r.unicode(r.range(1, 20))}`,
  ]);
}

function badFilter(r: Rand): string | Buffer {
  return r.pick<string | Buffer>([
    '', 'fuzzraw/#/x', 'fuzzraw/a#', 'fuzzraw/+a', 'fuzzraw/a+', '#/fuzzraw', 'fuzzraw/##', `fuzzraw/${'+/'.repeat(r.range(100, 2000))}x`,
    Buffer.concat([Buffer.from('fuzzraw/'), r.pick(INVALID_UTF8)]), `fuzzraw/${r.unicode(r.range(1, 20))}`,
  ]);
}

function validPublish(r: Rand): Buffer {
  const qos = r.int(3);
  return publishFrame({ topic: rawTopic(r), payload: r.bytes(r.size(256)), qos, packetId: r.range(1, 65535) });
}

function validSubscribe(r: Rand): Buffer {
  return subscribeFrame(r.range(1, 65535), [{ filter: `fuzzraw/${r.str(6)}/+`, options: r.int(3) }]);
}

/** What frame generators may aim at besides `fuzzraw/…`. */
export interface FrameTarget {
  /** The job under test: its topics are hit only through PUBLISHes the broker must refuse (an empty level). */
  job: string;
}

type Gen = (r: Rand, t: FrameTarget) => Omit<FrameCase, 'dribble' | 'kind'>;

const withConnect = (frames: Buffer[], r: Rand) => ({ preamble: [validConnect(r)], frames });
const noConnect = (frames: Buffer[]) => ({ preamble: [] as Buffer[], frames });

/** Malformed-frame generators by kind (MQTT 3.1.1 section in the comment). */
export const FRAME_GENERATORS: Record<string, Gen> = {
  /** Random bytes as the first thing on a connection. */
  'random-bytes': (r) => noConnect([r.bytes(r.range(1, 256))]),
  /** Random bytes after a valid CONNECT. */
  'random-after-connect': (r) => withConnect([r.bytes(r.range(1, 256))], r),
  /** Reserved packet types 0 and 15 (§2.2.1). */
  'reserved-type': (r) => {
    const f = frame(r.pick([0x00, 0xf0]) | r.int(16), r.bytes(r.int(16)));
    return r.chance(0.5) ? withConnect([f], r) : noConnect([f]);
  },
  /** Fixed-header flags other than the mandated ones (§2.2.2), PUBLISH QoS 3 (§3.3.1.2). */
  'bad-flags': (r) => {
    const f = r.pick([
      () => subscribeFrame(1, [{ filter: 'fuzzraw/x', options: 0 }], 0x80 | r.pick([0, 1, 4, 8, 15])),
      () => unsubscribeFrame(1, ['fuzzraw/x'], 0xa0 | r.pick([0, 1, 4, 8])),
      () => frame(0x60 | r.pick([0, 1, 4, 8]), u16(1)), // PUBREL must be 0110 0010
      () => frame(0xc0 | r.range(1, 15), Buffer.alloc(0)), // PINGREQ with flags
      () => frame(0xe0 | r.range(1, 15), Buffer.alloc(0)), // DISCONNECT with flags
      () => publishFrame({ topic: rawTopic(r), payload: r.bytes(8), qos: 3, packetId: 1 }),
      () => publishFrame({ topic: rawTopic(r), payload: r.bytes(8), qos: 0, dup: true }),
    ])();
    return withConnect([f], r);
  },
  /** Remaining length with 5+ continuation bytes: more than the 4 bytes allowed (§2.2.3). */
  'remaining-length-overflow': (r) => {
    const n = r.range(4, 8);
    const rl = Buffer.concat([Buffer.alloc(n, 0xff), Buffer.from([r.int(128)])]);
    const f = frame(r.pick([0x10, 0x30, 0x82, 0xc0]), r.bytes(r.int(32)), rl);
    return r.chance(0.5) ? withConnect([f], r) : noConnect([f]);
  },
  /** A declared remaining length of up to 256 MB, then only a few bytes and the end of the stream. */
  'huge-declared-length': (r) => {
    const declared = r.pick([268_435_455, 16_777_216, 2_097_152 + r.int(1000)]);
    const f = frame(r.pick([0x10, 0x30, 0x32, 0x82]), r.bytes(r.int(64)), varint(declared));
    return r.chance(0.5) ? withConnect([f], r) : noConnect([f]);
  },
  /** A declared remaining length shorter than the body: the rest is parsed as a next packet. */
  'length-mismatch': (r) => {
    const whole = r.pick([validPublish, validSubscribe])(r);
    const body = bodyOf(whole);
    return withConnect([frame(whole[0], body, varint(r.int(Math.max(1, body.length))))], r);
  },
  /** CONNECT with a wrong protocol name, level, reserved flag, flag combinations or strings (§3.1.2). */
  'bad-connect': (r) => {
    const clientId = rawClientId(r);
    const f = r.pick([
      () => connectFrame({ clientId, protocolName: r.pick(['MQTX', '', 'mqtt', 'MQTT\u0000', 'MQIsdp', r.unicode(4)]), level: r.pick([3, 4]) }),
      () => connectFrame({ clientId, level: r.pick([0, 1, 2, 5, 6, 7, 128, 255]) }),
      () => connectFrame({ clientId, flags: 0x02 | 0x01 }), // reserved bit set (§3.1.2.3)
      () => connectFrame({ clientId, flags: 0x02 | 0x18 }), // will QoS 3 (§3.1.2.6)
      () => connectFrame({ clientId, flags: 0x02 | 0x28 }), // will QoS / retain without the will flag
      () => connectFrame({ clientId, flags: 0x42 }), // password flag without user name (§3.1.2.9)
      () => connectFrame({ clientId, flags: 0xc2 }), // user name and password flags, no strings
      () => connectFrame({ clientId, flags: 0x06 }), // will flag, no will topic/payload
      () => connectFrame({ clientId: '', flags: 0x00 }), // empty client id without clean session (§3.1.3.1)
      () => connectFrame({ clientId: r.pick(INVALID_UTF8) }),
      () => connectFrame({ clientId: `fzraw-${'x'.repeat(r.range(1000, 60_000))}` }),
      () => connectFrame({ clientId, will: { topic: r.pick(['fuzzraw/#', 'fuzzraw/+', '', r.pick(INVALID_UTF8)]), payload: r.bytes(8) } }),
      () => connectFrame({ clientId, username: r.pick(INVALID_UTF8), password: r.bytes(8) }),
      () => frame(0x10, Buffer.concat([mqttString('MQTT', 200), Buffer.from([4, 2, 0, 30])])), // string longer than the packet
      () => frame(0x10, Buffer.alloc(0)),
    ])();
    return noConnect([f]);
  },
  /** Any packet but CONNECT first on a connection (§3.1: CONNECT must be the first packet). */
  'before-connect': (r) => {
    const f = r.pick([
      () => validPublish(r), () => validSubscribe(r), () => PINGREQ, () => DISCONNECT, () => frame(0x40, u16(r.range(1, 65535))),
      () => unsubscribeFrame(1, ['fuzzraw/x']), () => frame(0x62, u16(1)),
    ])();
    return noConnect([f]);
  },
  /** A second CONNECT on a connected client (§3.1: a protocol violation). */
  'second-connect': (r) => withConnect([validConnect(r)], r),
  /** Server-to-client packets sent by a client: CONNACK, SUBACK, UNSUBACK, PINGRESP. */
  'server-packets': (r) => withConnect([r.pick([frame(0x20, Buffer.from([0, 0])), frame(0x90, Buffer.concat([u16(1), Buffer.from([0])])), frame(0xb0, u16(1)), frame(0xd0, Buffer.alloc(0))])], r),
  /** A valid packet cut short, then the end of the stream. */
  truncated: (r) => {
    const whole = r.pick([validConnect, validPublish, validSubscribe])(r);
    const f = whole.subarray(0, r.range(1, Math.max(1, whole.length - 1)));
    return whole[0] === 0x10 ? noConnect([f]) : withConnect([f], r);
  },
  /** PUBLISH to topics that are invalid for PUBLISH: wildcards, empty, invalid UTF-8, U+0000, too deep, a lying length prefix (§3.3.2.1, §4.7). */
  'publish-bad-topic': (r) => {
    const f = r.chance(0.2)
      ? publishFrame({ topic: rawTopic(r), payload: r.bytes(4), topicLength: r.pick([0xffff, 0x8000, 200]) })
      : publishFrame({ topic: badTopic(r), payload: r.bytes(r.size(64)), qos: r.int(3), packetId: r.chance(0.2) ? 0 : r.range(1, 65535) });
    return withConnect([f], r);
  },
  /**
   * QoS 1/2 PUBLISH to the job's topics (v2, and v1's node status) with an empty level
   * (`nodes//update`, `nodes//evaluation`, a leading or trailing `/` …): the broker must refuse them
   * (it used to drop the coordinator's persistent session, see broker/src/empty-level.test.ts).
   * Also a Last Will on such a topic, left by a dropped connection.
   */
  'empty-level': (r, t) => {
    const topic = r.pick([
      `${TOPIC_ROOT}/${t.job}/nodes//update`, `${TOPIC_ROOT}/${t.job}/nodes//evaluation`, `${TOPIC_ROOT}/${t.job}/nodes//status`, `${TOPIC_ROOT}/${t.job}/nodes//task`,
      `${LEGACY_TOPIC_ROOT}/${t.job}/nodes//status`, `/${TOPIC_ROOT}/${t.job}/nodes/x/update`, `${TOPIC_ROOT}/${t.job}/nodes/x/update/`,
      `${TOPIC_ROOT}/${t.job}/models//chunks/0`, `${TOPIC_ROOT}/${t.job}//coordinator/status`,
    ]);
    if (r.chance(0.3)) return noConnect([connectFrame({ clientId: rawClientId(r), will: { topic, payload: r.bytes(16) } }), r.bytes(3)]);
    return withConnect([publishFrame({ topic, payload: r.bytes(r.size(64)), qos: r.range(1, 2), packetId: r.range(1, 65535) })], r);
  },
  /** SUBSCRIBE with invalid filters, reserved option bits, QoS 3, no filters, packet id 0 (§3.8.3, §4.7.1). */
  'subscribe-bad': (r) => {
    const f = r.pick([
      () => subscribeFrame(r.range(1, 65535), [{ filter: badFilter(r), options: r.int(3) }]),
      () => subscribeFrame(r.range(1, 65535), [{ filter: `fuzzraw/${r.str(4)}`, options: r.pick([3, 4, 0x80, 0xff]) }]),
      () => subscribeFrame(r.range(1, 65535), []),
      () => subscribeFrame(0, [{ filter: `fuzzraw/${r.str(4)}`, options: 0 }]),
      () => frame(0x82, Buffer.concat([u16(1), mqttString('fuzzraw/x')])), // filter without its options byte
    ])();
    return withConnect([f], r);
  },
  /** UNSUBSCRIBE with no filters or invalid ones (§3.10.3). */
  'unsubscribe-bad': (r) => withConnect([r.chance(0.5) ? unsubscribeFrame(r.range(1, 65535), []) : unsubscribeFrame(r.range(1, 65535), [badFilter(r)])], r),
  /** Acknowledgements for packet ids never sent, and with wrong lengths. */
  'bogus-acks': (r) => withConnect([frame(r.pick([0x40, 0x50, 0x62, 0x70]), r.chance(0.7) ? u16(r.range(0, 65535)) : r.bytes(r.pick([0, 1, 3, 7])))], r),
  /** PINGREQ / DISCONNECT with a body (their remaining length must be 0). */
  'nonempty-ping': (r) => withConnect([frame(r.pick([0xc0, 0xe0]), r.bytes(r.range(1, 8)))], r),
  /** Bytes after DISCONNECT. */
  'after-disconnect': (r) => withConnect([Buffer.concat([DISCONNECT, validPublish(r)])], r),
  /** A valid session (CONNECT, SUBSCRIBE, PUBLISH, PINGREQ) with 1–6 byte-level mutations. */
  mutated: (r) => {
    const session = Buffer.concat([validConnect(r), validSubscribe(r), validPublish(r), PINGREQ]);
    return noConnect([mutateBytes(r, session, 6).bytes]);
  },
  /** Several malformed frames back to back in one write. */
  burst: (r, t) => {
    const kinds = Object.keys(FRAME_GENERATORS).filter((k) => k !== 'burst' && k !== 'bad-connect' && k !== 'before-connect' && k !== 'truncated');
    return withConnect(Array.from({ length: r.range(2, 6) }, () => FRAME_GENERATORS[r.pick(kinds)](r, t).frames).flat(), r);
  },
};

export const FRAME_KINDS = Object.keys(FRAME_GENERATORS);

/** The `i`-th case of a run: every kind once first (coverage at any budget), then kinds at random. */
export function frameCase(r: Rand, i: number, t: FrameTarget): FrameCase {
  const kind = i < FRAME_KINDS.length ? FRAME_KINDS[i] : r.pick(FRAME_KINDS);
  const c = FRAME_GENERATORS[kind](r, t);
  const size = c.frames.reduce((n, f) => n + f.length, 0);
  return { kind, ...c, dribble: size < 64 && r.chance(0.1) };
}

// ---------------------------------------------------------------- runner

export interface FrameFuzzStats {
  /** Malformed frames written. */
  frames: number;
  connections: number;
  /** Connections that refused to connect or errored (ECONNRESET …). */
  socketErrors: number;
  /** Connections still open 10 s after we ended them (destroyed then). */
  stuck: number;
  /** CONNACK return codes the broker sent, by code. */
  connack: Record<string, number>;
  byKind: Record<string, number>;
}

/**
 * Writes malformed frames at `host:port` until `budget` frames were written, `concurrency`
 * connections at a time. Each connection gets one {@link FrameCase}: its preamble and frames are
 * written, then the stream is ended and the connection awaited until closed (the broker closes
 * a connection at its end, so the close is the sync point; 10 s is only a safety bound).
 * `onProgress` is called with the running frame count.
 */
export async function fuzzFrames(opts: {
  host: string; port: number; rand: Rand; target: FrameTarget; budget: number; concurrency: number;
  /** Awaited before each case with the frames written so far (pacing). */
  gate?: (frames: number) => Promise<void>;
  onProgress?: (frames: number) => void;
}): Promise<FrameFuzzStats> {
  const stats: FrameFuzzStats = { frames: 0, connections: 0, socketErrors: 0, stuck: 0, connack: {}, byKind: {} };
  let next = 0;
  const one = async (c: FrameCase): Promise<void> => {
    stats.connections++;
    const socket: Socket = connect({ host: opts.host, port: opts.port });
    let seen = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      // first packet from the broker: a CONNACK (0x20, 0x02, flags, return code)?
      if (seen.length < 4) {
        seen = Buffer.concat([seen, d]).subarray(0, 4);
        if (seen.length === 4 && seen[0] === 0x20 && seen[1] === 0x02) stats.connack[seen[3]] = (stats.connack[seen[3]] ?? 0) + 1;
      }
    });
    const closed = new Promise<void>((resolve) => {
      socket.on('error', () => {
        stats.socketErrors++;
      });
      socket.on('close', () => resolve());
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
    } catch {
      await closed;
      return;
    }
    const write = (b: Buffer) => new Promise<void>((resolve) => (socket.writable ? socket.write(b, () => resolve()) : resolve()));
    for (const p of c.preamble) await write(p);
    for (const f of c.frames) {
      if (c.dribble) for (let i = 0; i < f.length; i++) await write(f.subarray(i, i + 1));
      else await write(f);
    }
    socket.end();
    const safety = setTimeout(() => {
      stats.stuck++;
      socket.destroy();
    }, 10_000);
    await closed;
    clearTimeout(safety);
  };
  const worker = async () => {
    while (stats.frames < opts.budget) {
      await opts.gate?.(stats.frames);
      if (stats.frames >= opts.budget) break;
      const c = frameCase(opts.rand, next++, opts.target);
      stats.frames += c.frames.length;
      stats.byKind[c.kind] = (stats.byKind[c.kind] ?? 0) + c.frames.length;
      opts.onProgress?.(stats.frames);
      await one(c);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return stats;
}
