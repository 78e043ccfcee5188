import { describe, expect, it } from 'vitest';
import type { FederatedEval, PrivacyRecord, RoundMetrics, StageStatus } from '@fedmq/protocol';
import { eventRecord, formatDelta, formatEpsilon, formatFederated, formatPrivacy, jsonLine, plainLine, roundSummary, stageText } from './format.ts';
import { lineChart, visibleLength } from './chart.ts';

const J = 'mnist';
const fe: FederatedEval = {
  loss: 0.31, accuracy: 0.912, numExamples: 1200, nodes: 10, worstDecileAccuracy: 0.8, localBetterFraction: 0.3,
  accuracySpread: { min: 0.78, p10: 0.85, median: 0.92, p90: 0.96, max: 0.97 },
};
const round = (extra: Partial<RoundMetrics> = {}): RoundMetrics => ({
  v: 2, job: J, runId: 'run-1', round: 3, modelVersion: 4, accepted: true, mode: 'sync', selected: 10, reported: 10, failures: {}, trainLoss: 0.3382,
  testLoss: 0.3425, testAccuracy: 0.8895, federatedEval: fe, bytesDown: 3_190_300, bytesUp: 3_189_204, durationMs: 5351,
  phases: { trainMs: 4958, aggregateMs: 59, evalMs: 333 }, ts: 1_795_324_495_723, ...extra,
});
const privacy = (extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps: 3, epsilon: 2.3141, delta: 1e-5, maxEpsilon: null, ...extra,
});
const stage = (extra: Partial<StageStatus> = {}): StageStatus => ({
  v: 2, job: J, runId: 'run-1', round: 3, stage: 'fit', cohort: 10, online: 12, deadline: 1_000_042_000, ts: 1_000_000_000, ...extra,
});

describe('line formats', () => {
  it('writes the federated evaluation as accuracy and the nodes\' spread', () => {
    expect(formatFederated(fe)).toBe('0.912 (p10 0.850 … p90 0.960, worst decile 0.800)');
    expect(formatFederated(fe, { short: true })).toBe('0.912 (p10 0.850 … p90 0.960, worst 0.800)');
    expect(formatFederated(null)).toBe('-');
  });

  it('writes a round with test and federated accuracy, without a test set, failed, and async', () => {
    expect(roundSummary(round())).toBe(
      'round 3: 10/10 nodes, train loss 0.3382, test loss 0.3425, test acc 0.8895, fed acc 0.912 (p10 0.850 … p90 0.960, worst decile 0.800), up 3.2 MB, down 3.2 MB, 5.4s',
    );
    expect(roundSummary(round({ testLoss: null, testAccuracy: null }))).toBe(
      'round 3: 10/10 nodes, train loss 0.3382, fed acc 0.912 (p10 0.850 … p90 0.960, worst decile 0.800), up 3.2 MB, down 3.2 MB, 5.4s',
    );
    expect(roundSummary(round({ accepted: false, reported: 1, federatedEval: null, failures: { timeout: 9 } }))).toBe(
      'round 3 failed, retried: 1/10 nodes, train loss 0.3382, test loss 0.3425, test acc 0.8895, up 3.2 MB, down 3.2 MB, 5.4s, failures timeout=9',
    );
    expect(roundSummary(round({ mode: 'async', staleness: { mean: 1.25, max: 3 }, testLoss: null, testAccuracy: null, federatedEval: null }))).toBe(
      'step 3: 10/10 nodes, train loss 0.3382, staleness mean 1.25 max 3, up 3.2 MB, down 3.2 MB, 5.4s',
    );
    expect(plainLine({ type: 'round', job: J, metrics: round({ accepted: false }) })).toMatch(/^\[mnist\] round 3 failed, retried: /);
  });

  it('writes the privacy budget spent: ε with 3 significant digits, the budget when set, ∞ while unbounded, δ', () => {
    expect(formatEpsilon(2.3141)).toBe('2.31');
    expect(formatEpsilon(12.345)).toBe('12.3');
    expect(formatEpsilon(0.5)).toBe('0.5');
    expect(formatEpsilon(6.620769482191477)).toBe('6.62');
    expect(formatEpsilon(null)).toBe('∞');
    expect(formatDelta(1e-5)).toBe('1e-5');
    expect(formatDelta(1 / 60000)).toBe('1.67e-5');
    expect(formatPrivacy(privacy())).toBe('ε 2.31 (δ 1e-5)');
    expect(formatPrivacy(privacy({ maxEpsilon: 3 }))).toBe('ε 2.31/3 (δ 1e-5)');
    expect(formatPrivacy(privacy({ epsilon: null, maxEpsilon: 8 }))).toBe('ε ∞/8 (δ 1e-5)');
    expect(roundSummary(round({ privacy: privacy({ maxEpsilon: 3 }) }))).toBe(
      'round 3: 10/10 nodes, train loss 0.3382, test loss 0.3425, test acc 0.8895, fed acc 0.912 (p10 0.850 … p90 0.960, worst decile 0.800), ε 2.31/3 (δ 1e-5), up 3.2 MB, down 3.2 MB, 5.4s',
    );
    expect(plainLine({ type: 'round', job: J, metrics: round({ federatedEval: null, privacy: privacy({ epsilon: null }) }) })).toBe(
      '[mnist] round 3: 10/10 nodes, train loss 0.3382, test loss 0.3425, test acc 0.8895, ε ∞ (δ 1e-5), up 3.2 MB, down 3.2 MB, 5.4s',
    );
    // the JSON line carries the whole record
    expect(JSON.parse(jsonLine({ type: 'round', job: J, metrics: round({ privacy: privacy() }) })).privacy).toEqual(privacy());
  });

  it('writes nothing about privacy for a round without a privacy record', () => {
    const line = roundSummary(round());
    expect(line).toBe('round 3: 10/10 nodes, train loss 0.3382, test loss 0.3425, test acc 0.8895, fed acc 0.912 (p10 0.850 … p90 0.960, worst decile 0.800), up 3.2 MB, down 3.2 MB, 5.4s');
    expect(line).not.toMatch(/ε|δ/);
    expect(JSON.parse(jsonLine({ type: 'round', job: J, metrics: round() }))).not.toHaveProperty('privacy');
  });

  it('writes the stage with its cohort and the time to its deadline', () => {
    expect(stageText(stage(), 1_000_000_000)).toBe('round 3 · fit · cohort 10 · 12 online · deadline in 42 s');
    expect(stageText(stage(), 1_000_040_500)).toBe('round 3 · fit · cohort 10 · 12 online · deadline in 2 s');
    expect(stageText(stage(), 1_000_099_000)).toBe('round 3 · fit · cohort 10 · 12 online · deadline in 0 s');
    expect(stageText(stage({ deadline: 1_000_300_000 }), 1_000_000_000)).toBe('round 3 · fit · cohort 10 · 12 online · deadline in 5m00s');
    expect(stageText(stage({ stage: 'waiting', cohort: 0, deadline: undefined, online: 2 }), 0)).toBe('round 3 · waiting · 2 online');
    expect(stageText(stage({ stage: 'aggregate', deadline: undefined }), 0, 'async')).toBe('step 3 · aggregate · cohort 10 · 12 online');
    // plain lines count the deadline from the stage's own ts (the coordinator's clock)
    expect(plainLine({ type: 'stage', job: J, stage: stage(), previous: 'select' })).toBe('[mnist] round 3 · fit · cohort 10 · 12 online · deadline in 42 s');
    expect(plainLine({ type: 'stage', job: J, stage: null, previous: 'evaluate' })).toBe('[mnist] stage cleared');
  });

  it('prints the v2 fields as JSON lines: the whole RoundMetrics and the StageStatus, without v', () => {
    const r = JSON.parse(jsonLine({ type: 'round', job: J, metrics: round({ staleness: { mean: 1, max: 2 } }) }));
    expect(r).toMatchObject({ event: 'round', job: J, round: 3, accepted: true, mode: 'sync', federatedEval: fe, staleness: { mean: 1, max: 2 }, testAccuracy: 0.8895 });
    expect(r).not.toHaveProperty('v');
    expect(Object.keys(r).slice(0, 4)).toEqual(['event', 'job', 'runId', 'round']);
    expect(eventRecord({ type: 'stage', job: J, stage: stage(), previous: 'select' })).toEqual({
      event: 'stage', job: J, runId: 'run-1', round: 3, stage: 'fit', cohort: 10, online: 12, deadline: 1_000_042_000, ts: 1_000_000_000, previous: 'select',
    });
    expect(eventRecord({ type: 'stage', job: J, stage: stage({ stage: 'waiting' }) })).toMatchObject({ stage: 'waiting', previous: null });
    expect(eventRecord({ type: 'stage', job: J, stage: null, previous: 'evaluate' })).toEqual({ event: 'stage', job: J, cleared: true, previous: 'evaluate' });
    expect(eventRecord({
      type: 'coordinator', job: J, status: { v: 2, job: J, runId: 'run-1', state: 'running', mode: 'async', round: 0, rounds: 5, config: { a: 1 }, ts: 1 },
    })).toEqual({ event: 'coordinator', job: J, runId: 'run-1', state: 'running', mode: 'async', round: 0, rounds: 5, ts: 1, previous: null });
  });
});

describe('lineChart', () => {
  it('plots several aligned series (gaps interpolated, empty series left out) in colour, within the width', () => {
    const test = [0.7, 0.8, null, 0.9];
    const fed = [null, 0.75, 0.85, 0.95];
    const lines = lineChart([test, fed, []], { width: 40, height: 6, colors: ['green', 'cyan', 'gray'] });
    expect(lines).toHaveLength(6);
    expect(lines.join('\n')).toContain('\x1b[32m'); // green
    expect(lines.join('\n')).toContain('\x1b[36m'); // cyan
    expect(lines.join('\n')).not.toContain('\x1b[90m'); // the empty series is not drawn
    for (const l of lines) expect(visibleLength(l)).toBeLessThanOrEqual(40);
    expect(lines[0]).toContain('0.950'); // the axis spans both series
    expect(lines.at(-1)).toContain('0.700');
  });

  it('keeps the single-series behaviour: nulls dropped, no colour, nothing to plot gives no lines', () => {
    const lines = lineChart([0.5, null, 0.9], { width: 30, height: 4 });
    expect(lines.join('')).not.toContain('\x1b[');
    expect(lines[0]).toContain('0.900');
    expect(lineChart([null, null], { width: 30, height: 4 })).toEqual([]);
    expect(lineChart([[], [null]], { width: 30, height: 4 })).toEqual([]);
  });
});
