/**
 * The shared test suite every {@link UpdateCodec} runs (Hono's habit: one interface, the
 * implementations side by side, one suite). Call `runCodecSuite(codec, options)` from the codec's
 * `*.test.ts`.
 */
import { describe, expect, it } from 'vitest';
import { packMessage, unpackMessage } from '../codec.ts';
import { ErrorCodes, isFedmqError, type ErrorCode } from '../errors.ts';
import { sizeOf, type NamedTensor } from '../tensor.ts';
import { CODEC_NAMES, getCodec } from './index.ts';
import { seededRng } from './rng.ts';
import type { CodecParams, EncodedTensor, UpdateCodec } from './types.ts';

export const SUITE_SHAPES: number[][] = [[], [0], [1], [7], [3, 5], [2, 3, 4], [200, 784]];

/** Deterministic test deltas: roughly N(0, scale²), with exact zeros and tied magnitudes mixed in. */
export function sampleDelta(shape: number[], seed: number, scale = 0.01): Float32Array {
  const rng = seededRng(seed);
  const n = sizeOf(shape);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rng();
    const g = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
    out[i] = i % 17 === 5 ? 0 : i % 23 === 7 ? (i % 2 ? 1.5 : -1.5) * scale : g * scale;
  }
  return out;
}

/** Places `bytes` at `offset` inside a bigger buffer, as MQTT payloads often are. */
export function misalign(bytes: Uint8Array, offset: number): Uint8Array {
  const buf = new Uint8Array(bytes.length + offset + 3);
  buf.set(bytes, offset);
  return buf.subarray(offset, offset + bytes.length);
}

/** Packs `tensors` as an update's `tensors` field and unpacks them from a payload at `offset`. */
export function viaMsgpack(tensors: EncodedTensor[], offset: number): unknown[] {
  const packed = packMessage({ v: 1, codec: tensors[0]?.codec, tensors });
  return (unpackMessage(misalign(packed, offset)) as { tensors: unknown[] }).tensors;
}

/** Asserts that `fn` throws a FedmqError with `code`. */
export function expectCode(fn: () => unknown, code: ErrorCode): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeDefined();
  if (!isFedmqError(err, code)) throw new Error(`expected ${code}, got ${String((err as Error)?.stack ?? err)}`);
}

export interface MalformedCase {
  label: string;
  /** Returns a corrupted copy of a valid encoded tensor (of shape [40, 50]). */
  make: (t: EncodedTensor) => unknown;
  /** Default FEDMQ_BAD_TENSOR. */
  code?: ErrorCode;
}

export interface CodecSuiteOptions {
  /** Distinguishes several runs of the suite for one codec (e.g. with other params). */
  label?: string;
  /** Params used for encoding throughout the suite. */
  params: CodecParams;
  /** `exact`: decode(encode(x)) === x; `bounded`: within `codec.errorBound`; `sparse`: top-k (checked in the codec's own tests). */
  accuracy: 'exact' | 'bounded' | 'sparse';
  /** Codec-specific corruptions, on top of the generic ones. */
  malformed?: MalformedCase[];
  /** Params `encode` must reject with FEDMQ_BAD_CONFIG. */
  badParams?: CodecParams[];
}

function copyBin(v: unknown): Uint8Array {
  return Uint8Array.from(v as Uint8Array);
}

function withField(t: EncodedTensor, field: string, value: unknown): Record<string, unknown> {
  return { ...t, [field]: value };
}

function without(t: EncodedTensor, field: string): Record<string, unknown> {
  const o: Record<string, unknown> = { ...t };
  delete o[field];
  return o;
}

function genericMalformed(t: EncodedTensor): MalformedCase[] {
  const cases: MalformedCase[] = [
    { label: 'null', make: () => null },
    { label: 'a number', make: () => 42 },
    { label: 'a string', make: () => 'tensor' },
    { label: 'an array', make: () => [t] },
    { label: 'bytes', make: () => new Uint8Array(8) },
    { label: 'unknown field', make: () => withField(t, 'extra', 1) },
    { label: 'fields inherited from a prototype', make: () => Object.assign(Object.create(t), { extra: 1 }) },
    { label: 'unknown field with undefined value', make: () => withField(t, 'extra', undefined) },
    { label: 'codec of another codec', make: () => withField(t, 'codec', t.codec === 'float32' ? 'float16' : 'float32') },
    { label: 'unknown codec', make: () => withField(t, 'codec', 'zip') },
    { label: 'empty name', make: () => withField(t, 'name', '') },
    { label: 'numeric name', make: () => withField(t, 'name', 5) },
    { label: 'name of 257 characters', make: () => withField(t, 'name', 'x'.repeat(257)) },
    { label: 'shape a string', make: () => withField(t, 'shape', '40,50') },
    { label: 'negative dimension', make: () => withField(t, 'shape', [-40, -50]) },
    { label: 'fractional dimension', make: () => withField(t, 'shape', [40.5, 50]) },
    { label: 'nine dimensions', make: () => withField(t, 'shape', [1, 1, 1, 1, 1, 1, 1, 40, 50]) },
    { label: 'shape [1] (too small for the data)', make: () => withField(t, 'shape', [1]) },
    { label: 'more than 2³²−1 elements', make: () => withField(t, 'shape', [65536, 65536]) },
  ];
  for (const f of ['name', 'shape', 'codec', ...Object.keys(t).filter((k) => k !== 'name' && k !== 'shape' && k !== 'codec')]) {
    cases.push({ label: `missing ${f}`, make: () => without(t, f) });
  }
  for (const [f, v] of Object.entries(t)) {
    if (v instanceof Uint8Array) {
      if (v.byteLength > 0) cases.push({ label: `${f} truncated by one byte`, make: () => withField(t, f, copyBin(v).subarray(0, v.byteLength - 1)) });
      if (v.byteLength > 0 && f !== 'data') cases.push({ label: `${f} empty`, make: () => withField(t, f, new Uint8Array(0)) });
      cases.push({ label: `${f} one byte too long`, make: () => withField(t, f, Uint8Array.from([...v, 0])) });
      cases.push({ label: `${f} as a string`, make: () => withField(t, f, 'AAAA') });
      cases.push({ label: `${f} as an array of numbers`, make: () => withField(t, f, Array.from(v)) });
      cases.push({ label: `${f} as a Float32Array`, make: () => withField(t, f, new Float32Array(v.byteLength / 4)) });
      cases.push({ label: `${f} null`, make: () => withField(t, f, null) });
    } else if (typeof v === 'number') {
      for (const bad of [-1, 1.5, '256', null, 2 ** 53]) cases.push({ label: `${f} = ${JSON.stringify(bad)}`, make: () => withField(t, f, bad) });
    }
  }
  if (t.scales instanceof Uint8Array && t.scales.byteLength >= 4) {
    for (const s of [NaN, Infinity, -Infinity, -1]) {
      cases.push({
        label: `scale ${s}`,
        make: () => {
          const b = copyBin(t.scales);
          new DataView(b.buffer).setFloat32(0, s, true);
          return withField(t, 'scales', b);
        },
      });
    }
  }
  if (t.indices instanceof Uint8Array && t.indices.byteLength >= 8) {
    const n = sizeOf(t.shape);
    const set = (mut: (dv: DataView, k: number) => void) => () => {
      const b = copyBin(t.indices);
      mut(new DataView(b.buffer), b.byteLength / 4);
      return withField(t, 'indices', b);
    };
    cases.push({ label: 'index = n (out of range)', make: set((dv, k) => dv.setUint32((k - 1) * 4, n, true)) });
    cases.push({ label: 'index 2³²−1', make: set((dv, k) => dv.setUint32((k - 1) * 4, 0xffffffff, true)) });
    cases.push({ label: 'duplicate index', make: set((dv) => dv.setUint32(4, dv.getUint32(0, true), true)) });
    cases.push({
      label: 'decreasing indices',
      make: set((dv) => {
        const a = dv.getUint32(0, true);
        dv.setUint32(0, dv.getUint32(4, true), true);
        dv.setUint32(4, a, true);
      }),
    });
  }
  return cases;
}

/**
 * Runs the shared codec tests: msgpack round trips with misaligned payloads over
 * {@link SUITE_SHAPES}, accumulate ≡ weight × decode, target length errors, malformed tensors
 * (FEDMQ_BAD_TENSOR, target untouched), encode errors, determinism, registry.
 */
export function runCodecSuite(codec: UpdateCodec, opts: CodecSuiteOptions): void {
  const { params } = opts;
  const encodeOne = (name: string, shape: number[], data: Float32Array, seed = 1) => codec.encode([{ name, shape, data }], params, undefined, seededRng(seed))[0];

  describe(`codec ${codec.name} (shared suite${opts.label ? `, ${opts.label}` : ''})`, () => {
    it('is registered under its name', () => {
      expect(CODEC_NAMES).toContain(codec.name);
      expect(getCodec(codec.name)).toBe(codec);
    });

    for (const shape of SUITE_SHAPES) {
      it(`round-trips [${shape}] through MessagePack at offsets 0-3`, () => {
        const x = sampleDelta(shape, 7 + shape.length);
        const enc = encodeOne('layer/kernel', shape, x);
        expect(enc).toMatchObject({ name: 'layer/kernel', shape, codec: codec.name });
        const direct = codec.decode(enc);
        expect(direct.name).toBe('layer/kernel');
        expect(direct.shape).toEqual(shape);
        expect(direct.data).toBeInstanceOf(Float32Array);
        expect(direct.data.length).toBe(sizeOf(shape));
        for (const offset of [0, 1, 2, 3]) {
          const [wire] = viaMsgpack([enc], offset);
          const d = codec.decode(wire);
          expect(d.shape).toEqual(shape);
          expect(Buffer.from(d.data.buffer, d.data.byteOffset, d.data.byteLength).equals(Buffer.from(direct.data.buffer, direct.data.byteOffset, direct.data.byteLength))).toBe(true);
        }
        if (opts.accuracy === 'exact') {
          expect(Array.from(direct.data)).toEqual(Array.from(x));
        } else if (opts.accuracy === 'bounded') {
          const bound = codec.errorBound!(enc, params);
          for (let i = 0; i < x.length; i++) {
            const err = Math.abs(x[i] - direct.data[i]);
            // 2⁻²³·|y| covers the final rounding of the decoded value to float32.
            if (!(err <= bound[i] + Math.abs(direct.data[i]) * 2 ** -23)) throw new Error(`[${i}] x=${x[i]} y=${direct.data[i]} err=${err} > bound ${bound[i]}`);
          }
        } else {
          for (let i = 0; i < x.length; i++) if (direct.data[i] !== 0) expect(Math.sign(direct.data[i])).toBe(Math.sign(x[i]));
        }
      });

      it(`accumulate [${shape}] ≡ target + weight × decode, through a misaligned payload`, () => {
        const n = sizeOf(shape);
        const enc = encodeOne('w', shape, sampleDelta(shape, 3));
        const decoded = codec.decode(enc).data;
        for (const [offset, weight] of [[0, 1], [1, 0.25], [3, -1.5], [2, 0]] as const) {
          const [wire] = viaMsgpack([enc], offset);
          const init = Float64Array.from(sampleDelta([n], 99), (v) => v * 10);
          const target = init.slice();
          codec.accumulate(wire, target, weight);
          for (let i = 0; i < n; i++) if (target[i] !== init[i] + weight * decoded[i]) throw new Error(`[${i}] ${target[i]} !== ${init[i]} + ${weight} × ${decoded[i]}`);
        }
      });
    }

    it('round-trips a whole mnist-2nn-shaped update, tensors in order', () => {
      const shapes = [[784, 200], [200], [200, 200], [200], [200, 10], [10]];
      const delta: NamedTensor[] = shapes.map((shape, i) => ({ name: `t${i}`, shape, data: sampleDelta(shape, i) }));
      const enc = codec.encode(delta, params, undefined, seededRng(5));
      expect(enc.map((t) => t.name)).toEqual(delta.map((t) => t.name));
      const wire = viaMsgpack(enc, 1);
      wire.forEach((w, i) => expect(Array.from(codec.decode(w).data)).toEqual(Array.from(codec.decode(enc[i]).data)));
    });

    it('is deterministic for a given rng seed', () => {
      const x = sampleDelta([50, 40], 11);
      const a = packMessage({ t: encodeOne('w', [50, 40], x, 42) });
      const b = packMessage({ t: encodeOne('w', [50, 40], x, 42) });
      expect(a.equals(b)).toBe(true);
    });

    it('prepare validates once and addTo adds weight × decode, keeping name and shape', () => {
      const x = sampleDelta([6, 5], 5);
      const [wire] = viaMsgpack([encodeOne('layer/kernel', [6, 5], x, 9)], 1);
      const prepared = codec.prepare(wire);
      expect(prepared.name).toBe('layer/kernel');
      expect(prepared.shape).toEqual([6, 5]);
      const target = new Float64Array(30).fill(1);
      prepared.addTo(target, 3);
      const decoded = codec.decode(wire).data;
      for (let i = 0; i < 30; i++) expect(target[i]).toBe(1 + 3 * decoded[i]);
    });

    it('accumulate throws RangeError for a target of the wrong length or a non-finite weight, and leaves it untouched', () => {
      const enc = encodeOne('w', [3, 5], sampleDelta([3, 5], 1));
      for (const len of [0, 14, 16]) expect(() => codec.accumulate(enc, new Float64Array(len), 1)).toThrow(RangeError);
      const target = new Float64Array(15).fill(2);
      for (const w of [NaN, Infinity]) expect(() => codec.accumulate(enc, target, w)).toThrow(RangeError);
      expect(Array.from(target)).toEqual(new Array(15).fill(2));
      expect(() => codec.accumulate(enc, new Float32Array(15) as unknown as Float64Array, 1)).toThrow(RangeError);
    });

    describe('rejects malformed encoded tensors (target untouched)', () => {
      const shape = [40, 50];
      const base = encodeOne('w', shape, sampleDelta(shape, 21));
      const cases = [...genericMalformed(base), ...(opts.malformed ?? []).map((c) => ({ ...c, make: () => c.make(base) }))];
      for (const c of cases) {
        it(c.label, () => {
          const code = c.code ?? ErrorCodes.BAD_TENSOR;
          const bad = c.make(base);
          expectCode(() => codec.decode(bad), code);
          const target = new Float64Array(2000).fill(1);
          expectCode(() => codec.accumulate(bad, target, 1), code);
          expect(target.every((v) => v === 1)).toBe(true);
        });
      }
      it('the valid base tensor itself is accepted', () => {
        expect(codec.decode(base).data.length).toBe(2000);
      });
    });

    it('encode rejects a data length that does not match the shape (FEDMQ_BAD_TENSOR)', () => {
      expectCode(() => codec.encode([{ name: 'w', shape: [3, 5], data: new Float32Array(14) }], params, undefined, seededRng(1)), ErrorCodes.BAD_TENSOR);
    });

    it('encode rejects non-finite deltas (FEDMQ_NON_FINITE)', () => {
      for (const v of [NaN, Infinity, -Infinity]) {
        const data = sampleDelta([7], 1);
        data[3] = v;
        expectCode(() => codec.encode([{ name: 'w', shape: [7], data }], params, undefined, seededRng(1)), ErrorCodes.NON_FINITE);
      }
    });

    for (const p of opts.badParams ?? []) {
      it(`encode rejects params ${JSON.stringify(p)} (FEDMQ_BAD_CONFIG)`, () => {
        expectCode(() => codec.encode([{ name: 'w', shape: [7], data: sampleDelta([7], 1) }], { ...params, ...p }, undefined, seededRng(1)), ErrorCodes.BAD_CONFIG);
      });
    }
  });
}

/** Result of {@link errorFeedbackRounds}. */
export interface FeedbackRun {
  /** ‖Σ decoded − Σ delta‖₂ / ‖Σ delta‖₂ after the last round. */
  relError: number;
  /** ‖residual‖₂ after each round (0 without state). */
  residualNorms: number[];
  /** max_i |Σ decoded + residual − Σ delta| after the last round (bookkeeping check). */
  ledgerError: number;
  /** ‖Σ delta‖₂ after the last round. */
  cumNorm: number;
}

/**
 * Encodes `rounds` deltas (a fixed direction plus noise, like successive local updates) of one
 * tensor of `n` values, with (`useState`) or without error feedback, and compares the sum of what
 * the coordinator decoded with the sum of the true deltas.
 */
export function errorFeedbackRounds(codec: UpdateCodec, params: CodecParams, n: number, rounds: number, useState: boolean): FeedbackRun {
  const mean = sampleDelta([n], 1000, 0.01);
  const state = useState ? {} : undefined;
  const rng = seededRng(77);
  const cumSent = new Float64Array(n);
  const cumDelta = new Float64Array(n);
  const residualNorms: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const noise = sampleDelta([n], 2000 + r, 0.01);
    const delta = Float32Array.from(mean, (m, i) => m + noise[i]);
    for (let i = 0; i < n; i++) cumDelta[i] += delta[i];
    const [t] = codec.encode([{ name: 'w', shape: [n], data: delta }], params, state, rng);
    codec.accumulate(viaMsgpack([t], r % 4)[0], cumSent, 1);
    const res = (state as { residual?: Map<string, Float32Array> } | undefined)?.residual?.get('w');
    residualNorms.push(res ? Math.hypot(...res) : 0);
  }
  const res = (state as { residual?: Map<string, Float32Array> } | undefined)?.residual?.get('w') ?? new Float32Array(n);
  let num = 0;
  let den = 0;
  let ledgerError = 0;
  for (let i = 0; i < n; i++) {
    num += (cumSent[i] - cumDelta[i]) ** 2;
    den += cumDelta[i] ** 2;
    ledgerError = Math.max(ledgerError, Math.abs(cumSent[i] + res[i] - cumDelta[i]));
  }
  return { relError: Math.sqrt(num / den), residualNorms, ledgerError, cumNorm: Math.sqrt(den) };
}
