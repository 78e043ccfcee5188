import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@fedmq/protocol';
import { STRATEGY_NAMES, createStrategy } from './index.ts';

const base = { fractionFit: 1, minFitNodes: 5, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } };

describe('createStrategy', () => {
  it('builds every named strategy under its own name', () => {
    for (const name of STRATEGY_NAMES) {
      expect(createStrategy(name, base, { byzantine: 1, maxNorm: 1 }).name).toBe(name);
    }
  });

  it('refuses unknown names, missing required parameters and refused values with FEDMQ_BAD_CONFIG', () => {
    expect(() => createStrategy('fedsgd', base)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => createStrategy('krum', base)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => createStrategy('norm-bounding', base)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
    expect(() => createStrategy('krum', base, { byzantine: 2 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG })); // 5 < 2·2 + 3
    expect(() => createStrategy('trimmed-mean', base, { trimBeta: 0.5 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_CONFIG }));
  });

  it('passes the strategy its own parameters', () => {
    const prox = createStrategy('fedprox', base, { proximalMu: 0.3 });
    expect(prox.configureFit(1, ['a', 'b', 'c', 'd', 'e'], Math.random).config).toMatchObject({ proximalMu: 0.3 });
  });
});
