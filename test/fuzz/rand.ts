/**
 * Small helpers over a seeded uniform generator (`seededRng` from @fedmq/protocol), so that every
 * fuzz case is a function of the seed and reproduces.
 */
export class Rand {
  constructor(readonly next: () => number) {}

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** An item chosen with probability proportional to its weight. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((s, [, w]) => s + w, 0);
    let x = this.next() * total;
    for (const [item, w] of items) {
      x -= w;
      if (x < 0) return item;
    }
    return items[items.length - 1][0];
  }

  /** `n` random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const x = (this.next() * 2 ** 32) >>> 0;
      b[i] = x & 0xff;
      if (i + 1 < n) b[i + 1] = (x >>> 8) & 0xff;
      if (i + 2 < n) b[i + 2] = (x >>> 16) & 0xff;
      if (i + 3 < n) b[i + 3] = x >>> 24;
    }
    return b;
  }

  /** A length, mostly small: 0–64 often, up to `max` rarely (log-uniform-ish). */
  size(max: number): number {
    return Math.min(max, Math.floor(2 ** (this.next() * Math.log2(max + 1))));
  }

  /** A string of `n` characters from `alphabet`. */
  str(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }

  /** A random Unicode string of `n` code points (any plane, lone surrogates included). */
  unicode(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) {
      const kind = this.int(4);
      const cp = kind === 0 ? this.int(0x80) : kind === 1 ? this.int(0x800) : kind === 2 ? this.int(0x10000) : this.int(0x110000);
      s += String.fromCodePoint(cp);
    }
    return s;
  }
}

/** Byte values that often sit on format boundaries (msgpack type bytes, length maxima, UTF-8 lead bytes). */
export const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x90, 0xa0, 0xc0, 0xc1, 0xc4, 0xc6, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xed, 0xfe, 0xff];

/**
 * Applies 1–`max` byte-level mutations to a copy of `input`: truncation, bit flips, byte
 * insertion, deletion, overwrite with boundary values, 32-bit "huge length" overwrite, slice
 * duplication, appended garbage. `focus` (bytes) makes most positions fall in the first `focus`
 * bytes (where headers and field names live) instead of anywhere.
 */
export function mutateBytes(r: Rand, input: Uint8Array, max = 4, focus?: number): { bytes: Buffer; ops: string[] } {
  let b = Buffer.from(input);
  const ops: string[] = [];
  const n = r.range(1, max);
  const pos = (len: number) => (focus !== undefined && len > focus && r.chance(0.9) ? r.int(focus) : r.int(Math.max(1, len)));
  for (let k = 0; k < n; k++) {
    const op = r.weighted([
      ['truncate', 2], ['flip', 4], ['insert', 2], ['delete', 2], ['overwrite', 3], ['huge32', 1], ['dup', 1], ['append', 1],
    ] as const);
    ops.push(op);
    if (b.length === 0 && op !== 'insert' && op !== 'append') continue;
    switch (op) {
      case 'truncate':
        b = b.subarray(0, r.int(b.length));
        break;
      case 'flip': {
        const i = pos(b.length);
        b[i] ^= 1 << r.int(8);
        break;
      }
      case 'insert': {
        const i = pos(b.length + 1);
        const ins = r.chance(0.5) ? Buffer.from([r.pick(INTERESTING_BYTES)]) : r.bytes(r.range(1, 8));
        b = Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
        break;
      }
      case 'delete': {
        const i = pos(b.length);
        b = Buffer.concat([b.subarray(0, i), b.subarray(i + r.range(1, 4))]);
        break;
      }
      case 'overwrite':
        b[pos(b.length)] = r.pick(INTERESTING_BYTES);
        break;
      case 'huge32': {
        const i = pos(b.length);
        for (let j = 0; j < 4 && i + j < b.length; j++) b[i + j] = j === 0 ? r.pick([0x7f, 0xff]) : 0xff;
        break;
      }
      case 'dup': {
        const i = pos(b.length);
        const j = Math.min(b.length, i + r.range(1, 64));
        b = Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]);
        break;
      }
      case 'append':
        b = Buffer.concat([b, r.bytes(r.range(1, 32))]);
        break;
    }
  }
  return { bytes: Buffer.from(b), ops };
}
