import { describe, expect, it } from 'vitest';
import { seededRng } from '@fedmq/protocol';
import { ErrorCodes } from '@fedmq/protocol';
import { ATTACKS, attackDelta, flipLabels, pickMalicious } from './attacks.ts';

const delta = [{ name: 'w', shape: [2, 3], data: new Float32Array([1, -2, 0.5, 0, 3, -0.25]) }];
const ids = Array.from({ length: 10 }, (_, i) => `node-00${i}`);

describe('simulated attacks', () => {
  it('picks round(fraction·n) malicious nodes, reproducibly for a seed', () => {
    expect(pickMalicious(ids, 0.2, 42).size).toBe(2);
    expect(pickMalicious(ids, 0.3, 42).size).toBe(3);
    expect([...pickMalicious(ids, 0.3, 42)]).toEqual([...pickMalicious(ids, 0.3, 42)]);
    expect(pickMalicious(ids, 0, 42).size).toBe(0);
    expect(() => pickMalicious(ids, 1, 42)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });

  it('sign-flip negates and scale multiplies, exactly, keeping names and shapes', () => {
    const flipped = attackDelta('sign-flip', delta, Math.random);
    expect(Array.from(flipped[0].data)).toEqual([-1, 2, -0.5, -0, -3, 0.25]);
    expect(flipped[0]).toMatchObject({ name: 'w', shape: [2, 3] });
    expect(Array.from(attackDelta('scale', delta, Math.random, { lambda: 4 })[0].data)).toEqual([4, -8, 2, 0, 12, -1]);
    expect(Array.from(delta[0].data)).toEqual([1, -2, 0.5, 0, 3, -0.25]); // the honest delta is untouched
  });

  it('gaussian sends noise of the asked spread, independent of the delta', () => {
    const big = [{ name: 'w', shape: [20_000], data: new Float32Array(20_000).fill(5) }];
    const noise = attackDelta('gaussian', big, seededRng(3), { sigma: 2 })[0].data;
    const mean = noise.reduce((a, b) => a + b, 0) / noise.length;
    const sd = Math.sqrt(noise.reduce((a, b) => a + (b - mean) ** 2, 0) / noise.length);
    expect(Math.abs(mean)).toBeLessThan(0.05);
    expect(sd).toBeGreaterThan(1.95);
    expect(sd).toBeLessThan(2.05);
  });

  it('label-flip poisons the labels, not the update', () => {
    const data = { x: new Float32Array(3), y: new Int32Array([0, 3, 9]), featureShape: [1], numClasses: 10, numExamples: 3 };
    expect(Array.from(flipLabels(data).y)).toEqual([9, 6, 0]);
    expect(Array.from(data.y)).toEqual([0, 3, 9]);
    expect(Array.from(attackDelta('label-flip', delta, Math.random)[0].data)).toEqual(Array.from(delta[0].data));
  });

  it('alie is offered but needs the colluders (alie.ts), not attackDelta', () => {
    expect(ATTACKS).toContain('alie');
    expect(() => attackDelta('alie', delta, Math.random)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });
});
