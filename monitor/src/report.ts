import { readFileSync } from 'node:fs';
import type { RoundRecord } from '@fedmq/protocol';
import { dashboardAssets } from './dashboard/assets.ts';
import { formatBytes, formatPercent, lastPrivacy, privacyTexts, roundTable } from './dashboard/charts.js';

/** A node as last seen (the fields of a NodeStatus, docs/protocol.md §3, all optional but `nodeId`). */
export interface ReportNode {
  nodeId: string;
  /** `idle`, `training`, `evaluating`, `uploading`, `offline`. */
  state?: string;
  /** When the node last published its status, ms since the epoch. */
  ts?: number;
  numExamples?: number;
  device?: { platform?: string; arch?: string; cores?: number; memoryMb?: number; backend?: string };
  /** Last fit task the node completed: its round, training loss and time (ms). */
  lastRound?: { round: number; loss: number; trainMs: number };
}

/** Input of {@link renderReport}. */
export interface ReportInput {
  job: string;
  runId: string;
  /** How the run was configured (flags/options); nested objects are shown with dotted keys. */
  config: Record<string, unknown>;
  /**
   * The run's rounds as the coordinator recorded them (`history.json`; RoundMetrics messages are
   * RoundRecords too), any order, shown sorted by round; failed rounds (`accepted: false`) included.
   */
  history: RoundRecord[];
  /** Nodes at the end of the run, if known. */
  nodes?: ReportNode[];
  /** When the report was written, ms since the epoch. Default: now. */
  generatedAt?: number;
}

const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Makes JavaScript source safe inside an inline `<script>` element. */
function inlineJs(js: string): string {
  return js.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

/** JSON for a `<script type="application/json">`: `<` escaped so no tag can close it. */
function inlineJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/**
 * Keeps what starts at a lowercase Greek letter, up to the next parenthesis, out of the labels'
 * uppercasing (an uppercase ε reads E, `1e-5` would read `1E-5`); `html` is escaped already.
 */
const keepGreek = (html: string) => html.replace(/[\u03b1-\u03c9][^()]*/g, (g) => `<span style="text-transform: none">${g}</span>`);
const num = (v: number | null | undefined, digits: number) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');
const pct = formatPercent;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Flattens nested plain objects to dotted keys; other values are shown as JSON (strings as they are). */
function flatten(obj: Record<string, unknown>, prefix = '', out: Array<[string, string]> = []): Array<[string, string]> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype) flatten(v as Record<string, unknown>, key, out);
    else out.push([key, typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v)]);
  }
  return out;
}

/**
 * Renders the report of one run as a self-contained HTML page: the run's configuration, its
 * final numbers (test accuracy when the job has a central test set, federated accuracy and the
 * nodes' spread when nodes evaluated), the dashboard's four charts (test and federated accuracy
 * with the nodes' p10 – p90 band; test, training and federated loss; bytes down/up;
 * participation — drawn by the same `charts.js` as the live dashboard), the round table (the
 * dashboard's columns, `roundTable` of charts.js; failed rounds marked "failed, retried", row
 * class `failed`) and, if given, the node table. A run with differential privacy (rounds with a
 * `privacy` record) also has the privacy spent: the last round's ε of the budget, labelled with
 * its δ, with the mode, σ and clip norm C (`#stat-privacy`, `#stat-privacy-detail`), and ε per
 * round in the round table.
 *
 * Everything is inline — Chart.js (read from `node_modules` now), the chart code, the styles and
 * the data as JSON (`<script type="application/json" id="fedmq-report-data">`) — so the file
 * opens offline, from disk, with no request to any server. The tables are plain HTML, readable
 * without JavaScript. About 240 kB plus the data.
 *
 * @returns the HTML text (UTF-8); write it to `runs/<run-id>/report.html`.
 * @throws `MODULE_NOT_FOUND` / `ENOENT` if `chart.js` or the dashboard files cannot be read.
 */
export function renderReport(input: ReportInput): string {
  const assets = dashboardAssets();
  const read = (path: string) => readFileSync(assets.get(path)!.file, 'utf8');
  const chartJs = read('/vendor/chart.umd.js');
  const chartsModule = read('/charts.js');
  const css = read('/style.css');

  const history = [...input.history].sort((a, b) => a.round - b.round);
  const nodes = [...(input.nodes ?? [])].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  const generatedAt = input.generatedAt ?? Date.now();
  const last = history.at(-1);
  const accepted = history.filter((r) => r.accepted !== false);
  const failedRounds = history.length - accepted.length;
  const word = history.some((r) => r.mode === 'async') ? 'step' : 'round';
  /** The last accepted round with a value, and the round with the largest one. */
  const finalAndBest = (pick: (r: RoundRecord) => number | null | undefined) => {
    const withValue = accepted.filter((r) => typeof pick(r) === 'number' && Number.isFinite(pick(r)));
    const best = withValue.reduce<RoundRecord | undefined>((b, r) => (!b || pick(r)! > pick(b)! ? r : b), undefined);
    return { final: withValue.at(-1), best };
  };
  const test = finalAndBest((r) => r.testAccuracy);
  const fed = finalAndBest((r) => r.federatedEval?.accuracy);
  const lastValue = (pick: (r: RoundRecord) => number | null | undefined) => [...accepted].reverse().map(pick).find((v) => typeof v === 'number' && Number.isFinite(v));
  const hasTest = history.some((r) => typeof r.testAccuracy === 'number' || typeof r.testLoss === 'number');
  const hasFed = history.some((r) => r.federatedEval);
  const sum = (key: 'bytesDown' | 'bytesUp' | 'durationMs') => history.reduce((a, r) => a + (Number(r[key]) || 0), 0);
  const totalFailures = history.reduce((a, r) => a + Object.values(r.failures ?? {}).reduce((x, y) => x + y, 0), 0);

  // Differential privacy: ε spent after the last round that has a privacy record (failed rounds included: ε only grows).
  const privacy = lastPrivacy(history);
  const pt = privacy ? privacyTexts(privacy) : null;

  // A job without a central test set shows the federated numbers only (and the test ones as – when there is neither).
  // [label, value, id, detail under the value]
  const stats: Array<[string, string, string, string?]> = [
    [`${word}s`, `${accepted.length}${failedRounds ? ` (+${failedRounds} failed, retried)` : ''}`, 'stat-rounds'],
    ...(hasTest || !hasFed
      ? ([
          ['final test accuracy', pct(test.final?.testAccuracy), 'stat-accuracy'],
          ['best test accuracy', test.best ? `${pct(test.best.testAccuracy)} (${word} ${test.best.round})` : '–', 'stat-best'],
          ['final test loss', num(lastValue((r) => r.testLoss), 4), 'stat-loss'],
        ] as Array<[string, string, string]>)
      : []),
    ...(hasFed
      ? ([
          ['final federated accuracy', pct(fed.final?.federatedEval?.accuracy), 'stat-fed-accuracy'],
          ['best federated accuracy', fed.best ? `${pct(fed.best.federatedEval?.accuracy)} (${word} ${fed.best.round})` : '–', 'stat-fed-best'],
          [
            'final nodes p10 – p90 (worst decile)',
            fed.final?.federatedEval
              ? `${pct(fed.final.federatedEval.accuracySpread.p10)} – ${pct(fed.final.federatedEval.accuracySpread.p90)} (${pct(fed.final.federatedEval.worstDecileAccuracy)})`
              : '–',
            'stat-fed-spread',
          ],
          ['final federated loss', num(lastValue((r) => r.federatedEval?.loss), 4), 'stat-fed-loss'],
        ] as Array<[string, string, string]>)
      : []),
    ['final train loss', num(lastValue((r) => r.trainLoss), 4), 'stat-train-loss'],
    ...(pt ? ([[`privacy spent ε (δ = ${pt.delta})`, pt.budget, 'stat-privacy', `${pt.mode} · σ ${pt.sigma} · C ${pt.clip}`]] as Array<[string, string, string, string]>) : []),
    ['bytes down / up (total)', `${formatBytes(sum('bytesDown'))} / ${formatBytes(sum('bytesUp'))}`, 'stat-bytes'],
    ['wall time (Σ rounds)', seconds(sum('durationMs')), 'stat-time'],
    ['failures', String(totalFailures), 'stat-failures'],
  ];

  const table = roundTable(history);
  const roundHead = table.columns.map((c) => `<th${c.num ? ' class="num"' : ''} data-col="${esc(c.id)}"${c.keepCase ? ' style="text-transform: none"' : ''}>${esc(c.label)}</th>`).join('');
  const roundRows = table.rows
    .map(
      (r) =>
        `<tr data-round="${esc(r.round)}"${r.accepted ? '' : ' class="failed"'}>` +
        r.cells.map((text, i) => `<td${table.columns[i].num ? ' class="num"' : table.columns[i].id === 'result' ? ' class="result"' : ''}>${esc(text)}</td>`).join('') +
        '</tr>',
    )
    .join('\n');
  const configRows = flatten(input.config)
    .map(([k, v]) => `<tr><th scope="row" class="mono">${esc(k)}</th><td class="mono">${esc(v)}</td></tr>`)
    .join('\n');
  const nodeRows = nodes
    .map(
      (n) =>
        `<tr data-node-id="${esc(n.nodeId)}"${n.state === 'offline' ? ' class="offline"' : ''}><td class="mono">${esc(n.nodeId)}</td>` +
        `<td class="state" data-state="${esc(n.state ?? '')}">${esc(n.state ?? '–')}</td>` +
        `<td>${n.ts ? esc(new Date(n.ts).toISOString()) : '–'}</td><td class="num">${n.numExamples ?? '–'}</td><td>${esc(n.device?.backend ?? '–')}</td>` +
        `<td class="num">${n.lastRound ? esc(n.lastRound.round) : '–'}</td><td class="num">${num(n.lastRound?.loss, 4)}</td>` +
        `<td class="num">${n.lastRound ? seconds(n.lastRound.trainMs) : '–'}</td></tr>`,
    )
    .join('\n');

  const data = { job: input.job, runId: input.runId, config: input.config, history, nodes, generatedAt };
  const title = `fedmq report · ${input.job} · ${input.runId}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fedmq">
<title>${esc(title)}</title>
<style>
${css}
.report-meta { display: flex; flex-wrap: wrap; gap: 8px 22px; }
.config th { text-transform: none; letter-spacing: 0; font-size: 12.5px; color: var(--text); width: 1%; }
@media print { .chart { height: 200px; } body { background: #fff; } }
</style>
</head>
<body>
<header class="top">
  <h1>fedmq run report</h1>
  <div class="field"><span class="label">job</span><span id="job" class="value mono">${esc(input.job)}</span></div>
  <div class="field"><span class="label">run</span><span id="run-id" class="value mono">${esc(input.runId)}</span></div>
  <div class="field"><span class="label">round</span><span id="round" class="value big">${history.length ? esc(last!.round) : '–'}</span></div>
  <div class="field right"><span class="label">written</span><span class="value">${esc(new Date(generatedAt).toISOString())}</span></div>
</header>

<section class="summary" id="summary">
${stats.map(([label, value, id, detail]) => `  <div class="stat"><span class="label">${keepGreek(esc(label))}</span><span id="${id}" class="value big">${esc(value)}</span>${detail !== undefined ? `<span id="${id}-detail" class="muted">${esc(detail)}</span>` : ''}</div>`).join('\n')}
</section>

<main class="grid">
  <figure class="card"><figcaption>${hasTest && hasFed ? 'Test and federated accuracy' : hasFed ? 'Federated accuracy' : 'Test accuracy'} per ${word}</figcaption><div class="chart"><canvas id="chart-accuracy"></canvas></div></figure>
  <figure class="card"><figcaption>Loss per round</figcaption><div class="chart"><canvas id="chart-loss"></canvas></div></figure>
  <figure class="card"><figcaption>Bytes per round</figcaption><div class="chart"><canvas id="chart-bytes"></canvas></div></figure>
  <figure class="card"><figcaption>Participation per round</figcaption><div class="chart"><canvas id="chart-participation"></canvas></div></figure>
</main>

<section class="card wide">
  <h2>Rounds</h2>
  <table class="table" id="rounds">
    <thead><tr>${roundHead}</tr></thead>
    <tbody>
${roundRows || `<tr class="empty"><td colspan="${table.columns.length}">no round completed</td></tr>`}
    </tbody>
  </table>
</section>

<section class="card wide">
  <h2>Configuration</h2>
  <table class="table config" id="config">
    <tbody>
${configRows || '<tr class="empty"><td colspan="2">none recorded</td></tr>'}
    </tbody>
  </table>
</section>
${
  nodes.length
    ? `
<section class="card wide">
  <h2>Nodes (${nodes.length})</h2>
  <table class="table" id="nodes">
    <thead><tr><th>node</th><th>state</th><th>last seen</th><th class="num">examples</th><th>backend</th><th class="num">last round</th><th class="num">loss</th><th class="num">training time</th></tr></thead>
    <tbody>
${nodeRows}
    </tbody>
  </table>
</section>
`
    : ''
}
<footer class="muted">Written by fedmq. Self-contained: Chart.js ${esc(/Chart\.js v([\d.]+)/.exec(chartJs)?.[1] ?? '')} (MIT licence) and the data are inline; the data as JSON is in the element <code>#fedmq-report-data</code>.</footer>

<script type="application/json" id="fedmq-report-data">${inlineJson(data)}</script>
<script>
${inlineJs(chartJs)}
</script>
<script type="module">
${inlineJs(chartsModule)}

const report = JSON.parse(document.getElementById('fedmq-report-data').textContent);
const charts = createCharts({
  accuracy: document.getElementById('chart-accuracy'),
  loss: document.getElementById('chart-loss'),
  bytes: document.getElementById('chart-bytes'),
  participation: document.getElementById('chart-participation'),
});
setHistory(charts, report.history);
window.fedmqCharts = charts;
</script>
</body>
</html>
`;
}
