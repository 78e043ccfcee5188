import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CHUNK_OVERHEAD_BYTES,
  ChunkErrorCodes,
  DEFAULT_MAX_PAYLOAD_BYTES,
  Reassembler,
  chunkSpan,
  decodeChunk,
  newTransferId,
  splitPayload,
  type ReassemblerOptions,
} from './chunking.ts';
import { packMessage, unpackMessage } from './codec.ts';
import { ErrorCodes, type FedmqError } from './errors.ts';
import { seededRng } from './codecs/rng.ts';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
const rng = seededRng;

function randomPayload(n: number, seed: number): Buffer {
  const r = rng(seed);
  const buf = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) buf[i] = Math.floor(r() * 256);
  return buf;
}

function shuffle<T>(xs: T[], r: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

type ErrorEvent = { code: string; transfer: string; sender: string };

function make(opts: Partial<ReassemblerOptions> = {}): { r: Reassembler; errors: ErrorEvent[] } {
  const errors: ErrorEvent[] = [];
  const r = new Reassembler({
    maxTotalBytes: 64 * 1024 * 1024,
    maxPendingBytes: 256 * 1024 * 1024,
    timeoutMs: 10_000,
    onError: (err, info) => errors.push({ code: err.code, ...info }),
    ...opts,
  });
  return { r, errors };
}

/** Feeds chunks in order and returns every delivered payload. */
function feed(r: Reassembler, sender: string, chunks: Uint8Array[]): Buffer[] {
  const out: Buffer[] = [];
  for (const c of chunks) {
    const whole = r.push(sender, c);
    if (whole !== undefined) out.push(whole);
  }
  return out;
}

function expectCode(fn: () => unknown, code: string): FedmqError {
  try {
    fn();
  } catch (err) {
    expect((err as FedmqError).name).toBe('FedmqError');
    expect((err as FedmqError).code).toBe(code);
    return err as FedmqError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** Re-packs a chunk payload with some fields changed (or removed, with `undefined`). */
function tamper(chunk: Uint8Array, changes: Record<string, unknown>): Buffer {
  const m = { ...(unpackMessage(chunk) as Record<string, unknown>), ...changes };
  return packMessage(m);
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('chunkSpan (the split rule)', () => {
  it('gives ceil(total/count) to every chunk but the last and the rest to the last', () => {
    expect(chunkSpan(10, 3, 0)).toEqual({ offset: 0, length: 4 });
    expect(chunkSpan(10, 3, 1)).toEqual({ offset: 4, length: 4 });
    expect(chunkSpan(10, 3, 2)).toEqual({ offset: 8, length: 2 });
    expect(chunkSpan(0, 1, 0)).toEqual({ offset: 0, length: 0 });
    expect(chunkSpan(5, 5, 4)).toEqual({ offset: 4, length: 1 });
  });

  it('rejects combinations that leave a chunk empty or out of range', () => {
    expect(chunkSpan(0, 2, 0)).toBeUndefined(); // empty payload is one chunk
    expect(chunkSpan(9, 4, 0)).toBeUndefined(); // size 3: 3 chunks already cover 9 bytes
    expect(chunkSpan(3, 4, 0)).toBeUndefined(); // more chunks than bytes
    expect(chunkSpan(10, 3, 3)).toBeUndefined();
    expect(chunkSpan(10, 0, 0)).toBeUndefined();
    expect(chunkSpan(10, 3, -1)).toBeUndefined();
    expect(chunkSpan(10.5, 3, 0)).toBeUndefined();
  });

  it('covers every byte exactly once for all small (total, count)', () => {
    for (let total = 0; total <= 60; total++) {
      for (let count = 1; count <= 62; count++) {
        const spans = Array.from({ length: count }, (_, i) => chunkSpan(total, count, i));
        if (spans.some((s) => s === undefined)) {
          expect(spans.every((s) => s === undefined)).toBe(true);
          continue;
        }
        let next = 0;
        for (const s of spans) {
          expect(s!.offset).toBe(next);
          expect(s!.length).toBeGreaterThan(total === 0 ? -1 : 0);
          next += s!.length;
        }
        expect(next).toBe(total);
      }
    }
  });
});

describe('splitPayload', () => {
  const room = DEFAULT_MAX_PAYLOAD_BYTES - CHUNK_OVERHEAD_BYTES;
  const max = DEFAULT_MAX_PAYLOAD_BYTES;
  const sizes: [string, number, number][] = [
    ['0 bytes', 0, 1],
    ['1 byte', 1, 1],
    ['exactly the room of one chunk', room, 1],
    ['one byte more than one chunk holds', room + 1, 2],
    ['exactly maxPayloadBytes', max, 2],
    ['maxPayloadBytes + 1', max + 1, 2],
    ['5 MB', 5_000_000, Math.ceil(5_000_000 / room)],
  ];

  for (const [name, size, count] of sizes) {
    it(`round-trips ${name} in ${count} chunk(s), each ≤ maxPayloadBytes`, () => {
      const payload = randomPayload(size, size + 1);
      const chunks = splitPayload(payload);
      expect(chunks).toHaveLength(count);
      const hash = createHash('sha256').update(payload).digest('hex');
      chunks.forEach((c, i) => {
        expect(c.length).toBeLessThanOrEqual(max);
        const d = decodeChunk(c);
        expect(d).toMatchObject({ v: 2, index: i, count, total: size, sha256: hash });
        expect(d.transfer).toBe(decodeChunk(chunks[0]).transfer);
      });
      const { r, errors } = make();
      const out = feed(r, 'fedmq/v1/job/nodes/a/update', chunks);
      expect(out).toHaveLength(1);
      expect(out[0].equals(payload)).toBe(true);
      expect(r.pendingBytes).toBe(0);
      expect(r.pending).toBe(0);
      expect(errors).toEqual([]);
    });
  }

  it('respects small chunk limits at every size around the boundaries', () => {
    for (const maxPayloadBytes of [CHUNK_OVERHEAD_BYTES + 1, CHUNK_OVERHEAD_BYTES + 7, 1024]) {
      for (let size = 0; size < 3000; size += size < 40 ? 1 : 97) {
        const payload = randomPayload(size, size);
        const chunks = splitPayload(payload, maxPayloadBytes);
        for (const c of chunks) expect(c.length).toBeLessThanOrEqual(maxPayloadBytes);
        const { r } = make();
        const out = feed(r, 's', chunks);
        expect(out).toHaveLength(1);
        expect(out[0].equals(payload)).toBe(true);
      }
    }
  });

  it('uses the given transfer id, or a fresh random one per call', () => {
    const id = 'ab'.repeat(16);
    expect(decodeChunk(splitPayload(new Uint8Array(3), undefined, id)[0]).transfer).toBe(id);
    const ids = new Set(Array.from({ length: 50 }, () => decodeChunk(splitPayload(new Uint8Array(1))[0]).transfer));
    expect(ids.size).toBe(50);
    expect(newTransferId()).toMatch(/^[0-9a-f]{32}$/);
  });

  it('refuses a bad maxPayloadBytes or transfer id with FEDMQ_BAD_CONFIG', () => {
    expectCode(() => splitPayload(new Uint8Array(1), CHUNK_OVERHEAD_BYTES), ErrorCodes.BAD_CONFIG);
    expectCode(() => splitPayload(new Uint8Array(1), 1000.5), ErrorCodes.BAD_CONFIG);
    expectCode(() => splitPayload(new Uint8Array(1), 1000, 'AB'.repeat(16)), ErrorCodes.BAD_CONFIG);
    expectCode(() => splitPayload(new Uint8Array(1), 1000, 'abc'), ErrorCodes.BAD_CONFIG);
  });
});

describe('Reassembler', () => {
  const MAX = 1024;
  const payload = randomPayload(10_000, 7);
  const chunks = (p: Uint8Array = payload, id?: string) => splitPayload(p, MAX, id);

  it('loss: no delivery, then FEDMQ_CHUNK_TIMEOUT once and memory released', () => {
    const { r, errors } = make({ timeoutMs: 5000 });
    const cs = chunks();
    expect(cs.length).toBeGreaterThan(5);
    const kept = cs.filter((_, i) => i !== 2 && i !== 5);
    expect(feed(r, 's', kept)).toEqual([]);
    expect(r.pending).toBe(1);
    expect(r.pendingBytes).toBe(payload.length);
    vi.advanceTimersByTime(4999);
    expect(errors).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(errors).toEqual([{ code: ChunkErrorCodes.CHUNK_TIMEOUT, transfer: decodeChunk(cs[0]).transfer, sender: 's' }]);
    expect(r.pendingBytes).toBe(0);
    expect(r.pending).toBe(0);
    // The missing chunks arriving late neither deliver nor start a new transfer.
    expect(feed(r, 's', [cs[2], cs[5]])).toEqual([]);
    expect(r.pending).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(errors).toHaveLength(1);
  });

  it('measures the timeout from the last new chunk', () => {
    const { r, errors } = make({ timeoutMs: 1000 });
    const cs = chunks();
    r.push('s', cs[0]);
    vi.advanceTimersByTime(900);
    r.push('s', cs[1]);
    vi.advanceTimersByTime(900);
    r.push('s', cs[1]); // a duplicate does not keep the transfer alive
    vi.advanceTimersByTime(99);
    expect(errors).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(errors.map((e) => e.code)).toEqual([ChunkErrorCodes.CHUNK_TIMEOUT]);
  });

  it('duplication: every chunk twice, then a late duplicate → delivered exactly once', () => {
    const { r, errors } = make();
    const cs = chunks();
    const out = feed(r, 's', cs.flatMap((c) => [c, c]));
    expect(out).toHaveLength(1);
    expect(out[0].equals(payload)).toBe(true);
    expect(feed(r, 's', [cs[3], cs[0], ...cs])).toEqual([]);
    expect(r.pending).toBe(0);
    vi.advanceTimersByTime(60_000);
    expect(errors).toEqual([]);
  });

  it('duplication of a single-chunk transfer → delivered once', () => {
    const { r } = make();
    const [c] = splitPayload(Buffer.from('hello'));
    expect(feed(r, 's', [c, c, c]).map(String)).toEqual(['hello']);
  });

  it('reordering: a seeded random permutation → delivered once, identical bytes', () => {
    const rand = rng(42);
    for (let k = 0; k < 20; k++) {
      const { r, errors } = make();
      const out = feed(r, 's', shuffle(chunks(), rand));
      expect(out).toHaveLength(1);
      expect(out[0].equals(payload)).toBe(true);
      expect(errors).toEqual([]);
    }
  });

  it('interleaves transfers from two senders (even with the same transfer id)', () => {
    const { r, errors } = make();
    const a = randomPayload(7000, 1);
    const b = randomPayload(9000, 2);
    const id = newTransferId();
    const ca = chunks(a, id).map((c) => ['nodes/a', c] as const);
    const cb = chunks(b, id).map((c) => ['nodes/b', c] as const);
    const mixed = shuffle([...ca, ...cb], rng(3));
    const out: [string, Buffer][] = [];
    for (const [sender, c] of mixed) {
      const whole = r.push(sender, c);
      if (whole) out.push([sender, whole]);
    }
    expect(out).toHaveLength(2);
    expect(out.find(([s]) => s === 'nodes/a')![1].equals(a)).toBe(true);
    expect(out.find(([s]) => s === 'nodes/b')![1].equals(b)).toBe(true);
    expect(errors).toEqual([]);
  });

  it('refuses a transfer over maxTotalBytes at its first chunk, holding no memory', () => {
    const { r, errors } = make({ maxTotalBytes: payload.length - 1 });
    const cs = chunks();
    const err = expectCode(() => r.push('s', cs[4]), ChunkErrorCodes.CHUNK_TOO_LARGE);
    expect(err.details).toMatchObject({ sender: 's', total: payload.length, maxTotalBytes: payload.length - 1 });
    expect(r.pendingBytes).toBe(0);
    expect(r.pending).toBe(0);
    // Its other chunks are ignored quietly (the refusal is reported once).
    expect(feed(r, 's', cs)).toEqual([]);
    expect(r.pending).toBe(0);
    // A single-chunk transfer is held to the same limit.
    const small = make({ maxTotalBytes: 4 });
    expectCode(() => small.r.push('s', splitPayload(Buffer.from('hello'))[0]), ChunkErrorCodes.CHUNK_TOO_LARGE);
    expect(errors).toEqual([]);
  });

  it('refuses new transfers beyond the pending budget with FEDMQ_CHUNK_LIMIT', () => {
    const { r } = make({ maxPendingBytes: 15_000 });
    const a = chunks(randomPayload(10_000, 1));
    const b = chunks(randomPayload(10_000, 2));
    r.push('a', a[0]);
    expect(r.pendingBytes).toBe(10_000);
    expectCode(() => r.push('b', b[0]), ChunkErrorCodes.CHUNK_LIMIT);
    expect(r.pendingBytes).toBe(10_000);
    expect(feed(r, 'b', b)).toEqual([]); // refused transfer stays refused
    expect(feed(r, 'a', a.slice(1))).toHaveLength(1);
    expect(r.pendingBytes).toBe(0);
    // Budget freed: a new transfer fits.
    expect(feed(r, 'b', chunks(randomPayload(10_000, 3)))).toHaveLength(1);
  });

  it('refuses new transfers beyond maxPendingTransfers with FEDMQ_CHUNK_LIMIT', () => {
    const { r } = make({ maxPendingTransfers: 2 });
    r.push('a', chunks()[0]);
    r.push('b', chunks()[0]);
    expectCode(() => r.push('c', chunks()[0]), ChunkErrorCodes.CHUNK_LIMIT);
    expect(r.pending).toBe(2);
  });

  it('a corrupted chunk (bit flip in data) → FEDMQ_CHUNK_HASH once, nothing delivered', () => {
    const { r, errors } = make();
    const cs = chunks();
    const d = decodeChunk(cs[3]);
    const flipped = Buffer.from(d.data);
    flipped[17] ^= 0x10;
    cs[3] = tamper(cs[3], { data: flipped });
    expect(feed(r, 's', cs)).toEqual([]);
    expect(errors).toEqual([{ code: ChunkErrorCodes.CHUNK_HASH, transfer: d.transfer, sender: 's' }]);
    expect(r.pendingBytes).toBe(0);
    expect(feed(r, 's', chunks(payload, d.transfer))).toEqual([]); // the failed id is not retried
    expect(errors).toHaveLength(1);
  });

  it('a corrupted single-chunk transfer → FEDMQ_CHUNK_HASH, nothing delivered', () => {
    const { r, errors } = make();
    const [c] = splitPayload(Buffer.from('hello world'));
    expect(r.push('s', tamper(c, { data: Buffer.from('hello worle') }))).toBeUndefined();
    expect(errors.map((e) => e.code)).toEqual([ChunkErrorCodes.CHUNK_HASH]);
  });

  it('chunks disagreeing on count/total/sha256 → transfer dropped with FEDMQ_CHUNK_INCONSISTENT', () => {
    const cases: Record<string, unknown>[] = [
      { sha256: 'f'.repeat(64) },
      { total: payload.length - 1 }, // still a valid split of its own, but not this transfer's
      { count: decodeChunk(chunks()[0]).count + 1, total: payload.length + 500 },
    ];
    for (const change of cases) {
      const { r, errors } = make();
      const cs = chunks();
      r.push('s', cs[0]);
      let odd: Buffer;
      try {
        odd = tamper(cs[1], change);
        decodeChunk(odd);
      } catch {
        // The changed chunk is no longer self-consistent: make its data fit its own metadata.
        const m = { ...(unpackMessage(cs[1]) as Record<string, unknown>), ...change };
        const span = chunkSpan(m.total as number, m.count as number, 1)!;
        odd = packMessage({ ...m, data: new Uint8Array(span.length) });
      }
      expect(r.push('s', odd)).toBeUndefined();
      expect(errors.map((e) => e.code)).toEqual([ChunkErrorCodes.CHUNK_INCONSISTENT]);
      expect(r.pending).toBe(0);
      expect(r.pendingBytes).toBe(0);
      expect(feed(r, 's', cs)).toEqual([]);
    }
  });

  it('malformed chunk payloads → FEDMQ_CHUNK_BAD thrown, state unchanged, no crash', () => {
    const { r, errors } = make();
    const cs = chunks();
    r.push('s', cs[0]);
    const good = unpackMessage(cs[1]) as Record<string, unknown>;
    const bad: [string, Uint8Array][] = [
      ['empty payload', new Uint8Array(0)],
      ['not msgpack', Buffer.from([0xc1, 0xc1, 0xc1])],
      ['truncated', cs[1].subarray(0, cs[1].length - 3)],
      ['trailing bytes', Buffer.concat([cs[1], Buffer.from([0])])],
      ['JSON text', Buffer.from(JSON.stringify({ v: 2 }))],
      ['an array', packMessage([1, 2, 3])],
      ['a number', Buffer.from([0x05])],
      ['index ≥ count', tamper(cs[1], { index: good.count })],
      ['negative index', tamper(cs[1], { index: -1 })],
      ['fractional index', tamper(cs[1], { index: 1.5 })],
      ['count 0', tamper(cs[1], { count: 0 })],
      ['total 0 with 2 chunks', tamper(cs[1], { total: 0, count: 2, index: 0, data: new Uint8Array(0) })],
      ['more chunks than bytes', tamper(cs[1], { total: 2, count: 3, index: 0, data: new Uint8Array(1) })],
      ['data too long', tamper(cs[1], { data: Buffer.concat([good.data as Buffer, Buffer.from([1])]) })],
      ['data too short', tamper(cs[1], { data: (good.data as Buffer).subarray(1) })],
      ['data as a string', tamper(cs[1], { data: 'abc' })],
      ['transfer not hex', tamper(cs[1], { transfer: 'x'.repeat(32) })],
      ['transfer upper-case', tamper(cs[1], { transfer: (good.transfer as string).toUpperCase() })],
      ['sha256 too short', tamper(cs[1], { sha256: 'ab' })],
      ['total as a string', tamper(cs[1], { total: '10000' })],
      ['v = "1"', tamper(cs[1], { v: '1' })],
    ];
    for (const field of ['v', 'transfer', 'index', 'count', 'total', 'sha256', 'data']) {
      bad.push([`missing ${field}`, tamper(cs[1], { [field]: undefined })]);
    }
    for (const [name, p] of bad) {
      const code = name === 'v = "1"' ? ErrorCodes.UNSUPPORTED_VERSION : ChunkErrorCodes.CHUNK_BAD;
      try {
        r.push('s', p);
        expect.fail(`${name}: accepted`);
      } catch (err) {
        expect((err as FedmqError).code, name).toBe(code);
      }
    }
    expectCode(() => r.push('s', tamper(cs[1], { v: 1 })), ErrorCodes.UNSUPPORTED_VERSION);
    expect(errors).toEqual([]);
    expect(r.pending).toBe(1);
    // The transfer is unharmed: the good chunks still complete it.
    expect(feed(r, 's', cs.slice(1))).toHaveLength(1);
  });

  it('close() drops pending transfers and their timers', () => {
    const { r, errors } = make({ timeoutMs: 1000 });
    r.push('a', chunks()[0]);
    r.push('b', chunks()[0]);
    expect(r.pending).toBe(2);
    r.close();
    expect(r.pending).toBe(0);
    expect(r.pendingBytes).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(errors).toEqual([]);
  });

  it('forgets the oldest finished ids beyond rememberFinished', () => {
    const { r } = make({ rememberFinished: 2 });
    const sets = [1, 2, 3].map((i) => splitPayload(Buffer.from(`payload ${i}`)));
    for (const cs of sets) expect(feed(r, 's', cs)).toHaveLength(1);
    expect(feed(r, 's', sets[2])).toEqual([]); // remembered
    expect(feed(r, 's', sets[0])).toHaveLength(1); // forgotten: the caller's own dedup (round, nodeId) must catch it
  });

  it('refuses bad options with FEDMQ_BAD_CONFIG', () => {
    expectCode(() => new Reassembler({ maxTotalBytes: -1, maxPendingBytes: 1, timeoutMs: 1 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => new Reassembler({ maxTotalBytes: 1, maxPendingBytes: 1.5, timeoutMs: 1 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => new Reassembler({ maxTotalBytes: 1, maxPendingBytes: 1, timeoutMs: 0 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => new Reassembler({ maxTotalBytes: 1, maxPendingBytes: 1, timeoutMs: 1, maxPendingTransfers: 0 }), ErrorCodes.BAD_CONFIG);
    expectCode(() => new Reassembler({ maxTotalBytes: 1, maxPendingBytes: 1, timeoutMs: 1, maxPendingPerSender: 0 }), ErrorCodes.BAD_CONFIG);
  });

  it('maxPendingPerSender: a sender at its bound gives up its oldest transfer (onError FEDMQ_CHUNK_LIMIT naming it); other senders are untouched', () => {
    const { r, errors } = make({ maxPendingPerSender: 1 });
    const [a1, a2, b1] = [1, 2, 3].map((i) => splitPayload(randomPayload(5000, i), 1200));
    expect(feed(r, 'a', a1.slice(0, 2))).toEqual([]);
    expect(feed(r, 'b', b1.slice(0, 2))).toEqual([]);
    expect(r.pending).toBe(2);
    expect(feed(r, 'a', a2.slice(0, 1))).toEqual([]); // supersedes a1
    expect(errors).toEqual([{ code: ChunkErrorCodes.CHUNK_LIMIT, transfer: (unpackMessage(a1[0]) as { transfer: string }).transfer, sender: 'a' }]);
    expect(r.pending).toBe(2);
    expect(r.pendingBytes).toBe(10_000);
    expect(feed(r, 'a', a1.slice(2))).toEqual([]); // the superseded transfer's late chunks are ignored
    expect(feed(r, 'a', a2.slice(1))).toEqual([randomPayload(5000, 2)]);
    expect(feed(r, 'b', b1.slice(2))).toEqual([randomPayload(5000, 3)]);
    expect(errors).toHaveLength(1);
    expect(r.pendingBytes).toBe(0);
  });

  it('maxPendingPerSender: 2 keeps two transfers of a sender and supersedes the oldest at the third', () => {
    const { r, errors } = make({ maxPendingPerSender: 2 });
    const sets = [1, 2, 3].map((i) => splitPayload(randomPayload(3000, i), 1200));
    for (const cs of sets.slice(0, 2)) feed(r, 'a', cs.slice(0, 1));
    expect(errors).toEqual([]);
    feed(r, 'a', sets[2].slice(0, 1));
    expect(errors.map((e) => e.transfer)).toEqual([(unpackMessage(sets[0][0]) as { transfer: string }).transfer]);
    expect(r.pending).toBe(2);
  });

  it('dropWhere frees the transfers of the senders it names, without onError, and ignores their late chunks', () => {
    const { r, errors } = make();
    const [a, b] = [1, 2].map((i) => splitPayload(randomPayload(4000, i), 1200));
    feed(r, 'a', a.slice(0, 1));
    feed(r, 'b', b.slice(0, 1));
    expect(r.dropWhere((s) => s === 'a')).toEqual([{ sender: 'a', transfer: (unpackMessage(a[0]) as { transfer: string }).transfer, total: 4000 }]);
    expect(r.pendingBytes).toBe(4000);
    expect(feed(r, 'a', a.slice(1))).toEqual([]);
    expect(feed(r, 'b', b.slice(1))).toEqual([randomPayload(4000, 2)]);
    expect(errors).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('uses injected timers', () => {
    const fns: (() => void)[] = [];
    const cleared: unknown[] = [];
    const timers = { setTimeout: (fn: () => void) => fns.push(fn), clearTimeout: (h: unknown) => cleared.push(h) };
    const { r, errors } = make({ timers });
    const cs = chunks();
    r.push('s', cs[0]);
    r.push('s', cs[1]);
    expect(fns).toHaveLength(2);
    expect(cleared).toEqual([1]);
    fns[0](); // stale timer of the same transfer: must not fire the timeout twice
    fns[1]();
    expect(errors.map((e) => e.code)).toEqual([ChunkErrorCodes.CHUNK_TIMEOUT]);
  });
});

describe('Reassembler property: 200 seeded scenarios of loss, duplication and reordering', () => {
  it('delivers exactly once, identical bytes, whenever every index arrives; otherwise times out once', () => {
    const rand = rng(20240601);
    let delivered = 0;
    let timedOut = 0;
    for (let scenario = 0; scenario < 200; scenario++) {
      const { r, errors } = make({ timeoutMs: 1000 });
      const maxPayloadBytes = CHUNK_OVERHEAD_BYTES + 1 + Math.floor(rand() * 2000);
      const senders = 1 + Math.floor(rand() * 3);
      const lossP = rand() < 0.5 ? 0 : rand() * 0.2;
      const dupP = rand() * 0.5;
      const originals: Buffer[] = [];
      const complete: boolean[] = [];
      const events: [number, Buffer][] = [];
      for (let s = 0; s < senders; s++) {
        const size = Math.floor(rand() * 20_000);
        const p = randomPayload(size, scenario * 10 + s);
        originals.push(p);
        const seen = new Set<number>();
        splitPayload(p, maxPayloadBytes).forEach((c, i) => {
          let copies = rand() < lossP ? 0 : 1;
          while (rand() < dupP) copies++;
          if (copies > 0) seen.add(i);
          for (let k = 0; k < copies; k++) events.push([s, c]);
        });
        complete.push(seen.size === Math.max(1, Math.ceil(size / (maxPayloadBytes - CHUNK_OVERHEAD_BYTES))));
      }
      const got = originals.map(() => [] as Buffer[]);
      for (const [s, c] of shuffle(events, rand)) {
        const whole = r.push(`sender-${s}`, c);
        if (whole) got[s].push(whole);
      }
      vi.advanceTimersByTime(1000);
      for (let s = 0; s < senders; s++) {
        const errs = errors.filter((e) => e.sender === `sender-${s}`);
        if (complete[s]) {
          expect(got[s]).toHaveLength(1);
          expect(got[s][0].equals(originals[s])).toBe(true);
          expect(errs).toEqual([]);
          delivered++;
        } else {
          expect(got[s]).toEqual([]);
          // Nothing arrived at all → nothing to time out; otherwise exactly one timeout.
          expect(errs.length).toBeLessThanOrEqual(1);
          if (errs.length === 1) {
            expect(errs[0].code).toBe(ChunkErrorCodes.CHUNK_TIMEOUT);
            timedOut++;
          }
        }
      }
      expect(r.pending).toBe(0);
      expect(r.pendingBytes).toBe(0);
    }
    expect(delivered).toBeGreaterThan(100);
    expect(timedOut).toBeGreaterThan(10);
  });
});

describe('Reassembler.pushTransfer', () => {
  it('gives each completed transfer the bytes of its own chunks (duplicates included), however transfers of one sender interleave', () => {
    const r = new Reassembler({ maxTotalBytes: 1 << 20, maxPendingBytes: 1 << 20, timeoutMs: 1000, onError: () => undefined });
    const a = splitPayload(Buffer.alloc(5000, 1), 1024);
    const b = splitPayload(Buffer.alloc(3000, 2), 1024);
    const sum = (cs: Buffer[]) => cs.reduce((n, c) => n + c.length, 0);
    expect(a.length).toBeGreaterThan(1);
    expect(r.pushTransfer('s', a[0])).toBeUndefined();
    expect(r.pushTransfer('s', a[0])).toBeUndefined(); // a duplicate: on the wire, counted
    for (const c of b.slice(0, -1)) expect(r.pushTransfer('s', c)).toBeUndefined();
    const doneB = r.pushTransfer('s', b.at(-1)!);
    expect(doneB?.wireBytes).toBe(sum(b));
    for (const c of a.slice(1, -1)) expect(r.pushTransfer('s', c)).toBeUndefined();
    const doneA = r.pushTransfer('s', a.at(-1)!);
    expect(doneA?.payload.equals(Buffer.alloc(5000, 1))).toBe(true);
    expect(doneA?.wireBytes).toBe(sum(a) + a[0].length);
    const [one] = splitPayload(Buffer.from('x'), 1024);
    expect(r.pushTransfer('s', one)?.wireBytes).toBe(one.length);
  });
});
