// fedmq charts: shared by the live dashboard (app.js) and the offline run report (report.ts inlines
// this file). Plain browser ES module, no imports: it uses the global `Chart` of chart.umd.js.
//
// A "round record" is a RoundMetrics message (docs/protocol.md §3.6) or a line of history.json:
// { round, selected, reported, failures, trainLoss, testLoss, testAccuracy, bytesDown, bytesUp, durationMs }.

const COLORS = {
  accuracy: '#2563eb',
  testLoss: '#dc2626',
  trainLoss: '#f59e0b',
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

function baseOptions(yTitle, extra = {}) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    interaction: { mode: 'index', intersect: false },
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
    scales: {
      x: { title: { display: true, text: 'round' } },
      y: { title: { display: true, text: yTitle }, ...extra.y },
    },
  };
}

function line(label, color) {
  return { label, data: [], borderColor: color, backgroundColor: color, pointRadius: 3, borderWidth: 2, tension: 0.15, spanGaps: true };
}

function bar(label, color) {
  return { label, data: [], backgroundColor: color, borderColor: color, borderWidth: 1 };
}

/**
 * Creates the four fedmq charts in the given canvases and returns them:
 * `{ accuracy, loss, bytes, participation }` (Chart.js instances). Each chart's `data.labels` are
 * the rounds (1, 2, …) and each dataset's `data` holds one value per label (null when missing).
 *
 * - accuracy: test accuracy of the global model after each round (0…1);
 * - loss: test loss and mean training loss (numExamples-weighted) per round;
 * - bytes: bytes down (model + task to the nodes) and up (updates) per round, bars;
 * - participation: nodes selected, updates accepted (reported) and failures per round, bars.
 */
export function createCharts(canvases) {
  const Chart = globalThis.Chart;
  if (!Chart) throw new Error('Chart.js (chart.umd.js) is not loaded');
  const bytesAxis = { ticks: { callback: (v) => formatBytes(v) }, beginAtZero: true };
  return {
    accuracy: new Chart(canvases.accuracy, {
      type: 'line',
      data: { datasets: [line('test accuracy', COLORS.accuracy)] },
      options: baseOptions('accuracy', { y: { suggestedMin: 0, suggestedMax: 1 } }),
    }),
    loss: new Chart(canvases.loss, {
      type: 'line',
      data: { datasets: [line('test loss', COLORS.testLoss), line('train loss', COLORS.trainLoss)] },
      options: baseOptions('loss', { y: { beginAtZero: true } }),
    }),
    bytes: new Chart(canvases.bytes, {
      type: 'bar',
      data: { datasets: [bar('bytes down', COLORS.down), bar('bytes up', COLORS.up)] },
      options: (() => {
        const o = baseOptions('bytes', { y: bytesAxis });
        o.plugins.tooltip = { callbacks: { label: (c) => `${c.dataset.label}: ${formatBytes(c.parsed.y)}` } };
        return o;
      })(),
    }),
    participation: new Chart(canvases.participation, {
      type: 'bar',
      data: { datasets: [bar('selected', COLORS.selected), bar('reported', COLORS.reported), bar('failures', COLORS.failures)] },
      options: (() => {
        const o = baseOptions('nodes', { y: { beginAtZero: true, ticks: { precision: 0 } } });
        // Failures by reason (error code, timeout, offline) in the tooltip.
        o.plugins.tooltip = {
          callbacks: {
            label: (c) => {
              const text = `${c.dataset.label}: ${c.parsed.y}`;
              const failures = c.chart.$fedmqRecords?.[c.dataIndex]?.failures ?? {};
              const parts = Object.entries(failures).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
              return c.datasetIndex === 2 && parts.length ? `${text} (${parts.join(', ')})` : text;
            },
          },
        };
        return o;
      })(),
    }),
  };
}

/**
 * Replaces the charts' data with `records` (round records, any order, one per round) and redraws.
 * Null values (no test set, no accepted update) stay null: no point is drawn for them.
 */
export function setHistory(charts, records) {
  const rows = [...records].sort((a, b) => a.round - b.round);
  const labels = rows.map((r) => r.round);
  const col = (key) => rows.map((r) => (typeof r[key] === 'number' && Number.isFinite(r[key]) ? r[key] : null));
  const set = (chart, columns) => {
    chart.$fedmqRecords = rows;
    chart.data.labels = labels;
    columns.forEach((values, i) => {
      chart.data.datasets[i].data = values;
    });
    chart.update('none');
  };
  set(charts.accuracy, [col('testAccuracy')]);
  set(charts.loss, [col('testLoss'), col('trainLoss')]);
  set(charts.bytes, [col('bytesDown'), col('bytesUp')]);
  set(charts.participation, [col('selected'), col('reported'), rows.map((r) => failureCount(r.failures))]);
}
