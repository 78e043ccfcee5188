/**
 * docs/protocol.md is the contract other implementations are written from: this test reads it
 * and checks it against the code, so that the two cannot drift apart.
 *
 * - §2: the topic table, row by row, against TOPIC_TABLE (topic with its root, publisher,
 *   readers, payload, message, QoS, retain, will);
 * - §3: every message's field table against its zod schema in MESSAGE_SCHEMAS (field names,
 *   nested ones as `a.b` and `a[].b`; required vs optional; nullable; enum and literal values;
 *   the kind of type), and every JSON example against its schema, with no field the schema drops;
 * - §1.2: which messages refuse unknown keys (strict objects);
 * - §7: the error code table against ErrorCodes, both ways; every FEDMQ_ code the text names exists;
 * - worked examples, recomputed: the model hash (§4, weightsSha256), the held-out split (§5.4,
 *   reimplemented here from the text and compared with @fedmq/edge-node's splitIndices), the
 *   training seeds (§5.2), the chunk example (§10, splitPayload / decodeChunk), the codec
 *   examples (§11: decoded from the doc's hex, and re-encoded), the reconnect policy (§1.3);
 * - every in-page link (`](#anchor)`) names a heading.
 *
 * Tables are plain pipe tables with fixed headers; a failure names the section, the line and the row.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_OVERHEAD_BYTES, CODEC_NAMES, ErrorCodes, MESSAGE_SCHEMAS, PROTOCOL_VERSION, TOPIC_KINDS, TOPIC_TABLE, backoffDelay, createRng, decodeChunk,
  encodePacked, fnv1a32, getCodec, splitPayload, weightsSha256, weightsToWire,
  type CodecParams, type GlobalModelMessage, type UpdateMessage,
} from '@fedmq/protocol';

const DOC = 'docs/protocol.md';
const LINES = readFileSync(new URL('../docs/protocol.md', import.meta.url), 'utf8').split('\n');

// ---- markdown helpers ----------------------------------------------------------------------

/** A part of the doc: its title and its lines (with their 1-based line numbers). */
interface Section {
  title: string;
  /** 1-based line of the heading. */
  line: number;
  lines: { n: number; text: string }[];
}

/** Headings with their level (code blocks skipped). */
const HEADINGS: { level: number; title: string; index: number }[] = (() => {
  const out: { level: number; title: string; index: number }[] = [];
  let fenced = false;
  LINES.forEach((text, index) => {
    if (text.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^(#{1,6}) (.+)$/.exec(text);
    if (m) out.push({ level: m[1].length, title: m[2].trim(), index });
  });
  return out;
})();

/** The section whose heading starts with `prefix` (e.g. `## 2.`, `### 3.4 `), up to the next heading of the same or a higher level. */
function section(prefix: string): Section {
  const found = HEADINGS.filter((h) => `${'#'.repeat(h.level)} ${h.title}`.startsWith(prefix));
  if (found.length !== 1) throw new Error(`${DOC}: expected one heading starting with ${JSON.stringify(prefix)}, found ${found.length}`);
  const h = found[0];
  const next = HEADINGS.find((x) => x.index > h.index && x.level <= h.level);
  const end = next ? next.index : LINES.length;
  return { title: h.title, line: h.index + 1, lines: LINES.slice(h.index + 1, end).map((text, i) => ({ n: h.index + 2 + i, text })) };
}

/** Splits a table row into trimmed cells (`\|` is a literal pipe). */
function cells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, '').replace(/\|$/, '');
  return inner.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

interface Table {
  header: string[];
  /** 1-based line of the header. */
  line: number;
  rows: { n: number; cells: string[] }[];
}

/** Every pipe table in `s` (outside code blocks). */
function tables(s: Section): Table[] {
  const out: Table[] = [];
  let fenced = false;
  let cur: Table | undefined;
  for (let i = 0; i < s.lines.length; i++) {
    const { n, text } = s.lines[i];
    if (text.startsWith('```')) fenced = !fenced;
    if (fenced || !text.startsWith('|')) {
      cur = undefined;
      continue;
    }
    if (!cur) {
      const sep = s.lines[i + 1]?.text ?? '';
      if (!/^\|(\s*:?-+:?\s*\|)+\s*$/.test(sep)) throw new Error(`${DOC}:${n} (${s.title}): table header without a separator line`);
      cur = { header: cells(text), line: n, rows: [] };
      out.push(cur);
      i++;
      continue;
    }
    const c = cells(text);
    if (c.length !== cur.header.length) throw new Error(`${DOC}:${n} (${s.title}): row has ${c.length} cells, the header ${cur.header.length}`);
    cur.rows.push({ n, cells: c });
  }
  return out;
}

/** The one table of `s` with exactly this header. */
function table(s: Section, header: string[]): Table {
  const found = tables(s).filter((t) => t.header.join('|') === header.join('|'));
  if (found.length !== 1) throw new Error(`${DOC}:${s.line} (${s.title}): expected one table with header | ${header.join(' | ')} |, found ${found.length}`);
  return found[0];
}

/** The contents of the backtick spans of a cell. */
function spans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

/** A cell holding one name in backticks. */
function name(cell: string, where: string): string {
  const m = /^`([^`]+)`$/.exec(cell);
  if (!m) throw new Error(`${where}: expected one name in backticks, got ${JSON.stringify(cell)}`);
  return m[1];
}

/** Lines of the fenced code blocks of `s` after the line `marker` (or all), with their line numbers. */
function codeBlocks(s: Section, lang: string, marker?: string): { n: number; lines: string[] }[] {
  const out: { n: number; lines: string[] }[] = [];
  let start = 0;
  if (marker) {
    start = s.lines.findIndex((l) => l.text.trim() === marker);
    if (start < 0) throw new Error(`${DOC}:${s.line} (${s.title}): marker ${marker} not found`);
  }
  for (let i = start; i < s.lines.length; i++) {
    if (s.lines[i].text.trim() !== '```' + lang) continue;
    const body: string[] = [];
    let j = i + 1;
    for (; j < s.lines.length && s.lines[j].text.trim() !== '```'; j++) body.push(s.lines[j].text);
    out.push({ n: s.lines[i].n, lines: body });
    i = j;
  }
  return out;
}

/** The text of `s` after `marker`, whitespace collapsed. */
function prose(s: Section, marker?: string): string {
  const start = marker ? s.lines.findIndex((l) => l.text.trim() === marker) : 0;
  return s.lines.slice(Math.max(0, start)).map((l) => l.text).join('\n').replace(/\s+/g, ' ');
}

const num = (s: string) => Number(s.replace(/[\s,]/g, ''));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

// ---- zod schema walking -------------------------------------------------------------------

interface FieldSpec {
  path: string;
  optional: boolean;
  nullable: boolean;
  /** zod type name after unwrapping: object, array, string, number, boolean, enum, literal, record, custom … */
  kind: string;
  int: boolean;
  values?: readonly unknown[];
}

type AnySchema = { def: { type: string; innerType?: AnySchema; values?: unknown[]; catchall?: AnySchema }; shape?: Record<string, AnySchema>; options?: unknown[]; element?: AnySchema; isInt?: boolean };

/** The fields of an object schema, depth first: `a`, `a.b`, `a[].b` for arrays of objects. */
function fieldsOf(schema: AnySchema, prefix = '', out: FieldSpec[] = []): FieldSpec[] {
  for (const [key, s0] of Object.entries(schema.shape ?? {})) {
    let s = s0;
    let optional = false;
    let nullable = false;
    for (;;) {
      if (s.def.type === 'optional') optional = true;
      else if (s.def.type === 'nullable') nullable = true;
      else break;
      s = s.def.innerType!;
    }
    const kind = s.def.type;
    const path = prefix + key;
    out.push({ path, optional, nullable, kind, int: kind === 'number' && s.isInt === true, values: kind === 'enum' ? s.options : kind === 'literal' ? s.def.values : undefined });
    if (kind === 'object') fieldsOf(s, `${path}.`, out);
    if (kind === 'array' && s.element!.def.type === 'object') fieldsOf(s.element!, `${path}[].`, out);
  }
  return out;
}

/** What the Type cell must say for a field of `kind`. */
function typeWords(f: FieldSpec): RegExp {
  switch (f.kind) {
    case 'number': return f.int ? /\bint\b/ : /\bnumber\b/;
    case 'string': return /\b(string|str|id|hex)\b/;
    case 'boolean': return /\bboolean\b/;
    case 'object': return /\bobject\b/;
    case 'record': return /\bmap\b/;
    case 'array': return /\[\]|\barray\b/;
    case 'custom': return /\bbin\b/;
    case 'enum': return /\benum\b/;
    case 'literal': return /`/;
    default: throw new Error(`no rule for zod type ${f.kind} (field ${f.path})`);
  }
}

/** Every key path of a JSON value (`a`, `a.b`, arrays' elements as `a[]`). */
function keyPaths(v: unknown, prefix = '', out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) v.forEach((x) => keyPaths(x, `${prefix}[]`, out));
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.add(p);
      keyPaths(x, p, out);
    }
  }
  return out;
}

// ---- the tests ----------------------------------------------------------------------------

describe('docs/protocol.md §2 topic table', () => {
  const s = section('## 2.');
  const t = table(s, ['Topic', 'Publisher', 'Readers', 'Payload', 'Message', 'QoS', 'Retain', 'Will', 'Meaning']);

  it('has one row per TOPIC_TABLE entry, in table order', () => {
    const docTopics = t.rows.map((r) => name(r.cells[0], `${DOC}:${r.n} §2 topic table`));
    const codeTopics = TOPIC_KINDS.map((k) => `${TOPIC_TABLE[k].root}/{job}/${TOPIC_TABLE[k].pattern}`);
    expect(docTopics, `${DOC}:${t.line} §2: the topic column must list exactly TOPIC_TABLE's topics ({root}/{job}/{pattern}), in order`).toEqual(codeTopics);
  });

  for (const kind of TOPIC_KINDS) {
    const spec = TOPIC_TABLE[kind];
    const topic = `${spec.root}/{job}/${spec.pattern}`;
    it(`row ${topic} (${kind}) matches the code`, () => {
      const row = t.rows.find((r) => r.cells[0] === `\`${topic}\``);
      expect(row, `${DOC} §2: no row for topic ${topic}`).toBeDefined();
      const [, publisher, readers, payload, message, qos, retain, will] = row!.cells;
      const where = `${DOC}:${row!.n} §2 row ${topic}`;
      const messageName = /^\[([^\]]+)\]\(#[^)]+\)$/.exec(message)?.[1] ?? message;
      expect({ publisher, readers: readers.split(',').map((x) => x.trim()).sort(), payload, message: messageName, qos, retain, will }, where).toEqual({
        publisher: spec.publisher,
        readers: [...spec.readers].sort(),
        payload: spec.payload,
        message: spec.message,
        qos: String(spec.qos),
        retain: spec.retain ? 'yes' : 'no',
        will: spec.will ? 'yes' : 'no',
      });
    });
  }
});

describe('docs/protocol.md §3 message tables', () => {
  const all = HEADINGS.filter((h) => h.level === 3 && /^3\.\d+ /.test(h.title)).map((h) => /^3\.\d+ (\w+)/.exec(h.title)![1]);

  it('has one subsection per message of MESSAGE_SCHEMAS, in its order', () => {
    expect(all, `${DOC} §3: the ### 3.N headings must name the messages of MESSAGE_SCHEMAS`).toEqual(Object.keys(MESSAGE_SCHEMAS));
  });

  for (const [msg, schema] of Object.entries(MESSAGE_SCHEMAS)) {
    describe(msg, () => {
      const index = all.indexOf(msg) + 1;
      const s = section(`### 3.${index} ${msg}`);
      const t = table(s, ['Field', 'Type', 'Required', 'Meaning']);
      const fields = fieldsOf(schema as unknown as AnySchema);
      const rows = new Map(t.rows.map((r) => [name(r.cells[0], `${DOC}:${r.n} §3.${index} ${msg}`), r]));

      it('lists exactly the schema\'s fields', () => {
        const docNames = t.rows.map((r) => name(r.cells[0], `${DOC}:${r.n} §3.${index} ${msg}`));
        const dup = docNames.filter((x, i) => docNames.indexOf(x) !== i);
        expect(dup, `${DOC}:${t.line} §3.${index} ${msg}: fields listed twice`).toEqual([]);
        const codeNames = fields.map((f) => f.path);
        expect(docNames.filter((x) => !codeNames.includes(x)), `${DOC}:${t.line} §3.${index} ${msg}: rows for fields the schema does not have`).toEqual([]);
        expect(codeNames.filter((x) => !docNames.includes(x)), `${DOC}:${t.line} §3.${index} ${msg}: schema fields missing from the table`).toEqual([]);
      });

      for (const f of fields) {
        it(`field ${f.path}: required, type, values`, () => {
          const row = rows.get(f.path);
          expect(row, `${DOC}:${t.line} §3.${index} ${msg}: no row for ${f.path}`).toBeDefined();
          const [, type, required, meaning] = row!.cells;
          const where = `${DOC}:${row!.n} §3.${index} ${msg} row ${f.path}`;
          expect(required, `${where}: Required must be ${f.optional ? 'opt' : 'yes'}`).toBe(f.optional ? 'opt' : 'yes');
          expect(/\bnull\b/.test(type), `${where}: the type must ${f.nullable ? '' : 'not '}say "| null"`).toBe(f.nullable);
          expect(type, `${where}: the type of a zod ${f.kind}${f.int ? ' (int)' : ''} must match ${typeWords(f)}`).toMatch(typeWords(f));
          for (const v of f.values ?? []) {
            expect(spans(type).includes(String(v)) || spans(meaning).includes(String(v)), `${where}: value \`${String(v)}\` not listed`).toBe(true);
          }
          if (f.values) {
            const listed = spans(type).filter((x) => !f.values!.map(String).includes(x));
            expect(listed, `${where}: the type lists values the schema does not allow`).toEqual([]);
          }
        });
      }

      const examples = codeBlocks(s, 'json');
      if (msg !== 'GlobalModel' && msg !== 'Update') {
        it('has a JSON example', () => expect(examples.length, `${DOC}:${s.line} §3.${index} ${msg}: no \`\`\`json example`).toBeGreaterThan(0));
      }
      for (const ex of examples) {
        it(`JSON example at line ${ex.n} is valid and has no dropped field`, () => {
          const where = `${DOC}:${ex.n} §3.${index} ${msg} example`;
          let value: unknown;
          try {
            value = JSON.parse(ex.lines.join('\n'));
          } catch (err) {
            throw new Error(`${where}: not JSON: ${(err as Error).message}`);
          }
          const r = (schema as unknown as { safeParse(v: unknown): { success: boolean; data?: unknown; error?: { issues: { path: unknown[]; message: string }[] } } }).safeParse(value);
          expect(r.success, `${where}: ${r.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`).toBe(true);
          expect([...keyPaths(value)].filter((k) => !keyPaths(r.data).has(k)), `${where}: fields the schema drops`).toEqual([]);
        });
      }
    });
  }
});

describe('docs/protocol.md §1.2 unknown fields', () => {
  const s = section('### 1.2 ');
  const t = table(s, ['Where', 'Unknown keys']);
  const strict = (x: AnySchema | undefined) => x?.def.catchall?.def.type === 'never';
  const schemas = MESSAGE_SCHEMAS as unknown as Record<string, AnySchema>;

  it('names every message, and says "refused" exactly for the strict objects', () => {
    const seen = new Set<string>();
    for (const r of t.rows) {
      const where = `${DOC}:${r.n} §1.2 row ${r.cells[0]}`;
      const refused = /\brefused\b/.test(r.cells[1]);
      // top-level messages: the names in the row that are not followed by a backticked field
      for (const m of r.cells[0].matchAll(/\b([A-Z]\w+)\b(?! `)/g)) {
        if (!(m[1] in schemas) || /^Each encoded tensor/.test(r.cells[0])) continue;
        seen.add(m[1]);
        expect(strict(schemas[m[1]]), `${where}: ${m[1]} is ${strict(schemas[m[1]]) ? '' : 'not '}a strict object`).toBe(refused);
      }
      // nested objects named as `Message \`field\``
      for (const m of r.cells[0].matchAll(/\b([A-Z]\w+) `(\w+)`/g)) {
        const field = schemas[m[1]]?.shape?.[m[2]];
        if (!field) throw new Error(`${where}: ${m[1]} has no field ${m[2]}`);
        let inner: AnySchema = field;
        while (inner.def.type === 'optional' || inner.def.type === 'nullable') inner = inner.def.innerType!;
        if (inner.def.type !== 'object') continue;
        expect(strict(inner), `${where}: ${m[1]}.${m[2]} is ${strict(inner) ? '' : 'not '}a strict object`).toBe(refused);
      }
    }
    expect(Object.keys(schemas).filter((m) => !seen.has(m)), `${DOC}:${t.line} §1.2: messages not in the table`).toEqual([]);
  });
});

describe('docs/protocol.md §7 error codes', () => {
  const s = section('## 7.');
  const t = table(s, ['Code', 'Meaning', 'Raised by']);
  const codes = Object.values(ErrorCodes) as string[];

  it('lists every code of ErrorCodes once, and no other', () => {
    const docCodes = t.rows.map((r) => name(r.cells[0], `${DOC}:${r.n} §7`));
    expect(docCodes.filter((c, i) => docCodes.indexOf(c) !== i), `${DOC}:${t.line} §7: codes listed twice`).toEqual([]);
    expect(codes.filter((c) => !docCodes.includes(c)), `${DOC}:${t.line} §7: codes of protocol/src/errors.ts missing from the table`).toEqual([]);
    expect(docCodes.filter((c) => !codes.includes(c)), `${DOC}:${t.line} §7: codes in the table that protocol/src/errors.ts does not define`).toEqual([]);
    for (const r of t.rows) expect(r.cells[1].length > 0 && r.cells[2].length > 0, `${DOC}:${r.n} §7 ${r.cells[0]}: meaning and raiser must be filled in`).toBe(true);
  });

  it('names only defined codes anywhere in the text', () => {
    LINES.forEach((line, i) => {
      for (const m of line.matchAll(/FEDMQ_[A-Z0-9_]+/g)) expect(codes, `${DOC}:${i + 1}: unknown error code ${m[0]}`).toContain(m[0]);
    });
  });

  it('§6 acceptance rules are numbered 1…n and name defined codes', () => {
    const r6 = table(section('## 6.'), ['#', 'Check', 'Error code']);
    r6.rows.forEach((r, i) => {
      expect(r.cells[0], `${DOC}:${r.n} §6: rule numbers must run 1, 2, 3 …`).toBe(String(i + 1));
      const named = spans(r.cells[2]);
      expect(named.length, `${DOC}:${r.n} §6 rule ${r.cells[0]}: no error code`).toBeGreaterThan(0);
      for (const c of named) expect(codes, `${DOC}:${r.n} §6 rule ${r.cells[0]}`).toContain(c);
    });
  });
});

describe('docs/protocol.md worked examples', () => {
  it('§4: the model hash example recomputes with weightsSha256', () => {
    const s = section('## 4.');
    const marker = '<!-- example: model-hash -->';
    const t = tables({ ...s, lines: s.lines.slice(s.lines.findIndex((l) => l.text.trim() === marker)) }).find((x) => x.header[0] === 'name');
    if (!t) throw new Error(`${DOC}:${s.line} §4: no example table after ${marker}`);
    expect(t.header, `${DOC}:${t.line} §4 example table header`).toEqual(['name', 'shape', 'values (float32)', 'data (hex)']);
    const tensors = t.rows.map((r) => {
      const where = `${DOC}:${r.n} §4 example row ${r.cells[0]}`;
      const shape = JSON.parse(name(r.cells[1], where)) as number[];
      const values = new Float32Array((JSON.parse(name(r.cells[2], where)) as unknown[]).flat(8) as number[]);
      const w = weightsToWire([{ name: name(r.cells[0], where), shape, data: values }])[0];
      expect(hex(w.data), `${where}: data (hex) must be the values as little-endian float32`).toBe(name(r.cells[3], where).replace(/\s+/g, ''));
      return w;
    });
    const text = prose(s, marker);
    const sha = /sha256 = `([0-9a-f]{64})`/.exec(text)?.[1];
    const first = /first tensor alone: `([0-9a-f]{64})`/.exec(text)?.[1];
    expect(sha, `${DOC} §4: "sha256 = \`…\`" of the example`).toBe(weightsSha256(tensors));
    expect(first, `${DOC} §4: "the first tensor alone: \`…\`"`).toBe(weightsSha256(tensors.slice(0, 1)));
    // the hashed bytes, as listed
    const [bytesBlock] = codeBlocks(s, 'text', marker);
    const listed = bytesBlock.lines.map((l) => l.split(/\s{2,}/)[0].replace(/\s+/g, '')).join('');
    const expected = createHash('sha256');
    const parts: Buffer[] = [];
    for (const w of tensors) parts.push(Buffer.from(w.name, 'utf8'), Buffer.from([0]), Buffer.from(w.shape.join(','), 'utf8'), Buffer.from([0]), Buffer.from(w.data));
    expect(listed, `${DOC}:${bytesBlock.n} §4: the hashed bytes`).toBe(Buffer.concat(parts).toString('hex'));
    expect(expected.update(Buffer.concat(parts)).digest('hex')).toBe(sha);
    const [py] = codeBlocks(s, 'python', marker);
    expect(py.lines.join('\n'), `${DOC}:${py.n} §4: the Python snippet's printed hash`).toContain(sha!);
  });

  describe('§5.4: the held-out split, reimplemented from the text', () => {
    // Exactly the steps of §5.4, in 32-bit arithmetic.
    const imul = (a: number, b: number) => Number((BigInt(a >>> 0) * BigInt(b >>> 0)) & 0xffffffffn);
    const fnv = (s: string) => {
      let h = 2166136261;
      for (let i = 0; i < s.length; i++) h = imul((h ^ s.charCodeAt(i)) >>> 0, 16777619);
      return h >>> 0;
    };
    const rngState = (seed: number) => {
      let h = (seed ^ 0x9e3779b9) >>> 0;
      h = imul(h, 0x85ebca6b);
      h = (h ^ (h >>> 13)) >>> 0;
      h = imul(h, 0xc2b2ae35);
      return (h ^ (h >>> 16)) >>> 0;
    };
    const mulberry = (state: number) => {
      let a = state;
      return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = imul(a ^ (a >>> 15), a | 1);
        t = (t ^ ((t + imul(t ^ (t >>> 7), t | 61)) >>> 0)) >>> 0;
        return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
      };
    };
    const permutation = (n: number, rng: () => number) => {
      const p = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [p[i], p[j]] = [p[j], p[i]];
      }
      return p;
    };
    const roundHalfUp = (x: number) => (x - Math.floor(x) >= 0.5 ? Math.floor(x) + 1 : Math.floor(x));
    const heldOutCount = (n: number, f: number) => (f === 0 || n < 2 ? 0 : Math.min(n - 1, Math.max(1, roundHalfUp(f * n))));

    const s = section('### 5.4 ');
    const marker = '<!-- example: split -->';
    const t = table(s, ['nodeId', 'fnv1a32', 'createRng state', 'first draws', 'n', 'valFraction', 'permutation', 'held out']);
    const list = (c: string) => c.split(/[\s,]+/).filter(Boolean).map(Number);

    for (const r of t.rows) {
      it(`row ${r.cells[0]}`, async () => {
        const where = `${DOC}:${r.n} §5.4 split example row ${r.cells[0]}`;
        const id = name(r.cells[0], where);
        const n = Number(r.cells[4]);
        const f = Number(r.cells[5]);
        expect(Number(r.cells[1]), `${where}: fnv1a32`).toBe(fnv(id));
        expect(fnv(id), `${where}: the text's fnv1a32 vs protocol's fnv1a32`).toBe(fnv1a32(id));
        expect(Number(r.cells[2]), `${where}: createRng state`).toBe(rngState(fnv(id)));
        const ours = mulberry(rngState(fnv(id)));
        const theirs = createRng(fnv(id));
        const draws = list(r.cells[3]);
        for (const d of draws) {
          const x = ours();
          expect(x, `${where}: first draws (from the text)`).toBe(d);
          expect(theirs(), `${where}: first draws (protocol's createRng)`).toBe(x);
        }
        const perm = permutation(n, mulberry(rngState(fnv(id))));
        expect(list(r.cells[6]), `${where}: permutation`).toEqual(perm);
        const k = heldOutCount(n, f);
        expect(list(r.cells[7]), `${where}: held out`).toEqual(perm.slice(0, k));
        const { splitIndices } = await import('@fedmq/edge-node');
        const split = splitIndices(id, n, f);
        expect(Array.from(split.heldOut), `${where}: @fedmq/edge-node splitIndices heldOut`).toEqual(perm.slice(0, k));
        expect(Array.from(split.train), `${where}: @fedmq/edge-node splitIndices train (original order)`).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !perm.slice(0, k).includes(i)));
      });
    }

    it('the "trains on" sentence and the rounding remarks', async () => {
      const text = prose(s, marker);
      const m = /`([^`]+)` trains on ([\d ]+), in that order/.exec(text);
      expect(m, `${DOC} §5.4: "… trains on …, in that order"`).not.toBeNull();
      const { splitIndices } = await import('@fedmq/edge-node');
      const row = t.rows.find((r) => r.cells[0] === `\`${m![1]}\``)!;
      expect(list(m![2]), `${DOC} §5.4: training split of ${m![1]}`).toEqual(Array.from(splitIndices(m![1], Number(row.cells[4]), Number(row.cells[5])).train));
      for (const x of text.matchAll(/`([^`]+)`: f·n = ([\d.]+) rounds (?:up )?to (\d+)/g)) {
        const r = t.rows.find((y) => y.cells[0] === `\`${x[1]}\``)!;
        expect(Number(r.cells[4]) * Number(r.cells[5]), `${DOC} §5.4: f·n of ${x[1]}`).toBeCloseTo(Number(x[2]), 10);
        expect(heldOutCount(Number(r.cells[4]), Number(r.cells[5])), `${DOC} §5.4: rounding of ${x[1]}`).toBe(Number(x[3]));
      }
    });

    it('§5.2: the training seed examples', () => {
      const text = prose(section('### 5.2 '));
      const m = /node `([^`]+)`, round (\d+) → (\d+); round (\d+) → (\d+)/.exec(text);
      expect(m, `${DOC} §5.2: "node \`id\`, round r → seed; round r → seed"`).not.toBeNull();
      const seed = (id: string, round: number) => (fnv(id) ^ imul(round, 0x9e3779b1)) >>> 0;
      expect(Number(m![3]), `${DOC} §5.2 seed of round ${m![2]}`).toBe(seed(m![1], Number(m![2])));
      expect(Number(m![5]), `${DOC} §5.2 seed of round ${m![4]}`).toBe(seed(m![1], Number(m![4])));
      // the reference node's expression
      expect(seed(m![1], Number(m![2]))).toBe((fnv1a32(m![1]) ^ Math.imul(Number(m![2]), 0x9e3779b1)) >>> 0);
    });
  });

  it('§10: the chunk example recomputes with splitPayload and decodes with decodeChunk', () => {
    const s = section('## 10.');
    const marker = '<!-- example: chunks -->';
    const blocks = codeBlocks(s, 'text', marker);
    expect(blocks.length, `${DOC}:${s.line} §10: expected the parameter, annotated-chunk and chunk-list blocks after ${marker}`).toBe(3);
    const [params, annotated, listBlock] = blocks;
    const param = (key: string) => {
      const line = params.lines.find((l) => l.startsWith(`${key} `));
      if (!line) throw new Error(`${DOC}:${params.n} §10 example: no "${key}" line`);
      return line.slice(key.length).trim();
    };
    const payload = Buffer.from(JSON.parse(/^("(?:[^"\\]|\\.)*")/.exec(param('payload'))![1]) as string, 'utf8');
    expect(param('payload'), `${DOC}:${params.n} §10 example: payload size`).toContain(`${payload.length} bytes`);
    const max = Number(param('maxPayloadBytes'));
    const transfer = param('transfer');
    expect(param('sha256'), `${DOC}:${params.n} §10 example: sha256 of the payload`).toBe(createHash('sha256').update(payload).digest('hex'));
    const chunks = splitPayload(payload, max, transfer);
    const listed = listBlock.lines.map((l) => /^chunk (\d+) \((\d+) bytes\): ([0-9a-f]+)$/.exec(l.trim())).filter((m) => m !== null);
    expect(listed.length, `${DOC}:${listBlock.n} §10 example: number of chunks`).toBe(chunks.length);
    listed.forEach((m, i) => {
      expect(Number(m![1]), `${DOC}:${listBlock.n} §10 example: chunk numbering`).toBe(i);
      expect(Number(m![2]), `${DOC}:${listBlock.n} §10 example: chunk ${i} size`).toBe(chunks[i].length);
      expect(m![3], `${DOC}:${listBlock.n} §10 example: chunk ${i} bytes`).toBe(chunks[i].toString('hex'));
    });
    const decoded = chunks.map((c) => decodeChunk(c));
    expect(Buffer.concat(decoded.map((c) => c.data)).equals(payload), `${DOC} §10 example: the chunks reassemble to the payload`).toBe(true);
    // the byte-by-byte view of chunk 0
    const bytes = annotated.lines.map((l) => l.split(/\s{2,}/)[0].replace(/\s+/g, '')).join('');
    expect(bytes, `${DOC}:${annotated.n} §10 example: the annotated chunk 0, first column`).toBe(chunks[0].toString('hex'));
    expect(prose(s, marker), `${DOC} §10 example: "Chunk 0, byte by byte (N bytes)"`).toContain(`Chunk 0, byte by byte (${chunks[0].length} bytes)`);
    const text = prose(s, marker);
    const sizes = /chunks of ([\d, and]+) bytes \(/.exec(text)?.[1].split(/,|and/).map((x) => Number(x.trim())).filter((x) => x > 0);
    expect(sizes, `${DOC} §10 example: "chunks of a, b and c bytes"`).toEqual(decoded.map((c) => c.data.length));
  });

  it('§10: the overhead and the mnist-2nn split', () => {
    const text = prose(section('## 10.'));
    expect(text, `${DOC} §10: the chunk overhead`).toContain(`\`room = maxPayloadBytes − ${CHUNK_OVERHEAD_BYTES}\` (${CHUNK_OVERHEAD_BYTES} = \`CHUNK_OVERHEAD_BYTES\``);
    const m = /the mnist-2nn model \(([\d ]+) bytes\) at the default ([\d ]+) goes in (\d+) chunks of ([\d ]+) bytes of data \(the last ([\d ]+)\), ([\d ]+) bytes each on the wire \(the last ([\d ]+)\)/.exec(text);
    expect(m, `${DOC} §10: the mnist-2nn example sentence`).not.toBeNull();
    const chunks = splitPayload(new Uint8Array(num(m![1])), num(m![2]), '0'.repeat(32));
    const data = chunks.map((c) => decodeChunk(c).data.length);
    expect([chunks.length, data[0], data.at(-1), chunks[0].length, chunks.at(-1)!.length], `${DOC} §10: mnist-2nn chunks`).toEqual([
      Number(m![3]), num(m![4]), num(m![5]), num(m![6]), num(m![7]),
    ]);
  });

  it('§3.6 / §3.8: the mnist-2nn GlobalModel and Update sizes', () => {
    const mnist: [string, number[]][] = [['fc1/kernel', [784, 200]], ['fc1/bias', [200]], ['fc2/kernel', [200, 200]], ['fc2/bias', [200]], ['fc3/kernel', [200, 10]], ['fc3/bias', [10]]];
    const zeros = mnist.map(([n, shape]) => ({ name: n, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) }));
    // the §9 table
    const t9 = table(section('## 9.'), ['#', 'name', 'shape', 'elements', 'bytes']);
    expect(t9.rows.map((r) => [Number(r.cells[0]), name(r.cells[1], `${DOC}:${r.n} §9`), JSON.parse(name(r.cells[2], `${DOC}:${r.n} §9`)), num(r.cells[3]), num(r.cells[4])]), `${DOC}:${t9.line} §9 table`).toEqual(
      zeros.map((z, i) => [i, z.name, z.shape, z.data.length, z.data.length * 4]),
    );
    const tensors = weightsToWire(zeros);
    const gm: GlobalModelMessage = { v: 2, job: 'demo', runId: 'run-mwrcs77o', version: 1, round: 0, model: 'mnist-2nn', sha256: weightsSha256(tensors), tensors, ts: 1795322702758 };
    const gmText = prose(section('### 3.6 '));
    expect(gmText, `${DOC} §3.6: size of the annotated GlobalModel`).toContain(`mnist-2nn, ${encodePacked(gm).length.toLocaleString('en-US').replace(/,/g, ' ')} bytes for job \`demo\``);
    const u: UpdateMessage = {
      v: 2, job: 'demo', runId: 'run-mwrcs77o', nodeId: 'pi-1', taskId: 3, round: 2, modelVersion: 2, numExamples: 540, codec: 'float32', kind: 'delta',
      metrics: { loss: 0.4583, trainMs: 2954.2, bytesDown: 797500 }, tensors: getCodec('float32').encode(zeros, {}, undefined, Math.random), ts: 1795322716321,
    };
    expect(prose(section('### 3.8 ')), `${DOC} §3.8: size of the float32 Update`).toContain(`${encodePacked(u).length.toLocaleString('en-US').replace(/,/g, ' ')} bytes in \`float32\``);
  });

  describe('§11: codec field tables and examples', () => {
    const intro = prose(section('## 11.'));
    const dm = /the delta `(\w+)` = `(\[[^`]+\])` \(shape `(\[[^`]+\])`\)/.exec(intro);
    if (!dm) throw new Error(`${DOC} §11: the example delta sentence ("the delta \`b\` = \`[…]\` (shape \`[…]\`)") is missing`);
    const delta = [{ name: dm[1], shape: JSON.parse(dm[3]) as number[], data: new Float32Array(JSON.parse(dm[2]) as number[]) }];
    const headings = HEADINGS.filter((h) => h.level === 3 && /^11\.\d+ /.test(h.title)).map((h) => /^11\.\d+ `([^`]+)`$/.exec(h.title)?.[1]);

    it('has one subsection per codec, in CODEC_NAMES order', () => {
      expect(headings, `${DOC} §11: ### 11.N \`codec\` headings`).toEqual([...CODEC_NAMES]);
    });

    CODEC_NAMES.forEach((codec, i) => {
      it(codec, () => {
        const s = section(`### 11.${i + 1} \`${codec}\``);
        const t = table(s, ['Field', 'Type', 'Bytes', 'Meaning']);
        const marker = (s.lines.find((l) => l.text.startsWith(`<!-- codec-example: ${codec} `)) ?? { text: '' }).text.trim();
        const pm = /^<!-- codec-example: \S+ (\{.*\}) -->$/.exec(marker);
        if (!pm) throw new Error(`${DOC}:${s.line} §11.${i + 1}: no "<!-- codec-example: ${codec} {params} -->" marker`);
        const params = JSON.parse(pm[1]) as CodecParams;
        const encoded = getCodec(codec).encode(delta, params, {}, () => 0.5)[0];
        const codeFields = Object.keys(encoded).filter((k) => k !== 'name' && k !== 'shape' && k !== 'codec');
        const docFields = t.rows.map((r) => name(r.cells[0], `${DOC}:${r.n} §11.${i + 1}`));
        expect(docFields, `${DOC}:${t.line} §11.${i + 1} ${codec}: the field table must list exactly the encoder's fields, in its order`).toEqual(codeFields);
        for (const r of t.rows) {
          const f = name(r.cells[0], '');
          const kind = encoded[f] instanceof Uint8Array ? 'bin' : 'uint';
          expect(r.cells[1], `${DOC}:${r.n} §11.${i + 1} ${codec} field ${f}: type`).toBe(kind);
        }
        const [block] = codeBlocks(s, 'text', marker);
        const kv = new Map(block.lines.map((l) => {
          const m = /^(\S+)\s+(.*)$/.exec(l.trim())!;
          return [m[1], m[2].trim()] as const;
        }));
        const wire: Record<string, unknown> = { name: delta[0].name, shape: delta[0].shape, codec };
        for (const f of codeFields) {
          const v = kv.get(f);
          if (v === undefined) throw new Error(`${DOC}:${block.n} §11.${i + 1} ${codec} example: no "${f}" line`);
          wire[f] = encoded[f] instanceof Uint8Array ? fromHex(v) : Number(v);
          expect(encoded[f] instanceof Uint8Array ? hex(encoded[f] as Uint8Array) : encoded[f], `${DOC}:${block.n} §11.${i + 1} ${codec} example: ${f} as the encoder writes it`).toEqual(
            encoded[f] instanceof Uint8Array ? v.replace(/\s+/g, '') : Number(v),
          );
        }
        const decodedDoc = (kv.get('decoded') ?? '').split(/\s+/).map((x) => Math.fround(Number(x)));
        expect(Array.from(getCodec(codec).decode(wire).data), `${DOC}:${block.n} §11.${i + 1} ${codec} example: decoded values`).toEqual(decodedDoc);
      });
    });
  });

  it('§1.3: the reconnect policy is backoffDelay\'s', () => {
    const text = prose(section('### 1.3 '));
    const m = /cap = min\(([\d ]+), ([\d ]+) · 2ⁿ\) ms/.exec(text);
    expect(m, `${DOC} §1.3: "cap = min(max, initial · 2ⁿ) ms"`).not.toBeNull();
    for (let n = 0; n < 12; n++) {
      const cap = Math.min(num(m![1]), num(m![2]) * 2 ** n);
      expect(backoffDelay(n, { rng: () => 0 }), `${DOC} §1.3: shortest delay of attempt ${n}`).toBe(cap / 2);
      expect(backoffDelay(n, { rng: () => 0.999999 }), `${DOC} §1.3: longest delay of attempt ${n}`).toBeLessThan(cap);
    }
  });
});

describe('docs/protocol.md §8 Python node', () => {
  // test/python-node.e2e.test.ts runs it; here only that it is there and uses the spec's constants
  it('is the marked ```python block, with the protocol version, the chunk overhead and the §9 layout', () => {
    const s = section('## 8.');
    const blocks = codeBlocks(s, 'python', '<!-- python-node -->');
    expect(blocks.length, `${DOC}:${s.line} §8: a \`\`\`python block after <!-- python-node -->`).toBeGreaterThan(0);
    const src = blocks[0].lines.join('\n');
    expect(src, `${DOC}:${blocks[0].n} §8: V`).toContain(`\nV = ${PROTOCOL_VERSION}\n`);
    expect(src, `${DOC}:${blocks[0].n} §8: CHUNK_OVERHEAD`).toContain(`\nCHUNK_OVERHEAD = ${CHUNK_OVERHEAD_BYTES}\n`);
    const layout = [...src.matchAll(/\("([\w/]+)", \(([\d, ]+)\)\)/g)].map((m) => [m[1], m[2].split(',').map((x) => x.trim()).filter(Boolean).map(Number)]);
    const t9 = table(section('## 9.'), ['#', 'name', 'shape', 'elements', 'bytes']);
    expect(layout, `${DOC}:${blocks[0].n} §8: MNIST_2NN must be the §9 table`).toEqual(t9.rows.map((r) => [name(r.cells[1], ''), JSON.parse(name(r.cells[2], ''))]));
  });
});

describe('docs/protocol.md links', () => {
  it('every in-page link names a heading', () => {
    // GitHub's slugs: lower case, punctuation dropped, spaces to hyphens
    const slug = (t: string) => t.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const anchors = new Set(HEADINGS.map((h) => slug(h.title)));
    LINES.forEach((line, i) => {
      for (const m of line.matchAll(/\]\(#([^)]+)\)/g)) expect(anchors, `${DOC}:${i + 1}: link to #${m[1]}, no such heading`).toContain(m[1]);
    });
  });
});
