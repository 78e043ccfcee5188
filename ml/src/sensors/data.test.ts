import { describe, expect, it } from 'vitest';
import { loadTelosb, median, robustStats, slidingWindows } from './data.ts';
import type { TelosbReading } from './data.ts';

describe('slidingWindows', () => {
  it('builds n - W + 1 interleaved stride-1 windows', () => {
    const { x, numWindows } = slidingWindows([[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]], 3);
    expect(numWindows).toBe(3);
    expect(Array.from(x)).toEqual([1, 10, 2, 20, 3, 30, 2, 20, 3, 30, 4, 40, 3, 30, 4, 40, 5, 50]);
  });
  it('returns no window for a series shorter than the window and rejects bad input', () => {
    expect(slidingWindows([[1, 2]], 3).numWindows).toBe(0);
    expect(() => slidingWindows([[1, 2], [1]], 1)).toThrow(RangeError);
    expect(() => slidingWindows([[1, 2]], 0)).toThrow(RangeError);
  });
});

describe('robustStats', () => {
  it('is median and 1.4826·MAD, unaffected by one huge outlier', () => {
    expect(median([3, 1, 2, 4])).toBe(2.5);
    const s = robustStats([1, 2, 3, 4, 1000]);
    expect(s.center).toBe(3);
    expect(s.scale).toBeCloseTo(1.4826 * 1, 6);
    expect(robustStats([5, 5, 5]).scale).toBe(1); // degenerate: falls back to 1
  });
});

describe('loadTelosb', () => {
  it('windows each synthetic mote separately, in reading order, never across motes', () => {
    const readings: TelosbReading[] = [];
    // Mote 7 listed first and out of order; mote 3 has a distinct signal.
    for (let r = 12; r >= 1; r--) {
      readings.push({ reading: r, mote_id: 7, indoor: 0, temperature: 20 + r, humidity: 50 - r, label: r === 6 ? 1 : 0 });
    }
    for (let r = 1; r <= 8; r++) {
      readings.push({ reading: r, mote_id: 3, indoor: 1, temperature: 30 + r * r, humidity: 40, label: 0 });
    }
    const W = 4;
    const { motes } = loadTelosb({ readings, windowLength: W, clip: 0 });
    expect(motes.map((m) => m.moteId)).toEqual([3, 7]);
    const [m3, m7] = motes;
    expect(m3.indoor).toBe(true);
    expect(m7.indoor).toBe(false);
    expect(m3.dataset.numExamples).toBe(8 - W + 1);
    expect(m7.dataset.numExamples).toBe(12 - W + 1);
    for (const m of motes) {
      expect(m.dataset.featureShape).toEqual([2 * W]);
      expect(m.dataset.x.length).toBe(m.dataset.numExamples * 2 * W);
      expect(m.dataset.y.length).toBe(m.dataset.numExamples);
      // Every window value must be this mote's own reading, normalised with its own stats.
      const { temperature: ts, humidity: hs } = m.normalization;
      for (let w = 0; w < m.dataset.numExamples; w++) {
        for (let t = 0; t < W; t++) {
          const r = w + t;
          expect(m.dataset.x[(w * W + t) * 2]).toBeCloseTo((m.temperature[r] - ts.center) / ts.scale, 5);
          expect(m.dataset.x[(w * W + t) * 2 + 1]).toBeCloseTo((m.humidity[r] - hs.center) / hs.scale, 5);
        }
      }
    }
    // Reading order restored for mote 7, and the label follows its reading.
    expect(Array.from(m7.temperature)).toEqual(Array.from({ length: 12 }, (_, i) => 21 + i));
    expect(m7.readingLabels[5]).toBe(1);
    // Window label = any labelled reading inside: windows 2..5 contain reading index 5.
    expect(Array.from(m7.dataset.y)).toEqual([0, 0, 1, 1, 1, 1, 0, 0, 0]);
  });

  it('loads the real TelosB data: 4 motes, expected sizes and event counts', () => {
    const { motes, windowLength } = loadTelosb();
    expect(windowLength).toBe(10);
    expect(motes.map((m) => m.moteId)).toEqual([1, 2, 3, 4]);
    expect(motes.map((m) => m.numReadings)).toEqual([4417, 4417, 5039, 5041]);
    expect(motes.map((m) => m.indoor)).toEqual([true, true, false, false]);
    expect(motes.map((m) => m.readingLabels.reduce((a, b) => a + b, 0))).toEqual([117, 0, 0, 32]);
    for (const m of motes) {
      expect(m.dataset.numExamples).toBe(m.numReadings - 9);
      expect(m.dataset.featureShape).toEqual([20]);
      let maxAbs = 0;
      for (const v of m.dataset.x) maxAbs = Math.max(maxAbs, Math.abs(v));
      expect(maxAbs).toBeLessThanOrEqual(6); // default clip
    }
  });
});
