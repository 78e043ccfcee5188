// fedmq charts: shared by the live dashboard (app.js) and the offline run report (report.ts inlines
// this file). Plain browser ES module, no imports: it uses the global `Chart` of chart.umd.js.
//
// A "round record" is a RoundRecord of @fedmq/protocol: a RoundMetrics message (docs/protocol.md
// §3, `rounds/{round}/metrics`) or an entry of history.json:
// { round, modelVersion, accepted, mode, selected, reported, failures, trainLoss, testLoss, testAccuracy,
//   federatedEval: { loss, accuracy, numExamples, nodes, worstDecileAccuracy, localBetterFraction,
//                    accuracySpread: { min, p10, median, p90, max } } | null,
//   staleness?: { mean, max }, bytesDown, bytesUp, durationMs, phases,
//   privacy?: { mode, sampling, q, noiseMultiplier, accountedNoiseMultiplier, clipNorm, nextClipNorm,
//               unclippedFraction, steps, epsilon, delta, maxEpsilon } }.
// testAccuracy/testLoss are null when the job has no central test set; federatedEval is null when
// no node evaluated. A round with accepted: false failed (model unchanged) and was retried.
// privacy is there in every round of a run with differential privacy (epsilon null: unbounded).
// charts.d.ts declares this module's exports for TypeScript (report.ts imports roundTable).

const COLORS = {
  accuracy: '#2563eb',
  fedAccuracy: '#0d9488',
  fedBand: 'rgba(13, 148, 136, 0.15)',
  testLoss: '#dc2626',
  trainLoss: '#f59e0b',
  fedLoss: '#0d9488',
  down: '#0891b2',
  up: '#7c3aed',
  selected: '#94a3b8',
  reported: '#16a34a',
  failures: '#dc2626',
};

/** Formats a byte count with SI units, 3 significant digits: 2391000 → "2.39 MB". */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  const s = i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return `${n < 0 ? '-' : ''}${s} ${units[i]}`;
}

/** Total of a failures map ({reason: count}). */
export function failureCount(failures) {
  return Object.values(failures ?? {}).reduce((a, b) => a + (Number(b) || 0), 0);
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fixed = (v, digits) => (isNum(v) ? v.toFixed(digits) : '–');
/** A fraction as a percentage with two decimals: 0.8412 → "84.12 %"; "–" when missing. */
export function formatPercent(v) {
  return isNum(v) ? `${(v * 100).toFixed(2)} %` : '–';
}
const seconds = (ms) => (isNum(ms) ? `${(ms / 1000).toFixed(1)} s` : '–');
/** A failures map as "timeout: 1, FEDMQ_STALE_UPDATE: 2" ("–" when none). */
export function failuresText(failures) {
  return Object.entries(failures ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`).join(', ') || '–';
}
/**
 * A privacy number (ε, a budget, σ, C) with 3 significant digits and no trailing zeros:
 * 2.3141 → "2.31", 3 → "3"; "∞" for null (an ε no noise bounds yet); "–" when not a number.
 * (The terminal monitor's formatEpsilon writes the same.)
 */
export function formatEpsilon(v) {
  if (v === null) return '∞';
  return isNum(v) ? String(Number(v.toPrecision(3))) : '–';
}
/** δ in exponent notation, up to 3 significant digits: 1e-5 → "1e-5"; "–" when not a number. */
export function formatDelta(v) {
  return isNum(v) ? Number(v.toPrecision(3)).toExponential() : '–';
}
/** The privacy record of the latest round that has one (ε only grows, failed rounds included), or null. */
export function lastPrivacy(records) {
  const withPrivacy = [...records].filter((r) => r?.privacy).sort((a, b) => a.round - b.round);
  return withPrivacy.at(-1)?.privacy ?? null;
}
/**
 * A privacy record as texts: `epsilon` ("2.31", "∞"), `budget` ("2.31 / 3", or the ε alone without
 * a budget), `delta` ("1e-5"), `mode` ("central", "local"), `sigma` (noise multiplier, "1.1") and
 * `clip` (the round's clip norm C, "0.5").
 */
export function privacyTexts(p) {
  const epsilon = formatEpsilon(p.epsilon);
  return {
    epsilon,
    budget: p.maxEpsilon === null || p.maxEpsilon === undefined ? epsilon : `${epsilon} / ${formatEpsilon(p.maxEpsilon)}`,
    delta: formatDelta(p.delta),
    mode: String(p.mode),
    sigma: formatEpsilon(p.noiseMultiplier),
    clip: formatEpsilon(p.clipNorm),
  };
}
/** True when the round counted (records without the field, from before protocol v2, did). */
const accepted = (r) => r?.accepted !== false;

/**
 * The round table of the dashboard and the run report: its columns and one row of cell texts per
 * round, sorted by round. Columns depend on what the rounds hold: the centralized test columns
 * when the job has a test set (or nothing else to show), the federated columns (accuracy, the
 * nodes' p10 – p90 accuracy, worst-decile accuracy, fraction of nodes whose local model beat the
 * global one) when nodes evaluated, staleness in async mode, ε spent so far (`privacy.epsilon`,
 * "∞" while unbounded) when the run has differential privacy. `result` reads "failed, retried"
 * for a round with accepted: false.
 * A column with `keepCase` (ε) must not be uppercased like the other headers: an uppercase ε reads E.
 * @returns {{ columns: Array<{ id: string, label: string, num: boolean, keepCase?: true }>, rows: Array<{ round: number, accepted: boolean, cells: string[] }> }}
 */
export function roundTable(records) {
  const rows = [...records].sort((a, b) => a.round - b.round);
  const hasTest = rows.some((r) => isNum(r.testAccuracy) || isNum(r.testLoss));
  const hasFed = rows.some((r) => r.federatedEval);
  const hasStaleness = rows.some((r) => r.staleness);
  const hasPrivacy = rows.some((r) => r.privacy);
  const async = rows.some((r) => r.mode === 'async');
  const spread = (fe) => (fe ? `${formatPercent(fe.accuracySpread.p10)} – ${formatPercent(fe.accuracySpread.p90)}` : '–');
  const cols = [
    { id: 'round', label: async ? 'step' : 'round', num: true, cell: (r) => String(r.round) },
    { id: 'result', label: 'result', num: false, cell: (r) => (accepted(r) ? 'ok' : 'failed, retried') },
    { id: 'nodes', label: 'nodes', num: true, cell: (r) => `${r.reported}/${r.selected}` },
    { id: 'failures', label: 'failures', num: false, cell: (r) => failuresText(r.failures) },
    { id: 'train-loss', label: 'train loss', num: true, cell: (r) => fixed(r.trainLoss, 4) },
    ...(hasTest || !hasFed
      ? [
          { id: 'test-loss', label: 'test loss', num: true, cell: (r) => fixed(r.testLoss, 4) },
          { id: 'test-accuracy', label: 'test acc', num: true, cell: (r) => formatPercent(r.testAccuracy) },
        ]
      : []),
    ...(hasFed
      ? [
          { id: 'fed-accuracy', label: 'fed acc', num: true, cell: (r) => formatPercent(r.federatedEval?.accuracy) },
          { id: 'fed-spread', label: 'fed p10 – p90', num: true, cell: (r) => spread(r.federatedEval) },
          { id: 'fed-worst', label: 'worst decile', num: true, cell: (r) => formatPercent(r.federatedEval?.worstDecileAccuracy) },
          { id: 'fed-local-better', label: 'local better', num: true, cell: (r) => (isNum(r.federatedEval?.localBetterFraction) ? `${Math.round(r.federatedEval.localBetterFraction * 100)} %` : '–') },
        ]
      : []),
    ...(hasStaleness ? [{ id: 'staleness', label: 'staleness mean / max', num: true, cell: (r) => (r.staleness ? `${r.staleness.mean.toFixed(2)} / ${r.staleness.max}` : '–') }] : []),
    ...(hasPrivacy ? [{ id: 'epsilon', label: 'ε', num: true, keepCase: true, cell: (r) => (r.privacy ? formatEpsilon(r.privacy.epsilon) : '–') }] : []),
    { id: 'bytes-down', label: 'bytes down', num: true, cell: (r) => formatBytes(r.bytesDown) },
    { id: 'bytes-up', label: 'bytes up', num: true, cell: (r) => formatBytes(r.bytesUp) },
    { id: 'time', label: 'time', num: true, cell: (r) => seconds(r.durationMs) },
  ];
  return {
    columns: cols.map(({ id, label, num, keepCase }) => ({ id, label, num, ...(keepCase ? { keepCase } : {}) })),
    rows: rows.map((r) => ({ round: r.round, accepted: accepted(r), cells: cols.map((c) => c.cell(r)) })),
  };
}

function baseOptions(yTitle, extra = {}) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: 'index', intersect: false },
    plugins: {
      // datasets without any value (no test set, no federated evaluation) are left out of the legend
      legend: { position: 'bottom', labels: { boxWidth: 12, filter: (item, data) => data.datasets[item.datasetIndex].data.some((v) => v !== null) } },
      tooltip: { callbacks: { footer: (items) => (items.length && !accepted(items[0].chart.$fedmqRecords?.[items[0].dataIndex]) ? 'round failed, retried' : '') } },
    },
    scales: {
      x: { title: { display: true, text: 'round' } },
      y: { title: { display: true, text: yTitle }, ...extra.y },
    },
  };
}

/** Failed rounds (accepted: false) are drawn as crosses. */
const pointStyle = (ctx) => (accepted(ctx.chart.$fedmqRecords?.[ctx.dataIndex]) ? 'circle' : 'crossRot');

function line(label, color, extra = {}) {
  return { label, data: [], borderColor: color, backgroundColor: color, pointRadius: 3, pointStyle, borderWidth: 2, tension: 0.15, spanGaps: true, ...extra };
}

function bar(label, color) {
  return { label, data: [], backgroundColor: color, borderColor: color, borderWidth: 1 };
}

/**
 * Creates the four fedmq charts in the given canvases and returns them:
 * `{ accuracy, loss, bytes, participation }` (Chart.js instances). Each chart's `data.labels` are
 * the rounds (1, 2, …) and each dataset's `data` holds one value per label (null when missing).
 * Datasets: accuracy `test accuracy`, `federated accuracy`, `federated p10`, `federated p90`;
 * loss `test loss`, `train loss`, `federated loss`; bytes `bytes down`, `bytes up`;
 * participation `selected`, `reported`, `failures`. Failed rounds' points are crosses.
 *
 * - accuracy: test accuracy of the global model after each round on the coordinator's test set,
 *   and federated accuracy (numExamples-weighted, on the nodes' held-out data) with the band
 *   between the nodes' 10th and 90th percentile accuracy (0…1);
 * - loss: test loss, mean training loss (numExamples-weighted) and federated loss per round;
 * - bytes: bytes down (measured by the nodes) and up (updates and evaluation results) per round, bars;
 * - participation: nodes selected, updates accepted (reported) and failures per round, bars.
 */
export function createCharts(canvases) {
  const Chart = globalThis.Chart;
  if (!Chart) throw new Error('Chart.js (chart.umd.js) is not loaded');
  const bytesAxis = { ticks: { callback: (v) => formatBytes(v) }, beginAtZero: true };
  return {
    accuracy: new Chart(canvases.accuracy, {
      type: 'line',
      data: {
        datasets: [
          line('test accuracy', COLORS.accuracy),
          line('federated accuracy', COLORS.fedAccuracy),
          line('federated p10', COLORS.fedAccuracy, { borderWidth: 1, borderDash: [4, 3], pointRadius: 0, backgroundColor: COLORS.fedBand }),
          line('federated p90', COLORS.fedAccuracy, { borderWidth: 1, borderDash: [4, 3], pointRadius: 0, backgroundColor: COLORS.fedBand, fill: '-1' }),
        ],
      },
      options: baseOptions('accuracy', { y: { suggestedMin: 0, suggestedMax: 1 } }),
    }),
    loss: new Chart(canvases.loss, {
      type: 'line',
      data: { datasets: [line('test loss', COLORS.testLoss), line('train loss', COLORS.trainLoss), line('federated loss', COLORS.fedLoss)] },
      options: baseOptions('loss', { y: { beginAtZero: true } }),
    }),
    bytes: new Chart(canvases.bytes, {
      type: 'bar',
      data: { datasets: [bar('bytes down', COLORS.down), bar('bytes up', COLORS.up)] },
      options: (() => {
        const o = baseOptions('bytes', { y: bytesAxis });
        o.plugins.tooltip.callbacks.label = (c) => `${c.dataset.label}: ${formatBytes(c.parsed.y)}`;
        return o;
      })(),
    }),
    participation: new Chart(canvases.participation, {
      type: 'bar',
      data: { datasets: [bar('selected', COLORS.selected), bar('reported', COLORS.reported), bar('failures', COLORS.failures)] },
      options: (() => {
        const o = baseOptions('nodes', { y: { beginAtZero: true, ticks: { precision: 0 } } });
        // Failures by reason (error code, timeout, offline) in the tooltip.
        o.plugins.tooltip.callbacks.label = (c) => {
          const text = `${c.dataset.label}: ${c.parsed.y}`;
          const failures = c.chart.$fedmqRecords?.[c.dataIndex]?.failures ?? {};
          const parts = Object.entries(failures).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
          return c.datasetIndex === 2 && parts.length ? `${text} (${parts.join(', ')})` : text;
        };
        return o;
      })(),
    }),
  };
}

/**
 * Replaces the charts' data with `records` (round records, any order, one per round) and redraws.
 * Null values (no test set, no federated evaluation, no accepted update) stay null: no point is
 * drawn for them.
 */
export function setHistory(charts, records) {
  const rows = [...records].sort((a, b) => a.round - b.round);
  const labels = rows.map((r) => r.round);
  const col = (key) => rows.map((r) => (isNum(r[key]) ? r[key] : null));
  const fed = (pick) => rows.map((r) => (r.federatedEval && isNum(pick(r.federatedEval)) ? pick(r.federatedEval) : null));
  const set = (chart, columns) => {
    chart.$fedmqRecords = rows;
    chart.data.labels = labels;
    columns.forEach((values, i) => {
      chart.data.datasets[i].data = values;
    });
    chart.update('none');
  };
  set(charts.accuracy, [col('testAccuracy'), fed((f) => f.accuracy), fed((f) => f.accuracySpread.p10), fed((f) => f.accuracySpread.p90)]);
  set(charts.loss, [col('testLoss'), col('trainLoss'), fed((f) => f.loss)]);
  set(charts.bytes, [col('bytesDown'), col('bytesUp')]);
  set(charts.participation, [col('selected'), col('reported'), rows.map((r) => failureCount(r.failures))]);
}
