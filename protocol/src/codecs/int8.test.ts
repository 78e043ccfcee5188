import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.ts';
import { runCodecSuite, sampleDelta, type MalformedCase } from './codec-suite.ts';
import { int8Codec } from './int8.ts';
import { seededRng } from './rng.ts';
import type { CodecParams, EncodedTensor } from './types.ts';

const minus128: MalformedCase = {
  label: 'int8 value −128',
  make: (t) => {
    const b = Uint8Array.from(t.data as Uint8Array);
    b[10] = 0x80;
    return { ...t, data: b };
  },
};
const badParams: CodecParams[] = [{ blockSize: -1 }, { blockSize: 1.5 }, { rounding: 'up' as 'nearest' }];

runCodecSuite(int8Codec, { params: { blockSize: 256 }, accuracy: 'bounded', malformed: [minus128], badParams });
runCodecSuite(int8Codec, { label: 'per-tensor scale, nearest', params: { blockSize: 0, rounding: 'nearest' }, accuracy: 'bounded', malformed: [minus128] });
runCodecSuite(int8Codec, { label: 'blockSize 7', params: { blockSize: 7 }, accuracy: 'bounded' });

function scalesOf(t: EncodedTensor): Float32Array {
  const b = Uint8Array.from(t.scales as Uint8Array);
  return new Float32Array(b.buffer);
}

function encode(x: Float32Array, params: CodecParams, seed = 1): EncodedTensor {
  return int8Codec.encode([{ name: 'w', shape: [x.length], data: x }], params, undefined, seededRng(seed))[0];
}

describe('int8 codec', () => {
  const x = sampleDelta([5000], 17);

  it('wire layout: blockSize, ceil(n/blockSize) float32 scales, n int8 values', () => {
    for (const [bs, nb] of [[256, 20], [0, 1], [7, 715], [5000, 1], [10_000, 1]]) {
      const t = encode(x, { blockSize: bs });
      expect(t.blockSize).toBe(bs);
      expect((t.scales as Uint8Array).byteLength).toBe(nb * 4);
      expect((t.data as Uint8Array).byteLength).toBe(5000);
    }
    expect(encode(new Float32Array(0), {}).scales).toHaveLength(0);
  });

  it('scale per block is the smallest float32 s with max|x|/s ≤ 127, so |q| reaches 127 in every non-zero block', () => {
    const t = encode(x, { blockSize: 256 });
    const s = scalesOf(t);
    const q = new Int8Array(Uint8Array.from(t.data as Uint8Array).buffer);
    for (let b = 0; b < s.length; b++) {
      const block = x.subarray(b * 256, (b + 1) * 256);
      const max = Math.max(...Array.from(block, Math.abs));
      expect(max / s[b]).toBeLessThanOrEqual(127);
      expect(max / Math.fround(s[b] * (1 - 2 ** -23))).toBeGreaterThan(127);
      expect(Math.max(...Array.from(q.subarray(b * 256, (b + 1) * 256), Math.abs))).toBe(127);
    }
  });

  it("rounding 'nearest': every value within half a step, |x − y| ≤ s/2 (+ float32 rounding of y)", () => {
    for (const bs of [256, 0, 1, 33]) {
      const t = encode(x, { blockSize: bs, rounding: 'nearest' });
      const s = scalesOf(t);
      const y = int8Codec.decode(t).data;
      const size = bs === 0 ? x.length : bs;
      let worst = 0;
      for (let i = 0; i < x.length; i++) {
        const step = s[Math.floor(i / size)];
        const err = Math.abs(x[i] - y[i]) - Math.abs(y[i]) * 2 ** -24;
        expect(err).toBeLessThanOrEqual(step / 2);
        if (step > 0) worst = Math.max(worst, err / step);
      }
      if (bs !== 1) expect(worst).toBeGreaterThan(0.45); // the bound is attained, not loose
    }
  });

  it("rounding 'stochastic' (default): every value within one step, |x − y| < s", () => {
    const t = encode(x, { blockSize: 64 });
    const s = scalesOf(t);
    const y = int8Codec.decode(t).data;
    let aboveHalf = 0;
    for (let i = 0; i < x.length; i++) {
      const step = s[Math.floor(i / 64)];
      const err = Math.abs(x[i] - y[i]) - Math.abs(y[i]) * 2 ** -24;
      expect(err).toBeLessThan(step);
      if (err > step / 2) aboveHalf++;
    }
    expect(aboveHalf).toBeGreaterThan(0); // stochastic rounding does exceed half a step sometimes
  });

  it('stochastic rounding is unbiased: the mean of 2,000 decodings is within 5σ of x; nearest is not', () => {
    // One block, s fixed by the value 127·0.01; the others sit at fractional positions between two steps.
    const s0 = 0.01;
    const vals = Float32Array.from({ length: 64 }, (_, i) => (i === 0 ? 127 * s0 : ((i % 50) - 25 + 0.1 + 0.8 * ((i * 0.6180339887) % 1)) * s0));
    const runs = 2000;
    const rng = seededRng(123);
    const sum = new Float64Array(vals.length);
    let step = 0;
    for (let r = 0; r < runs; r++) {
      const t = int8Codec.encode([{ name: 'w', shape: [vals.length], data: vals }], { blockSize: 0 }, undefined, rng)[0];
      step = scalesOf(t)[0];
      int8Codec.accumulate(t, sum, 1 / runs);
    }
    const sigma = step / 2 / Math.sqrt(runs); // std of q·s is ≤ s/2 per draw
    let meanBias = 0;
    for (let i = 0; i < vals.length; i++) {
      expect(Math.abs(sum[i] - vals[i])).toBeLessThan(5 * sigma);
      meanBias += (sum[i] - vals[i]) / vals.length;
    }
    expect(Math.abs(meanBias)).toBeLessThan((5 * sigma) / Math.sqrt(vals.length));
    // Deterministic rounding is biased by up to s/2 per coordinate: the test above would catch it.
    const near = int8Codec.decode(encode(vals, { blockSize: 0, rounding: 'nearest' })).data;
    const maxNearBias = Math.max(...Array.from(vals, (v, i) => Math.abs(near[i] - v)));
    expect(maxNearBias).toBeGreaterThan(20 * sigma);
  });

  it('all-zero blocks get scale 0 and decode to zeros; tiny (subnormal) values keep the bound', () => {
    const z = new Float32Array(600);
    z.fill(3e-41, 300, 310);
    z[305] = -1.4e-45;
    const t = encode(z, { blockSize: 256, rounding: 'nearest' });
    expect(Array.from(scalesOf(t).subarray(0, 1))).toEqual([0]);
    const y = int8Codec.decode(t).data;
    const bound = int8Codec.errorBound!(t, { rounding: 'nearest' });
    for (let i = 0; i < z.length; i++) expect(Math.abs(z[i] - y[i])).toBeLessThanOrEqual(bound[i]);
    expect(Array.from(y.subarray(0, 256)).every((v) => v === 0)).toBe(true);
  });

  it('errorBound is s (stochastic) or s/2 (nearest) per block', () => {
    const t = encode(x, { blockSize: 1000 });
    const s = scalesOf(t);
    const b = int8Codec.errorBound!(t);
    const h = int8Codec.errorBound!(t, { rounding: 'nearest' });
    for (let i = 0; i < 5000; i += 999) {
      expect(b[i]).toBe(s[Math.floor(i / 1000)]);
      expect(h[i]).toBe(s[Math.floor(i / 1000)] / 2);
    }
  });

  it('rejects a scale block count that does not match blockSize', () => {
    const t = encode(x, { blockSize: 256 });
    expect(() => int8Codec.decode({ ...t, blockSize: 128 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TENSOR }));
    expect(() => int8Codec.decode({ ...t, blockSize: 0 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TENSOR }));
  });
});
