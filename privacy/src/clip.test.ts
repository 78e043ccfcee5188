import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import { CLIP_MARGIN, clipL2 } from './clip.ts';
import { rationalFromNumber } from './discrete-gaussian.ts';
import { fillGaussian } from './noise.ts';
import { seededTestRandom } from './testing.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

/**
 * Decides √(Σ y_i²) ≤ C exactly, in integers: every float32 is a multiple of 2^-149, so
 * y_i = k_i·2^-149 with k_i = y_i·2^149 an exact integer (a power-of-two scaling of a float32
 * never rounds in float64 below 2^1024), and C = num/den exactly; the test is
 * Σ k_i² · den² ≤ num² · 2^298.
 */
function normAtMostExact(tensors: { data: Float32Array }[], c: number): boolean {
  let s = 0n;
  for (const { data } of tensors) {
    for (const v of data) {
      const k = BigInt(v * 2 ** 149);
      s += k * k;
    }
  }
  const { num, den } = rationalFromNumber(c);
  return s * den * den <= num * num * 2n ** 298n;
}

function norm64(tensors: { data: Float32Array }[]): number {
  let s = 0;
  for (const { data } of tensors) for (const v of data) s += v * v;
  return Math.sqrt(s);
}

function randomDelta(seed: string, sizes: number[], scale: number): { data: Float32Array }[] {
  const rng = seededTestRandom(seed);
  return sizes.map((n) => {
    const z = fillGaussian(new Float64Array(n), rng);
    return { data: Float32Array.from(z, (v) => v * scale) };
  });
}

describe('clipL2: the whole delta to L2 norm ≤ C, in place', () => {
  it('2,000 random deltas and clip norms: the exact norm of the float32 result is ≤ C, and ≥ C(1 − 2^-20)', () => {
    const rng = seededTestRandom('clip random');
    for (let trial = 0; trial < 2000; trial++) {
      const sizes = [1 + rng.nextInt(7), 1 + rng.nextInt(40)];
      const delta = randomDelta(`clip ${trial}`, sizes, 10 ** (rng.nextInt(13) - 6));
      const before = norm64(delta);
      const c = Math.fround(before * (0.05 + 0.9 * rng.nextDouble())); // always below the norm: clipping happens
      const res = clipL2(delta, c);
      expect(res.clipped).toBe(true);
      expect(normAtMostExact(delta, c)).toBe(true);
      expect(norm64(delta)).toBeGreaterThanOrEqual(c * (1 - 2 ** -20));
    }
  });

  it('is adversarial enough: the naive x·C/‖x‖ lands above C on some of those same vectors, clipL2 on none', () => {
    let naiveOver = 0;
    let oursOver = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const delta = randomDelta(`adv ${trial}`, [3 + (trial % 5)], 1);
      const c = 1;
      const naive = delta.map(({ data }) => ({ data: Float32Array.from(data) }));
      const s = c / norm64(naive);
      for (const { data } of naive) for (let i = 0; i < data.length; i++) data[i] *= s;
      if (!normAtMostExact(naive, c)) naiveOver++;
      clipL2(delta, c);
      if (!normAtMostExact(delta, c)) oursOver++;
    }
    expect(naiveOver).toBeGreaterThan(100); // float32 rounding overshoots C in a sizeable fraction of cases
    expect(oursOver).toBe(0);
  });

  it('the norm is over all tensors together: [3] and [4] with C = 1 become ≈ [0.6] and [0.8]', () => {
    const delta = [{ data: Float32Array.of(3) }, { data: Float32Array.of(4) }];
    const res = clipL2(delta, 1);
    expect(res.norm).toBe(5);
    expect(res.clipped).toBe(true);
    expect(res.scale).toBeCloseTo(0.2, 6);
    expect(delta[0].data[0]).toBeCloseTo(0.6, 6);
    expect(delta[1].data[0]).toBeCloseTo(0.8, 6);
    expect(normAtMostExact(delta, 1)).toBe(true);
  });

  it('a delta with norm ≤ C(1 − 2^-21) is untouched (bitwise), scale 1, not clipped; norm exactly C is shrunk by the margin', () => {
    const delta = randomDelta('small', [100, 7], 0.01);
    const copy = delta.map(({ data }) => Float32Array.from(data));
    const n = norm64(delta);
    const res = clipL2(delta, n * 1.001);
    expect(res).toEqual({ norm: n, scale: 1, clipped: false });
    delta.forEach(({ data }, t) => expect(Buffer.from(data.buffer).equals(Buffer.from(copy[t].buffer))).toBe(true));

    const exact = [{ data: Float32Array.of(3, 4) }];
    const r2 = clipL2(exact, 5);
    expect(r2.clipped).toBe(true);
    expect(r2.scale).toBeCloseTo(1 - CLIP_MARGIN, 15);
    expect(normAtMostExact(exact, 5)).toBe(true);
  });

  it('zeros and an empty delta: norm 0, untouched', () => {
    const zeros = [{ data: new Float32Array(1000) }];
    expect(clipL2(zeros, 1)).toEqual({ norm: 0, scale: 1, clipped: false });
    expect(zeros[0].data.every((v) => v === 0)).toBe(true);
    expect(clipL2([], 1)).toEqual({ norm: 0, scale: 1, clipped: false });
  });

  it('huge values (every element at the float32 maximum) clip without overflow', () => {
    const max = 3.4028234663852886e38;
    const delta = [{ data: new Float32Array(100_000).fill(max) }, { data: Float32Array.of(-max) }];
    const res = clipL2(delta, 1);
    expect(res.norm).toBeCloseTo(max * Math.sqrt(100_001), -30);
    expect(Number.isFinite(res.norm)).toBe(true);
    expect(normAtMostExact(delta, 1)).toBe(true);
    expect(norm64(delta)).toBeGreaterThan(1 - 2 ** -20);
  });

  it('one huge value among tiny ones, and a tiny C that makes results subnormal, stay ≤ C exactly', () => {
    const delta = [{ data: Float32Array.of(3e38, 1e-30, -2e-38, 1.4e-45, 7) }];
    clipL2(delta, 1e-3);
    expect(normAtMostExact(delta, 1e-3)).toBe(true);

    const rng = seededTestRandom('tiny');
    for (let trial = 0; trial < 200; trial++) {
      const d = randomDelta(`tiny ${trial}`, [50], 1e-20);
      const c = 2 ** -100 * (1 + rng.nextDouble()); // results near and below the float32 subnormal range
      clipL2(d, c);
      expect(normAtMostExact(d, c)).toBe(true);
    }
  });

  it('refuses NaN and ±Infinity with FEDMQ_NON_FINITE, leaving every tensor untouched', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const delta = [{ data: Float32Array.of(100, 200) }, { data: Float32Array.of(1, bad) }];
      let err: unknown;
      try {
        clipL2(delta, 1);
      } catch (e) {
        err = e;
      }
      expect(isFedmqError(err, ErrorCodes.NON_FINITE)).toBe(true);
      expect((err as { details: unknown }).details).toEqual({ tensor: 1, index: 1 });
      expect(Array.from(delta[0].data)).toEqual([100, 200]);
      expect(delta[1].data[0]).toBe(1);
    }
  });

  it('refuses a clip norm that is not a finite number ≥ 2^-100 (FEDMQ_BAD_CONFIG)', () => {
    for (const c of [0, -1, NaN, Infinity, 2 ** -101]) expect(code(() => clipL2([{ data: Float32Array.of(1) }], c))).toBe(ErrorCodes.BAD_CONFIG);
  });
});
