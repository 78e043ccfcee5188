import { readFileSync } from 'node:fs';
import { dashboardAssets } from './dashboard/assets.ts';

/**
 * One round of a run, as the coordinator records it (`history.json`, the `RoundRecord` of
 * `@fedmq/coordinator`) or publishes it (`RoundMetrics`, docs/protocol.md §3.6). Extra fields are
 * ignored.
 */
export interface ReportRound {
  /** Round number, from 1. */
  round: number;
  /** Nodes selected / updates accepted. */
  selected: number;
  reported: number;
  /** Rejected updates and missing nodes by reason (error code, `timeout`, `offline`). */
  failures: Record<string, number>;
  /** numExamples-weighted mean training loss of the accepted updates; null when none. */
  trainLoss: number | null;
  /** Evaluation of the new global model on the coordinator's test set; null without one. */
  testLoss: number | null;
  testAccuracy: number | null;
  /** Bytes to the nodes (model + task × nodes online) and from them (accepted updates). */
  bytesDown: number;
  bytesUp: number;
  /** Round wall time, ms. */
  durationMs: number;
}

/** A node as last seen (the fields of a NodeStatus, docs/protocol.md §3.2, all optional but `nodeId`). */
export interface ReportNode {
  nodeId: string;
  /** `idle`, `training`, `uploading`, `offline`. */
  state?: string;
  /** When the node last published its status, ms since the epoch. */
  ts?: number;
  numExamples?: number;
  device?: { platform?: string; arch?: string; cores?: number; memoryMb?: number; backend?: string };
  /** Last round the node published an update for: its training loss and time (ms). */
  lastRound?: { round: number; loss: number; trainMs: number };
}

/** Input of {@link renderReport}. */
export interface ReportInput {
  job: string;
  runId: string;
  /** How the run was configured (flags/options); nested objects are shown with dotted keys. */
  config: Record<string, unknown>;
  /** The run's rounds (any order; shown sorted by round). */
  history: ReportRound[];
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

/** Bytes with SI units, 3 significant digits (as the dashboard's charts.js): 2391000 → "2.39 MB". */
function formatBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${n < 0 ? '-' : ''}${i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

const num = (v: number | null | undefined, digits: number) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');
const pct = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? `${(v * 100).toFixed(2)} %` : '–');
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const failuresText = (f: Record<string, number>) =>
  Object.entries(f ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`).join(', ') || '–';

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
 * final numbers, the dashboard's four charts (test accuracy; test and training loss; bytes
 * down/up; participation — drawn by the same `charts.js` as the live dashboard), a table of the
 * rounds and, if given, the node table.
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
  const withAcc = history.filter((r) => typeof r.testAccuracy === 'number');
  const best = withAcc.reduce<ReportRound | undefined>((b, r) => (!b || r.testAccuracy! > b.testAccuracy! ? r : b), undefined);
  const sum = (key: 'bytesDown' | 'bytesUp' | 'durationMs') => history.reduce((a, r) => a + (Number(r[key]) || 0), 0);
  const totalFailures = history.reduce((a, r) => a + Object.values(r.failures ?? {}).reduce((x, y) => x + y, 0), 0);

  const stats: Array<[string, string, string]> = [
    ['rounds', String(history.length), 'stat-rounds'],
    ['final test accuracy', pct(last?.testAccuracy), 'stat-accuracy'],
    ['best test accuracy', best ? `${pct(best.testAccuracy)} (round ${best.round})` : '–', 'stat-best'],
    ['final test loss', num(last?.testLoss, 4), 'stat-loss'],
    ['final train loss', num(last?.trainLoss, 4), 'stat-train-loss'],
    ['bytes down / up (total)', `${formatBytes(sum('bytesDown'))} / ${formatBytes(sum('bytesUp'))}`, 'stat-bytes'],
    ['wall time (Σ rounds)', seconds(sum('durationMs')), 'stat-time'],
    ['failures', String(totalFailures), 'stat-failures'],
  ];

  const roundRows = history
    .map(
      (r) =>
        `<tr><td class="num">${esc(r.round)}</td><td class="num">${esc(r.reported)}/${esc(r.selected)}</td><td>${esc(failuresText(r.failures))}</td>` +
        `<td class="num">${num(r.trainLoss, 4)}</td><td class="num">${num(r.testLoss, 4)}</td><td class="num">${pct(r.testAccuracy)}</td>` +
        `<td class="num">${formatBytes(r.bytesDown)}</td><td class="num">${formatBytes(r.bytesUp)}</td><td class="num">${seconds(r.durationMs)}</td></tr>`,
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
${stats.map(([label, value, id]) => `  <div class="stat"><span class="label">${esc(label)}</span><span id="${id}" class="value big">${esc(value)}</span></div>`).join('\n')}
</section>

<main class="grid">
  <figure class="card"><figcaption>Test accuracy per round</figcaption><div class="chart"><canvas id="chart-accuracy"></canvas></div></figure>
  <figure class="card"><figcaption>Loss per round</figcaption><div class="chart"><canvas id="chart-loss"></canvas></div></figure>
  <figure class="card"><figcaption>Bytes per round</figcaption><div class="chart"><canvas id="chart-bytes"></canvas></div></figure>
  <figure class="card"><figcaption>Participation per round</figcaption><div class="chart"><canvas id="chart-participation"></canvas></div></figure>
</main>

<section class="card wide">
  <h2>Rounds</h2>
  <table class="table" id="rounds">
    <thead><tr><th class="num">round</th><th class="num">nodes</th><th>failures</th><th class="num">train loss</th><th class="num">test loss</th><th class="num">test acc</th><th class="num">bytes down</th><th class="num">bytes up</th><th class="num">time</th></tr></thead>
    <tbody>
${roundRows || '<tr class="empty"><td colspan="9">no round completed</td></tr>'}
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
