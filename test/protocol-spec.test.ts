/**
 * docs/protocol.md is the contract other implementations are written from: this test reads it
 * and checks it against the code, so that the two cannot drift apart.
 *
 * - §2: the topic table, row by row, against TOPIC_TABLE (topic with its root, publisher,
 *   readers, payload, message, QoS, retain, will);
 * - §3: every message's field table against its zod schema in MESSAGE_SCHEMAS (field names,
 *   nested ones as `a.b` and `a[].b`; required vs optional; nullable; enum and literal values;
 *   the kind of type; for discriminated unions, the forms a field belongs to), and every JSON
 *   example against its schema, with no field the schema drops;
 * - §1.2: which messages refuse unknown keys (strict objects);
 * - §7: the error code table against ErrorCodes, both ways; every FEDMQ_ code the text names exists;
 * - worked examples, recomputed: the model hash (§4, weightsSha256), the held-out split (§5.4,
 *   reimplemented here from the text and compared with @fedmq/edge-node's splitIndices), the
 *   training seeds (§5.2), the chunk example (§10, splitPayload / decodeChunk), the codec
 *   examples (§11: decoded from the doc's hex, and re-encoded), the reconnect policy (§1.3), the
 *   secure-aggregation vectors and examples (§12: keys, KDF, PRG, AEAD, Shamir, thresholds,
 *   modulus bits, packing, the ddg parameters — from the text's rules with node:crypto, and with
 *   @fedmq/privacy — and §3.14's annotated SecAggAnswer);
 * - every in-page link (`](#anchor)`) names a heading.
 *
 * Tables are plain pipe tables with fixed headers; a failure names the section, the line and the row.
 */
import { createCipheriv, createHash, createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_OVERHEAD_BYTES, CODEC_NAMES, ErrorCodes, MESSAGE_SCHEMAS, PROTOCOL_VERSION, TOPIC_KINDS, TOPIC_TABLE, backoffDelay, createRng, decodeChunk,
  decodeSecAggAnswer, encodePacked, encodeSecAggAnswer, fnv1a32, getCodec, splitPayload, unpackMessage, weightsSha256, weightsToWire,
  type CodecParams, type GlobalModelMessage, type SecAggAnswer, type UpdateMessage,
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
  /** zod type name after unwrapping: object, array, string, number, boolean, enum, literal, record, custom, union … */
  kind: string;
  int: boolean;
  values?: readonly unknown[];
  /**
   * A field of some of the options of a discriminated union only: the discriminator values of the
   * options that have it (the Meaning must name them); undefined when every option has it.
   */
  only?: string[];
}

type AnySchema = {
  def: { type: string; innerType?: AnySchema; values?: unknown[]; catchall?: AnySchema; discriminator?: string; options?: AnySchema[] };
  shape?: Record<string, AnySchema>; options?: unknown[]; element?: AnySchema; isInt?: boolean;
};

/** Whether the fields of `s` are walked: objects and discriminated unions of objects. */
const hasFields = (s: AnySchema) => s.def.type === 'object' || s.def.type === 'union';

/**
 * The fields of an object schema, depth first: `a`, `a.b`, `a[].b` for arrays of objects. A
 * discriminated union of objects (SecAggAnswer, AdvertiseKeysTask `encoding`) has the fields of
 * all its options: one row per field name, the discriminator's values merged, and a field that
 * only some options have marked with those options' discriminator values.
 */
function fieldsOf(schema: AnySchema, prefix = '', out: FieldSpec[] = []): FieldSpec[] {
  if (schema.def.type === 'union') return unionFieldsOf(schema, prefix, out);
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
    if (hasFields(s)) fieldsOf(s, `${path}.`, out);
    if (kind === 'array' && hasFields(s.element!)) fieldsOf(s.element!, `${path}[].`, out);
  }
  return out;
}

function unionFieldsOf(schema: AnySchema, prefix: string, out: FieldSpec[]): FieldSpec[] {
  const key = schema.def.discriminator;
  const options = schema.def.options ?? [];
  if (!key || options.some((o) => o.def.type !== 'object')) throw new Error(`${prefix || 'a message'}: only discriminated unions of objects have field tables`);
  const merged = new Map<string, FieldSpec & { in: string[] }>();
  for (const o of options) {
    const tag = String(o.shape![key].def.values![0]);
    for (const f of fieldsOf(o, prefix)) {
      const m = merged.get(f.path);
      if (!m) {
        merged.set(f.path, { ...f, values: f.values && [...f.values], in: [tag] });
        continue;
      }
      if (m.kind !== f.kind || m.optional !== f.optional || m.nullable !== f.nullable || m.int !== f.int) {
        throw new Error(`${f.path}: the options of the union disagree on its type; the field table cannot describe it in one row`);
      }
      if (f.values) m.values = [...new Set([...(m.values ?? []), ...f.values])];
      m.in.push(tag);
    }
  }
  for (const { in: tags, ...f } of merged.values()) out.push({ ...f, only: tags.length === options.length ? f.only : tags });
  return out;
}

/** What the Type cell must say for a field of `kind`. */
function typeWords(f: FieldSpec): RegExp {
  switch (f.kind) {
    case 'number': return f.int ? /\bint\b/ : /\bnumber\b/;
    case 'string': return /\b(string|str|id|hex)\b/;
    case 'boolean': return /\bboolean\b/;
    case 'object':
    case 'union': return /\bobject\b/;
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
  const heads = HEADINGS.filter((h) => h.level === 3 && /^3\.\d+ /.test(h.title)).map((h) => {
    const m = /^3\.(\d+) (\w+)/.exec(h.title)!;
    return { n: Number(m[1]), msg: m[2] };
  });
  const all = heads.map((h) => h.msg);
  // messages sent only as MessagePack (their bin fields have no JSON form): no JSON example
  const packed = new Set<string>(TOPIC_KINDS.filter((k) => TOPIC_TABLE[k].payload.startsWith('msgpack')).map((k) => TOPIC_TABLE[k].message));

  it('has one subsection per message of MESSAGE_SCHEMAS, numbered 3.1, 3.2, … without gaps', () => {
    // the doc's order is the order the messages were added in (new ones at the end, so that
    // references like §3.8 stay valid), not necessarily MESSAGE_SCHEMAS' order
    expect(heads.map((h) => h.n), `${DOC} §3: the ### 3.N headings must be numbered 1, 2, 3 …`).toEqual(heads.map((_, i) => i + 1));
    expect(all.filter((x, i) => all.indexOf(x) !== i), `${DOC} §3: messages with two subsections`).toEqual([]);
    expect(all.filter((x) => !(x in MESSAGE_SCHEMAS)), `${DOC} §3: ### 3.N headings naming no message of MESSAGE_SCHEMAS`).toEqual([]);
    expect(Object.keys(MESSAGE_SCHEMAS).filter((x) => !all.includes(x)), `${DOC} §3: messages of MESSAGE_SCHEMAS without a ### 3.N subsection`).toEqual([]);
  });

  for (const [msg, schema] of Object.entries(MESSAGE_SCHEMAS)) {
    describe(msg, () => {
      const index = all.indexOf(msg) + 1;
      if (index === 0) {
        it('has a ### 3.N subsection', () => expect.fail(`${DOC} §3: no ### 3.N ${msg} subsection`));
        return;
      }
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
          // a field of some forms only: its meaning, or the meaning of a field it is nested in, names them
          const named = (tag: string) => {
            for (let p = f.path; p; p = p.replace(/(\[\])?\.?[^.[\]]*$/, '')) {
              const r = rows.get(p);
              if (r && spans(r.cells[3]).includes(tag)) return true;
            }
            return false;
          };
          for (const tag of f.only ?? []) {
            expect(named(tag), `${where}: a field of the \`${f.only!.join('`, `')}\` form${f.only!.length > 1 ? 's' : ''} only: its meaning (or its parent's) must name \`${tag}\``).toBe(true);
          }
        });
      }

      const examples = codeBlocks(s, 'json');
      if (!packed.has(msg)) {
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

describe('docs/protocol.md §12 secure aggregation, recomputed', () => {
  const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
  const x25519Public = (sk: Uint8Array) =>
    new Uint8Array(createPublicKey(createPrivateKey({ key: Buffer.concat([PKCS8_X25519, sk]), format: 'der', type: 'pkcs8' })).export({ format: 'der', type: 'spki' }).subarray(12));
  const x25519 = (sk: Uint8Array, pk: Uint8Array) => {
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, sk]), format: 'der', type: 'pkcs8' });
    const publicKey = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b656e032100', 'hex'), pk]), format: 'der', type: 'spki' });
    return new Uint8Array(diffieHellman({ privateKey, publicKey }));
  };
  // §12.2 from the text: info, HKDF, PRG, AAD
  const info = (purpose: string, job: string, runId: string, round: number, a: string, b: string) =>
    Buffer.from([purpose, job, runId, String(round), a < b ? a : b, a < b ? b : a].join('\0'), 'utf8');
  const kdf = (purpose: string, z: Uint8Array, job: string, runId: string, round: number, a: string, b: string) =>
    new Uint8Array(hkdfSync('sha256', z, Buffer.from('fedmq/secagg/v1'), info(purpose, job, runId, round, a, b), 32));
  const prg = (seed: Uint8Array, count: number, bits: number) => {
    const ks = createCipheriv('chacha20', seed, Buffer.alloc(16)).update(Buffer.alloc(4 * count));
    return Array.from({ length: count }, (_, m) => Number(BigInt(ks.readUInt32LE(4 * m)) & ((1n << BigInt(bits)) - 1n)));
  };
  const aad = (job: string, runId: string, round: number, sender: string, receiver: string) =>
    Buffer.from(['fedmq/secagg/v1', 'share-keys', job, runId, String(round), sender, receiver].join('\0'), 'utf8');

  it('§12.2: the test vectors follow from RFC 7748, RFC 5869, RFC 8439 and the text, and the code gives the same', async () => {
    const s = section('### 12.2 ');
    const marker = '<!-- example: secagg-keys -->';
    const [block] = codeBlocks(s, 'text', marker);
    if (!block) throw new Error(`${DOC}:${s.line} §12.2: no \`\`\`text vector block after ${marker}`);
    const kv = new Map(block.lines.filter((l) => l.trim()).map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l.trim())!;
      return [m[1], m[2].trim()] as const;
    }));
    const get = (k: string) => {
      const v = kv.get(k);
      if (v === undefined) throw new Error(`${DOC}:${block.n} §12.2 vectors: no "${k}" line`);
      return v;
    };
    const bin = (k: string) => fromHex(get(k));
    const where = `${DOC}:${block.n} §12.2 vectors`;
    const [aSk, aPk, bSk, bPk] = ['aSecretKey', 'aPublicKey', 'bSecretKey', 'bPublicKey'].map(bin);
    expect(hex(x25519Public(aSk)), `${where}: aPublicKey`).toBe(hex(aPk));
    expect(hex(x25519Public(bSk)), `${where}: bPublicKey`).toBe(hex(bPk));
    const shared = x25519(aSk, bPk);
    expect(hex(shared), `${where}: shared = X25519(a, B)`).toBe(get('shared'));
    expect(hex(x25519(bSk, aPk)), `${where}: shared = X25519(b, A)`).toBe(get('shared'));
    const job = get('job');
    const runId = get('runId');
    const round = Number(get('round'));
    const [idA, idB] = [get('idA'), get('idB')];
    expect(get('salt'), `${where}: salt`).toBe(Buffer.from('fedmq/secagg/v1').toString('hex'));
    for (const [purpose, infoKey, keyKey] of [['mask', 'infoMask', 'maskKey'], ['enc', 'infoEnc', 'encKey']] as const) {
      expect(hex(info(purpose, job, runId, round, idB, idA)), `${where}: ${infoKey}`).toBe(get(infoKey).replace(/\s+/g, ''));
      expect(hex(kdf(purpose, shared, job, runId, round, idA, idB)), `${where}: ${keyKey}`).toBe(get(keyKey));
    }
    const maskKey = bin('maskKey');
    const encKey = bin('encKey');
    const words20 = get('prgMask20').split(/\s+/).map(Number);
    expect(prg(maskKey, words20.length, 20), `${where}: prgMask20`).toEqual(words20);
    const words32 = get('prgMask32').split(/\s+/);
    expect(prg(maskKey, words32.length, 32).map((w) => w.toString(16).padStart(8, '0')), `${where}: prgMask32`).toEqual(words32);
    const zero = createCipheriv('chacha20', Buffer.alloc(32), Buffer.alloc(16)).update(Buffer.alloc(128));
    expect(zero.toString('hex'), `${where}: prgZero (RFC 8439 A.1 #1 and #2)`).toBe(get('prgZero'));
    expect(get('prgZero').startsWith('76b8e0ada0f13d90405d6ae55386bd28'), `${where}: prgZero is RFC 8439 A.1 test vector #1`).toBe(true);
    const ad = aad(job, runId, round, idA, idB);
    expect(hex(ad), `${where}: aad`).toBe(get('aad').replace(/\s+/g, ''));
    const nonce = bin('nonce');
    const plaintext = bin('plaintext');
    expect(plaintext.length, `${where}: plaintext = two 33-byte shares`).toBe(66);
    const c = createCipheriv('chacha20-poly1305', encKey, nonce, { authTagLength: 16 });
    c.setAAD(ad, { plaintextLength: plaintext.length });
    const sealed = Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
    expect(sealed.toString('hex'), `${where}: sealed = nonce ‖ ChaCha20-Poly1305 ‖ tag`).toBe(get('sealed'));
    expect(sealed.length, `${where}: sealed length`).toBe(94);
    // the code (@fedmq/privacy) gives the same
    const p = await import('@fedmq/privacy');
    const ctx = { job, runId, round };
    expect(hex(p.deriveKey('mask', ctx, idA, idB, aSk, bPk)), `${where}: deriveKey mask`).toBe(get('maskKey'));
    expect(hex(p.deriveKey('mask', ctx, idB, idA, bSk, aPk)), `${where}: deriveKey mask, the other end`).toBe(get('maskKey'));
    expect(hex(p.deriveKey('enc', ctx, idB, idA, bSk, aPk)), `${where}: deriveKey enc`).toBe(get('encKey'));
    expect(Array.from(p.prgWords(maskKey, words20.length, 20)), `${where}: prgWords`).toEqual(words20);
    expect(hex(p.shareAad(ctx, idA, idB)), `${where}: shareAad`).toBe(hex(ad));
    expect(hex(p.open(encKey, sealed, ad)), `${where}: open`).toBe(hex(plaintext));
  });

  it('§12.2: the Shamir example, in GF(2^8) with 0x11B, and with the library', async () => {
    const text = prose(section('### 12.2 '));
    const m = /f\(x\) = 0x([0-9a-f]{2}) ⊕ 0x([0-9a-f]{2})·x\): shares `([0-9a-f]{4})` and `([0-9a-f]{4})` combine to `([0-9a-f]{2})`/.exec(text);
    expect(m, `${DOC} §12.2: "f(x) = 0x.. ⊕ 0x..·x): shares \`....\` and \`....\` combine to \`..\`"`).not.toBeNull();
    const mul = (a: number, b: number) => {
      let r = 0;
      for (; b; b >>= 1, a = (a << 1) ^ (a & 0x80 ? 0x11b : 0)) if (b & 1) r ^= a;
      return r;
    };
    const [a0, a1] = [parseInt(m![1], 16), parseInt(m![2], 16)];
    for (const share of [m![3], m![4]]) {
      const x = parseInt(share.slice(2), 16);
      expect(share.slice(0, 2), `${DOC} §12.2 Shamir example: f(${x})`).toBe((a0 ^ mul(a1, x)).toString(16).padStart(2, '0'));
    }
    expect(m![5], `${DOC} §12.2 Shamir example: f(0)`).toBe(a0.toString(16).padStart(2, '0'));
    const { combineShares } = await import('@fedmq/privacy');
    expect(hex(await combineShares([fromHex(m![3]), fromHex(m![4])], 2)), `${DOC} §12.2 Shamir example: combineShares`).toBe(m![5]);
  });

  it('§12.1: the default neighbours and the node thresholds', async () => {
    const { defaultNeighbours, nodeThreshold } = await import('@fedmq/privacy');
    const text = prose(section('### 12.1 '));
    const k = /at most min\(n − 1, 254\): n = (\d+) → (\d+), n = (\d+) → (\d+), n = ([\d ]+) → (\d+) \(θ = ([\d.]+)\)/.exec(text);
    expect(k, `${DOC} §12.1: the default-k examples`).not.toBeNull();
    for (let i = 1; i <= 5; i += 2) {
      const n = num(k![i]);
      expect(Math.min(n - 1, defaultNeighbours(n, Number(k![7]))), `${DOC} §12.1: default k for n = ${n}`).toBe(Number(k![i + 1]));
    }
    const t = /E\.g\. θ = ([\d.]+): ((?:k = \d+ → \d+(?:, )?)+); θ = 1: t_i = k_i/.exec(text);
    expect(t, `${DOC} §12.1: the t_i examples`).not.toBeNull();
    const theta = Number(t![1]);
    for (const x of t![2].matchAll(/k = (\d+) → (\d+)/g)) {
      const kk = Number(x[1]);
      expect(Math.min(kk, Math.max(2, Math.floor(theta * kk) + 1)), `${DOC} §12.1: t_i for k = ${kk} (the text's rule)`).toBe(Number(x[2]));
      expect(Math.min(kk, nodeThreshold(kk, theta)), `${DOC} §12.1: t_i for k = ${kk} (the engine's)`).toBe(Number(x[2]));
    }
    for (const kk of [1, 2, 7, 254]) expect(Math.min(kk, nodeThreshold(kk, 1)), `${DOC} §12.1: θ = 1`).toBe(kk);
  });

  it('§12.4: modulus bits, the ddg example, packing', async () => {
    const { ddgBits, modulusBits, packBits, unpackBits } = await import('@fedmq/privacy');
    const text = prose(section('### 12.4 '));
    const mb = /With (\d+)-bit levels: b = (\d+) for ([\d ]+) nodes, (\d+) for ([\d ]+)\./.exec(text);
    expect(mb, `${DOC} §12.4: "With q-bit levels: b = … for … nodes, … for …"`).not.toBeNull();
    const q = Number(mb![1]);
    for (const [b, n] of [[mb![2], mb![3]], [mb![4], mb![5]]].map(([x, y]) => [Number(x), num(y)])) {
      let rule = 1;
      while (!(BigInt(n) * BigInt(2 ** q - 1) < 1n << BigInt(rule))) rule++;
      expect(rule, `${DOC} §12.4: b for ${n} nodes (the text's rule n·L < 2^b)`).toBe(b);
      expect(modulusBits(n, { clip: 1, levelBits: q }), `${DOC} §12.4: modulusBits(${n})`).toBe(b);
    }
    const dd = /Example: z = ([\d.]+), C = ([\d.]+), q = (\d+), n = (\d+) \(t = (\d+)\), mnist-2nn \(p = ([\d ]+)\): c = (\d+), γ = ([\d.]+), σ² = ([\d.]+), b = (\d+)\./.exec(text);
    expect(dd, `${DOC} §12.4: the ddg example sentence`).not.toBeNull();
    const [z, C, qq, n, t, p] = [Number(dd![1]), Number(dd![2]), Number(dd![3]), Number(dd![4]), Number(dd![5]), num(dd![6])];
    const c = 2 ** (qq - 2);
    expect(t, `${DOC} §12.4 ddg example: t = max(2, ⌈0.5·n⌉)`).toBe(Math.max(2, Math.ceil(0.5 * n)));
    expect(Number(dd![7]), `${DOC} §12.4 ddg example: c`).toBe(c);
    expect(Number(dd![8]), `${DOC} §12.4 ddg example: γ`).toBe(C / c);
    expect(Number(dd![9]), `${DOC} §12.4 ddg example: σ²`).toBe((z * c) ** 2 / t);
    const bound = n * (c + 1) + Math.sqrt(2 * n * ((z * c) ** 2 / t) * Math.log((2 * p) / 1e-9));
    let b = 1;
    while (!(2 * bound < 2 ** b)) b++;
    expect(Number(dd![10]), `${DOC} §12.4 ddg example: b (the text's rule)`).toBe(b);
    expect(ddgBits({ nodes: n, dims: p, clipNorm: C, gamma: C / c, sigma2: (z * c) ** 2 / t, wrapProbability: 1e-9 }), `${DOC} §12.4 ddg example: ddgBits`).toBe(b);
    const pk = /the words ([\d ]+) at b = (\d+) pack to `([0-9a-f]+)`/.exec(text);
    expect(pk, `${DOC} §12.4: the packing example`).not.toBeNull();
    const words = pk![1].trim().split(/\s+/).map(Number);
    const bits = Number(pk![2]);
    let acc = 0n;
    words.forEach((w, i) => (acc |= BigInt(w) << BigInt(i * bits)));
    const bytes = Array.from({ length: Math.ceil((words.length * bits) / 8) }, (_, i) => Number((acc >> BigInt(8 * i)) & 0xffn));
    expect(hex(new Uint8Array(bytes)), `${DOC} §12.4 packing example (the text's rule)`).toBe(pk![3]);
    expect(hex(packBits(Uint32Array.from(words), bits)), `${DOC} §12.4 packing example (packBits)`).toBe(pk![3]);
    expect(Array.from(unpackBits(fromHex(pk![3]), words.length, bits)), `${DOC} §12.4 packing example (unpackBits)`).toEqual(words);
  });

  it('§3.8: the size of an mnist-2nn masked input', () => {
    const m = /\(d = ([\d ]+) words of b = (\d+) bits\) carries ([\d ]+) bytes/.exec(prose(section('### 3.8 ')));
    expect(m, `${DOC} §3.8: "(d = … words of b = … bits) carries … bytes"`).not.toBeNull();
    const t9 = table(section('## 9.'), ['#', 'name', 'shape', 'elements', 'bytes']);
    expect(num(m![1]), `${DOC} §3.8: d = the §9 parameters + the ratio word`).toBe(t9.rows.reduce((n, r) => n + num(r.cells[3]), 0) + 1);
    expect(num(m![3]), `${DOC} §3.8: ⌈d·b/8⌉`).toBe(Math.ceil((num(m![1]) * Number(m![2])) / 8));
  });

  it('§3.14: the annotated SecAggAnswer is what the packer writes', () => {
    const s = section('### 3.14 ');
    const marker = '<!-- example: secagg-answer -->';
    const [block] = codeBlocks(s, 'text', marker);
    if (!block) throw new Error(`${DOC}:${s.line} §3.14: no annotated \`\`\`text block after ${marker}`);
    const bytes = fromHex(block.lines.map((l) => l.trim().split(/\s{2,}/)[0].replace(/\s+/g, '')).join(''));
    const where = `${DOC}:${block.n} §3.14 annotated answer`;
    const answer = decodeSecAggAnswer(bytes); // a valid answer …
    // … and byte for byte what the packer writes for it, in the reference node's key order (map key order is not significant, §1)
    expect(hex(encodeSecAggAnswer(unpackMessage(bytes) as SecAggAnswer)), `${where}: re-encoded`).toBe(hex(bytes));
    expect(prose(s, marker), `${where}: its size`).toContain(`(${bytes.length} bytes`);
    const keys = codeBlocks(section('### 12.2 '), 'text', '<!-- example: secagg-keys -->')[0].lines.join('\n');
    if (answer.stage !== 'advertise-keys') throw new Error(`${where}: expected an advertise-keys answer`);
    expect(keys, `${where}: the keys are §12.2's`).toContain(hex(answer.encPublicKey));
    expect(keys, `${where}: the keys are §12.2's`).toContain(hex(answer.maskPublicKey));
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
