import { describe, expect, it } from 'vitest';
import { renderReport, type ReportRound } from './report.ts';

const history: ReportRound[] = [
  { round: 2, selected: 3, reported: 2, failures: { timeout: 1 }, trainLoss: 0.61, testLoss: 0.55, testAccuracy: 0.8412, bytesDown: 2_400_000, bytesUp: 1_600_000, durationMs: 4200 },
  { round: 1, selected: 3, reported: 3, failures: {}, trainLoss: 1.2, testLoss: 0.95, testAccuracy: 0.738, bytesDown: 2_400_000, bytesUp: 2_400_000, durationMs: 5100 },
];

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
    expect(html).toContain('setHistory(charts, report.history)');
    // Nothing is fetched: no src/href attributes at all, no @import or url() in the styles.
    expect(html).not.toMatch(/<(script|link|img|iframe)[^>]*\s(src|href)\s*=/i);
    expect(html).not.toMatch(/@import|url\(\s*['"]?https?:/i);
    // Exactly the three script elements we put there (so the config value did not open one).
    expect(html.match(/<script[\s>]/g)).toHaveLength(3);
    expect(html.match(/<\/script>/g)).toHaveLength(3);
  });

  it('embeds the data as JSON, sorted by round, with the configuration and nodes', () => {
    const json = /<script type="application\/json" id="fedmq-report-data">(.*?)<\/script>/s.exec(html)![1];
    const data = JSON.parse(json);
    expect(data.history.map((r: ReportRound) => [r.round, r.testAccuracy])).toEqual([[1, 0.738], [2, 0.8412]]);
    expect(data.config.note).toBe('</script><img src=x>');
    expect(json).not.toContain('</script>');
    expect(data).toMatchObject({ job: 'demo', runId: 'run-abc', nodes: [{ nodeId: 'pi-1' }] });
  });

  it('shows the final numbers and tables as plain HTML', () => {
    expect(html).toContain('<title>fedmq report · demo · run-abc</title>');
    expect(html).toMatch(/id="stat-accuracy" class="value big">84\.12 %</);
    expect(html).toMatch(/id="stat-best" class="value big">84\.12 % \(round 2\)</);
    expect(html).toMatch(/id="stat-failures" class="value big">1</);
    expect(html).toContain('<td>timeout: 1</td>');
    expect(html).toContain('<th scope="row" class="mono">strategy.fractionFit</th><td class="mono">1</td>');
    expect(html).toContain('<td class="mono">&lt;/script&gt;&lt;img src=x&gt;</td>');
    expect(html).toContain('data-node-id="pi-1"');
    expect(html).toContain('2026-11-22T12:00:00.000Z');
  });

  it('renders an empty run', () => {
    const empty = renderReport({ job: 'j', runId: 'r', config: {}, history: [] });
    expect(empty).toContain('no round completed');
    expect(empty).not.toContain('id="nodes"');
  });
});
