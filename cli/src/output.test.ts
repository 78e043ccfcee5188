import { describe, expect, it } from 'vitest';
import type { PrivacyRecord, RoundRecord } from '@fedmq/protocol';
import { privacyCell, roundHeader, roundLine, secaggCell } from './output.ts';

const record = (extra: Partial<RoundRecord> = {}): RoundRecord => ({
  round: 1, modelVersion: 2, accepted: true, mode: 'sync', selected: 10, reported: 10, failures: {}, trainLoss: 0.4498, testLoss: 0.3, testAccuracy: 0.8492,
  federatedEval: null, bytesDown: 7_990_000, bytesUp: 7_970_000, durationMs: 5900, phases: { trainMs: 5000, aggregateMs: 100, evalMs: 800 }, ...extra,
});
const privacy = (extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps: 1, epsilon: 2.3141, delta: 1e-5, maxEpsilon: 3, ...extra,
});
// the round line of README.md's default run
const PLAIN = '    1    10/10      0.4498    0.8492     7.99 MB     7.97 MB      5.9';

describe('round table lines', () => {
  it('appends the privacy budget spent after the round: ε with 3 significant digits, the budget when set, ∞ while unbounded', () => {
    expect(roundLine(record({ privacy: privacy() }))).toBe(`${PLAIN}  ε 2.31/3 (δ 1e-5)`);
    expect(roundLine(record({ privacy: privacy({ epsilon: 6.620769482191477, maxEpsilon: null }) }))).toBe(`${PLAIN}  ε 6.62 (δ 1e-5)`);
    expect(roundLine(record({ privacy: privacy({ epsilon: null, delta: 1 / 60000 }) }))).toBe(`${PLAIN}  ε ∞/3 (δ 1.67e-5)`);
    expect(privacyCell(privacy({ epsilon: 12.345, maxEpsilon: 20 }))).toBe('ε 12.3/20 (δ 1e-5)');
    // after the federated columns too
    const fed = roundLine(record({ privacy: privacy() }), { federated: true });
    expect(fed).toBe(`${roundLine(record(), { federated: true })}  ε 2.31/3 (δ 1e-5)`);
  });

  it('writes the line and header as before for a round without a privacy record', () => {
    expect(roundLine(record())).toBe(PLAIN);
    expect(roundLine(record({ accepted: false, reported: 1, trainLoss: null }))).toBe('    1    1/10!           -    0.8492     7.99 MB     7.97 MB      5.9');
    expect(roundLine(record())).not.toMatch(/ε|δ/);
    expect(roundHeader()).toBe('round    nodes  train loss  test acc  bytes down    bytes up  seconds');
  });

  it('appends a secure-aggregation round\'s stages: answered/cohort and seconds each, then recovered nodes or the abort code', () => {
    const stages = [
      { stage: 'advertise-keys' as const, cohort: 20, answered: 20, durationMs: 162 }, { stage: 'share-keys' as const, cohort: 20, answered: 19, durationMs: 268 },
      { stage: 'fit' as const, cohort: 19, answered: 17, durationMs: 2919 }, { stage: 'unmask' as const, cohort: 17, answered: 17, durationMs: 140 },
      { stage: 'aggregate' as const, cohort: 17, answered: 17, durationMs: 133 },
    ];
    const secagg = { graph: 'harary' as const, neighbours: 19, threshold: 10, bits: 21, dims: 199_211, recovered: 2, aborted: null, stages };
    const cell = 'secagg k=19 t=10 b=21: keys 20/20 0.2s, shares 19/20 0.3s, masked 17/19 2.9s, unmask 17/17 0.1s, sum 17/17 0.1s, recovered 2';
    expect(secaggCell(secagg)).toBe(cell);
    expect(roundLine(record({ trainLoss: null, secagg }))).toBe(`    1    10/10           -    0.8492     7.99 MB     7.97 MB      5.9  ${cell}`);
    expect(secaggCell({ ...secagg, recovered: 0, aborted: 'FEDMQ_SECAGG_ABORT', stages: stages.slice(0, 2) })).toBe('secagg k=19 t=10 b=21: keys 20/20 0.2s, shares 19/20 0.3s — aborted FEDMQ_SECAGG_ABORT');
  });
});
