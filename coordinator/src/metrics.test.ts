/**
 * coordinatorMetrics fed 'round' events by hand (a stand-in for the Coordinator: the metrics read
 * only its `job`, its events and `onlineNodes()`); the run over MQTT is in
 * simulator/src/metrics.e2e.test.ts.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { PrivacyRecord, RoundRecord } from '@fedmq/protocol';
import type { Coordinator } from './coordinator.ts';
import { coordinatorMetrics } from './metrics.ts';

const record = (round: number, extra: Partial<RoundRecord> = {}): RoundRecord => ({
  round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 4, reported: 4, failures: {}, trainLoss: 0.5, testLoss: 0.4, testAccuracy: 0.9,
  federatedEval: null, bytesDown: 1000, bytesUp: 2000, durationMs: 1500, phases: { trainMs: 1000, aggregateMs: 100, evalMs: 400 }, ...extra,
});
const privacy = (extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps: 1, epsilon: 2.3141, delta: 1e-5, maxEpsilon: 3, ...extra,
});

function fakeCoordinator() {
  return Object.assign(new EventEmitter(), { job: 'dp-job', onlineNodes: () => ['a', 'b'] });
}

/** The samples of the `fedmq_*` metrics, `name{labels}` → value text, in output order. */
function samples(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(fedmq_\S+) (\S+)$/.exec(line);
    if (m) out.set(m[1], m[2]);
  }
  return out;
}

describe('coordinatorMetrics', () => {
  it('exposes ε, δ, σ, C and the budget of the latest round with a privacy record', async () => {
    const c = fakeCoordinator();
    const metrics = coordinatorMetrics(c as unknown as Coordinator);
    c.emit('round', record(1, { privacy: privacy({ epsilon: 1.2 }) }));
    c.emit('round', record(2, { privacy: privacy({ steps: 2, clipNorm: 0.7, nextClipNorm: 0.8 }) }));
    const text = await metrics.text();
    const s = samples(text);
    expect(s.get('fedmq_privacy_epsilon{job="dp-job"}')).toBe('2.3141');
    expect(s.get('fedmq_privacy_delta{job="dp-job"}')).toBe('0.00001');
    expect(s.get('fedmq_privacy_noise_multiplier{job="dp-job"}')).toBe('1.1');
    expect(s.get('fedmq_privacy_clip_norm{job="dp-job"}')).toBe('0.7');
    expect(s.get('fedmq_privacy_max_epsilon{job="dp-job"}')).toBe('3');
    expect(text).toContain('# TYPE fedmq_privacy_epsilon gauge');
    expect(text).toMatch(/^# HELP fedmq_privacy_epsilon .*dimensionless/m);
    expect(text).toMatch(/^# HELP fedmq_privacy_clip_norm .*L2 norm/m);
    expect(s.get('fedmq_rounds_completed_total{job="dp-job"}')).toBe('2');
  });

  it('writes +Inf while ε is unbounded (epsilon null) and leaves the budget out without one', async () => {
    const c = fakeCoordinator();
    const metrics = coordinatorMetrics(c as unknown as Coordinator);
    c.emit('round', record(1, { privacy: privacy({ epsilon: null, maxEpsilon: null }) }));
    const text = await metrics.text();
    const s = samples(text);
    expect(s.get('fedmq_privacy_epsilon{job="dp-job"}')).toBe('+Inf');
    expect(s.get('fedmq_privacy_delta{job="dp-job"}')).toBe('0.00001');
    expect(text).not.toContain('fedmq_privacy_max_epsilon');
  });

  it('has no privacy metric at all for rounds without a privacy record, and the same metrics as before', async () => {
    const c = fakeCoordinator();
    const metrics = coordinatorMetrics(c as unknown as Coordinator);
    c.emit('round', record(1));
    c.emit('round', record(2, { failures: { timeout: 1 } }));
    const text = await metrics.text();
    expect(text).not.toContain('privacy');
    const families = [...text.matchAll(/^# TYPE (fedmq_\S+) /gm)].map((m) => m[1]);
    expect(families).toEqual([
      'fedmq_rounds_completed_total', 'fedmq_current_round', 'fedmq_nodes_online', 'fedmq_updates_accepted_total', 'fedmq_updates_rejected_total',
      'fedmq_updates_missing_total', 'fedmq_bytes_in_total', 'fedmq_bytes_out_total', 'fedmq_round_duration_seconds', 'fedmq_test_accuracy',
      'fedmq_federated_accuracy', 'fedmq_federated_worst_decile_accuracy',
    ]);
    const s = samples(text);
    expect(s.get('fedmq_rounds_completed_total{job="dp-job"}')).toBe('2');
    expect(s.get('fedmq_test_accuracy{job="dp-job"}')).toBe('0.9');
    expect(s.get('fedmq_nodes_online{job="dp-job"}')).toBe('2');
    expect(s.get('fedmq_updates_missing_total{reason="timeout",job="dp-job"}')).toBe('1');
  });
});
