import { describe, expect, it } from 'vitest';
import type { FederatedEval, PrivacyRecord, RoundRecord } from '@fedmq/protocol';
import { renderReport } from './report.ts';

const fedEval = (accuracy: number): FederatedEval => ({
  loss: 0.4, accuracy, numExamples: 300, nodes: 3, worstDecileAccuracy: accuracy - 0.12, localBetterFraction: 0.5,
  accuracySpread: { min: accuracy - 0.15, p10: accuracy - 0.1, median: accuracy, p90: accuracy + 0.05, max: accuracy + 0.06 },
});
const record = (round: number, extra: Partial<RoundRecord> = {}): RoundRecord => ({
  round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 3, reported: 3, failures: {}, trainLoss: 1 / round, testLoss: 0.9 / round,
  testAccuracy: 0.7 + round / 100, federatedEval: null, bytesDown: 2_400_000, bytesUp: 2_400_000, durationMs: 5100,
  phases: { trainMs: 4000, aggregateMs: 100, evalMs: 1000 }, ...extra,
});
const privacy = (steps: number, epsilon: number | null, extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps, epsilon, delta: 1e-5, maxEpsilon: 3, ...extra,
});
/** The summary section (the stat cards) of a report. */
const summaryOf = (html: string) => /<section class="summary" id="summary">(.*?)<\/section>/s.exec(html)![1];
const history: RoundRecord[] = [
  record(2, { reported: 2, failures: { timeout: 1 }, trainLoss: 0.61, testLoss: 0.55, testAccuracy: 0.8412, bytesUp: 1_600_000, durationMs: 4200 }),
  record(1, { trainLoss: 1.2, testLoss: 0.95, testAccuracy: 0.738 }),
];
/** The cells of the round table's rows, by column label. */
function roundTable(html: string): Array<Record<string, string>> {
  const table = /<table class="table" id="rounds">(.*?)<\/table>/s.exec(html)![1];
  const labels = [...table.matchAll(/<th(?:\s[^>]*)?>(.*?)<\/th>/g)].map((m) => m[1]);
  const rows = [...table.matchAll(/<tr data-round="\d+"[^>]*>(.*?)<\/tr>/g)].map((m) => [...m[1].matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => c[1]));
  return rows.map((cells) => Object.fromEntries(labels.map((l, i) => [l, cells[i]])));
}
const dataOf = (html: string) => JSON.parse(/<script type="application\/json" id="fedmq-report-data">(.*?)<\/script>/s.exec(html)![1]);

describe('renderReport', () => {
  const html = renderReport({
    job: 'demo',
    runId: 'run-abc',
    config: { model: 'mnist-2nn', rounds: 2, strategy: { name: 'fedavg', fractionFit: 1 }, note: '</script><img src=x>' },
    history,
    nodes: [{ nodeId: 'pi-1', state: 'idle', numExamples: 600, device: { backend: 'wasm' }, lastRound: { round: 2, loss: 0.4583, trainMs: 2954 } }],
    generatedAt: Date.UTC(2026, 10, 22, 12, 0, 0),
  });

  it('is one self-contained page: Chart.js and the chart code inline, no external URL to load', () => {
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect(html).toContain('Chart.js v4');
    expect(html).toContain('function createCharts');
    expect(html).toContain('function roundTable');
    expect(html).toContain('setHistory(charts, report.history)');
    // Nothing is fetched: no src/href attributes at all, no @import or url() in the styles.
    expect(html).not.toMatch(/<(script|link|img|iframe)[^>]*\s(src|href)\s*=/i);
    expect(html).not.toMatch(/@import|url\(\s*['"]?https?:/i);
    // Exactly the three script elements we put there (so the config value did not open one).
    expect(html.match(/<script[\s>]/g)).toHaveLength(3);
    expect(html.match(/<\/script>/g)).toHaveLength(3);
  });

  it('embeds the data as JSON, sorted by round, with the configuration and nodes', () => {
    const data = dataOf(html);
    expect(data.history.map((r: RoundRecord) => [r.round, r.testAccuracy])).toEqual([[1, 0.738], [2, 0.8412]]);
    expect(data.config.note).toBe('</script><img src=x>');
    expect(/id="fedmq-report-data">(.*?)<\/script>/s.exec(html)![1]).not.toContain('</script>');
    expect(data).toMatchObject({ job: 'demo', runId: 'run-abc', nodes: [{ nodeId: 'pi-1' }] });
  });

  it('shows the final numbers and tables as plain HTML', () => {
    expect(html).toContain('<title>fedmq report · demo · run-abc</title>');
    expect(html).toMatch(/id="stat-accuracy" class="value big">84\.12 %</);
    expect(html).toMatch(/id="stat-best" class="value big">84\.12 % \(round 2\)</);
    expect(html).toMatch(/id="stat-failures" class="value big">1</);
    expect(html).toMatch(/id="stat-rounds" class="value big">2</);
    expect(html).toContain('<td>timeout: 1</td>');
    expect(html).toContain('<th scope="row" class="mono">strategy.fractionFit</th><td class="mono">1</td>');
    expect(html).toContain('<td class="mono">&lt;/script&gt;&lt;img src=x&gt;</td>');
    expect(html).toContain('data-node-id="pi-1"');
    expect(html).toContain('2026-11-22T12:00:00.000Z');
    // no federated evaluation in this run: no federated columns or numbers
    expect(roundTable(html)).toEqual([
      { round: '1', result: 'ok', nodes: '3/3', failures: '–', 'train loss': '1.2000', 'test loss': '0.9500', 'test acc': '73.80 %', 'bytes down': '2.40 MB', 'bytes up': '2.40 MB', time: '5.1 s' },
      { round: '2', result: 'ok', nodes: '2/3', failures: 'timeout: 1', 'train loss': '0.6100', 'test loss': '0.5500', 'test acc': '84.12 %', 'bytes down': '2.40 MB', 'bytes up': '1.60 MB', time: '4.2 s' },
    ]);
    expect(html).not.toContain('stat-fed-accuracy');
  });

  it('shows federated accuracy and the nodes\' spread next to the test accuracy', () => {
    const h = renderReport({ job: 'j', runId: 'r', config: {}, history: [record(1, { federatedEval: fedEval(0.8) }), record(2, { federatedEval: fedEval(0.9) })] });
    const rows = roundTable(h);
    expect(rows.map((r) => [r['test acc'], r['fed acc'], r['fed p10 – p90'], r['worst decile'], r['local better']])).toEqual([
      ['71.00 %', '80.00 %', '70.00 % – 85.00 %', '68.00 %', '50 %'],
      ['72.00 %', '90.00 %', '80.00 % – 95.00 %', '78.00 %', '50 %'],
    ]);
    expect(h).toMatch(/id="stat-accuracy" class="value big">72\.00 %</);
    expect(h).toMatch(/id="stat-fed-accuracy" class="value big">90\.00 %</);
    expect(h).toMatch(/id="stat-fed-best" class="value big">90\.00 % \(round 2\)</);
    expect(h).toMatch(/id="stat-fed-spread" class="value big">80\.00 % – 95\.00 % \(78\.00 %\)</);
    expect(h).toContain('<figcaption>Test and federated accuracy per round</figcaption>');
  });

  it('renders a run without a central test set from the federated evaluation alone', () => {
    const h = renderReport({
      job: 'j', runId: 'r', config: {},
      history: [1, 2, 3].map((r) => record(r, { testLoss: null, testAccuracy: null, federatedEval: fedEval([0.8, 0.9, 1][r - 1]) })),
    });
    const rows = roundTable(h);
    expect(Object.keys(rows[0])).not.toContain('test acc');
    expect(Object.keys(rows[0])).not.toContain('test loss');
    expect(rows.map((r) => r['fed acc'])).toEqual(['80.00 %', '90.00 %', '100.00 %']);
    expect(h).not.toContain('id="stat-accuracy"');
    expect(h).toMatch(/id="stat-fed-accuracy" class="value big">100\.00 %</);
    expect(h).toMatch(/id="stat-fed-loss" class="value big">0\.4000</);
    expect(h).toContain('<figcaption>Federated accuracy per round</figcaption>');
    expect(dataOf(h).history[0]).toMatchObject({ testAccuracy: null, federatedEval: { accuracy: 0.8 } });
  });

  it('marks failed rounds (accepted: false) as failed, retried and leaves them out of the final numbers', () => {
    const h = renderReport({
      job: 'j', runId: 'r', config: {},
      history: [record(1), record(2, { accepted: false, reported: 0, trainLoss: null, testAccuracy: 0.99, failures: { timeout: 3 } }), record(3)],
    });
    const rows = roundTable(h);
    expect(rows.map((r) => [r.round, r.result, r.failures])).toEqual([['1', 'ok', '–'], ['2', 'failed, retried', 'timeout: 3'], ['3', 'ok', '–']]);
    expect(h).toContain('<tr data-round="2" class="failed">');
    expect(h).not.toContain('<tr data-round="3" class="failed">');
    expect(h).toMatch(/id="stat-rounds" class="value big">2 \(\+1 failed, retried\)</);
    expect(h).toMatch(/id="stat-best" class="value big">73\.00 % \(round 3\)</); // not the failed round's number
  });

  it('shows the privacy spent: the final ε of the budget with δ, mode, σ and the final C; ε per round', () => {
    const h = renderReport({
      job: 'j', runId: 'r', config: {},
      history: [
        record(1, { privacy: privacy(1, null, { clipNorm: 0.1 }) }),
        record(2, { accepted: false, reported: 0, trainLoss: null, privacy: privacy(2, 1.2, { clipNorm: 0.2 }) }),
        record(3, { privacy: privacy(3, 2.3141, { mode: 'local', noiseMultiplier: 0.8, clipNorm: 0.6182, nextClipNorm: 0.7 }) }),
      ],
    });
    const summary = summaryOf(h);
    expect(summary).toContain(
      '<span class="label">privacy spent <span style="text-transform: none">ε </span>(<span style="text-transform: none">δ = 1e-5</span>)</span>' +
        '<span id="stat-privacy" class="value big">2.31 / 3</span><span id="stat-privacy-detail" class="muted">local · σ 0.8 · C 0.618</span>',
    );
    const rows = roundTable(h);
    expect(rows.map((r) => [r.round, r.ε])).toEqual([['1', '∞'], ['2', '1.2'], ['3', '2.31']]);
    expect(Object.keys(rows[0]).slice(-4)).toEqual(['ε', 'bytes down', 'bytes up', 'time']);
    expect(h).toContain('<th class="num" data-col="epsilon" style="text-transform: none">ε</th>');
    // without a budget the value is ε alone
    const noBudget = renderReport({ job: 'j', runId: 'r', config: {}, history: [record(1, { privacy: privacy(1, 0.25, { maxEpsilon: null }) })] });
    expect(noBudget).toMatch(/id="stat-privacy" class="value big">0\.25</);
  });

  it('shows nothing about privacy for a run without it, and the same numbers and columns as before', () => {
    const summary = summaryOf(html);
    expect(summary).not.toContain('privacy');
    expect(summary).not.toMatch(/ε|δ/);
    expect([...summary.matchAll(/id="(stat-[a-z-]+)"/g)].map((m) => m[1])).toEqual([
      'stat-rounds', 'stat-accuracy', 'stat-best', 'stat-loss', 'stat-train-loss', 'stat-bytes', 'stat-time', 'stat-failures',
    ]);
    expect(summary).not.toContain('-detail');
    expect(html).not.toContain('data-col="epsilon"');
    expect(Object.keys(roundTable(html)[0])).not.toContain('ε');
  });

  it('renders an empty run', () => {
    const empty = renderReport({ job: 'j', runId: 'r', config: {}, history: [] });
    expect(empty).toContain('no round completed');
    expect(empty).not.toContain('id="nodes"');
    expect(empty).toMatch(/id="stat-accuracy" class="value big">–</);
  });
});
