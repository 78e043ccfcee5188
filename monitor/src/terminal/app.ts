import { EventEmitter } from 'node:events';
import { createElement as h, useEffect, useReducer, useState, type ReactElement, type ReactNode } from 'react';
import { Box, Text, render, useApp, useInput, useStdin, useStdout, type Instance } from 'ink';
import type { NodeStatus } from '@fedmq/protocol';
import type { FleetState, JobState, NodeView } from '../state.ts';
import type { ConnectionEvent, MonitorEmitterEvents } from '../monitor.ts';
import { lineChart, sparkline } from './chart.ts';
import { ago, formatBytes, formatCount, formatDuration } from './format.ts';

/** What the terminal UI needs of a running monitor (see `startMonitor`). */
export interface MonitorSource {
  state: FleetState;
  events: EventEmitter<MonitorEmitterEvents>;
  readonly connected: boolean;
}

/** Props of {@link MonitorApp}. */
export interface MonitorAppProps {
  monitor: MonitorSource;
  brokerUrl: string;
  /** The job given on the command line; otherwise the UI shows one job at a time (Tab switches). */
  job?: string;
  /** Clock, epoch ms (tests). Default `Date.now`. */
  now?: () => number;
  /** Re-render period for the clocks (deadline, last seen), ms. Default 1000. */
  tickMs?: number;
}

const STATE_COLOR: Record<NodeStatus['state'], string> = { idle: 'green', training: 'yellow', uploading: 'cyan', offline: 'red' };
const PHASE_COLOR: Record<string, string> = {
  waiting: 'gray', training: 'yellow', aggregating: 'magenta', evaluating: 'blue', done: 'green', failed: 'red', offline: 'red',
};

const byId = (a: NodeView, b: NodeView) => a.nodeId.localeCompare(b.nodeId, 'en', { numeric: true });
const fixed = (x: number | null | undefined, d = 4) => (x === null || x === undefined ? '-' : x.toFixed(d));
const fit = (s: string, w: number) => (s.length > w ? `${s.slice(0, Math.max(0, w - 1))}…` : s.padEnd(w));

/** Picks the job to show: the one asked for, else the selected index among the known jobs. */
function pickJob(state: FleetState, job: string | undefined, index: number): { shown?: JobState; jobs: string[] } {
  if (job !== undefined) return { shown: state.jobs.get(job), jobs: [job] };
  const jobs = [...state.jobs.keys()].sort();
  if (jobs.length === 0) return { jobs };
  return { shown: state.jobs.get(jobs[index % jobs.length]), jobs };
}

/**
 * The live terminal view of `fedmq monitor` (ink): a header with the broker, job, coordinator
 * phase, round r / total, reported / selected of the open round and the seconds left to its
 * deadline; a node table (state, last seen, numExamples, backend, last loss and training time);
 * test accuracy and loss over rounds (a line chart when the terminal is tall enough, sparklines
 * otherwise) and the last round's bytes up and down. Fits 80×24 and uses the room of larger
 * terminals. `q` or Esc quits; Tab shows the next job when no job was given.
 */
export function MonitorApp(props: MonitorAppProps): ReactElement {
  const { monitor, brokerUrl } = props;
  const now = (props.now ?? Date.now)();
  const [, bump] = useReducer((n: number) => n + 1, 0);
  const [jobIndex, setJobIndex] = useState(0);
  const { exit } = useApp();
  const { isRawModeSupported } = useStdin();
  const { stdout } = useStdout();

  const [everConnected, setEverConnected] = useState(monitor.connected);
  useEffect(() => {
    const onChange = () => bump();
    const onConnection = (e: ConnectionEvent) => {
      if (e.type === 'connected') setEverConnected(true);
      bump();
    };
    monitor.events.on('event', onChange).on('connection', onConnection);
    stdout.on('resize', onChange);
    const timer = setInterval(onChange, props.tickMs ?? 1000);
    return () => {
      monitor.events.off('event', onChange).off('connection', onConnection);
      stdout.off('resize', onChange);
      clearInterval(timer);
    };
  }, [monitor, stdout, props.tickMs]);

  useInput(
    (input, key) => {
      if (input === 'q' || key.escape) exit();
      if (key.tab) setJobIndex((i) => i + 1);
    },
    { isActive: isRawModeSupported === true },
  );

  const columns = Math.max(40, stdout.columns || 80);
  const rows = Math.max(12, stdout.rows || 24);
  const { shown, jobs } = pickJob(monitor.state, props.job, jobIndex);
  const jobLabel = props.job ?? (shown ? `${shown.job}${jobs.length > 1 ? ` (${(jobIndex % jobs.length) + 1}/${jobs.length}, Tab: next)` : ''}` : 'all jobs');

  const lines: ReactNode[] = [];
  const key = () => `l${lines.length}`;
  const row = (...children: ReactNode[]) => lines.push(h(Box, { key: key(), width: columns, height: 1, overflow: 'hidden' }, ...children));
  const text = (s: string, style: Record<string, unknown> = {}) => h(Text, { wrap: 'truncate-end', ...style }, s);

  // header: broker, job, run, connection
  row(
    text('fedmq monitor ', { bold: true }),
    text(`${brokerUrl}  job ${jobLabel}${shown?.runId ? `  run ${shown.runId}` : ''}  `),
    monitor.connected
      ? text('● connected', { color: 'green' })
      : everConnected
        ? text('○ broker lost, reconnecting…', { color: 'red' })
        : text('○ connecting…', { color: 'yellow' }),
  );

  // coordinator line
  const c = shown?.coordinator;
  const task = shown?.task;
  const lastRound = shown?.rounds.at(-1);
  const parts: ReactNode[] = [text('coordinator '), text((c?.state ?? 'unknown').padEnd(11), { color: PHASE_COLOR[c?.state ?? ''] ?? 'gray', bold: true })];
  if (c) parts.push(text(`round ${c.round}${c.rounds !== undefined ? `/${c.rounds}` : ''}  `));
  if (task) {
    const closed = shown?.rounds.find((r) => r.round === task.task.round);
    parts.push(
      closed
        ? text(`reported ${closed.reported}/${closed.selected} (round ${task.task.round} closed)  `)
        : text(`reported ${task.reported.size}/${task.task.selected.length}  `),
    );
    const deadline = c?.state === 'training' ? (c.deadline ?? task.task.deadline) : undefined;
    if (deadline !== undefined && !closed) {
      const left = Math.max(0, Math.ceil((deadline - now) / 1000));
      parts.push(text(`deadline ${left}s left`, { color: left <= 10 ? 'red' : undefined }));
    }
  }
  row(...parts);

  // fleet and model line
  if (shown) {
    const counts = { idle: 0, training: 0, uploading: 0, offline: 0 };
    for (const n of shown.nodes.values()) counts[n.status.state]++;
    const model = shown.model ? `  model ${shown.model.model} v${shown.model.version} (${formatBytes(shown.model.bytes)}, ${formatCount(shown.model.params)} params)` : '';
    row(text(`nodes ${shown.nodes.size - counts.offline} online: ${counts.training} training, ${counts.uploading} uploading, ${counts.idle} idle, ${counts.offline} offline${model}`, { dimColor: true }));
  } else {
    row(text(`waiting for fedmq messages on ${brokerUrl}…`, { dimColor: true }));
  }
  row(text('─'.repeat(columns), { dimColor: true }));

  // room: header (4 lines) + table header (1) + separator (1) + footer (2) + 1 spare line
  const nodes = shown ? [...shown.nodes.values()].sort(byId) : [];
  const room = rows - 4 - 1 - 1 - 2 - 1;
  const accuracy = shown?.rounds.map((r) => r.testAccuracy) ?? [];
  const testLoss = shown?.rounds.map((r) => r.testLoss) ?? [];
  const trainLoss = shown?.rounds.map((r) => r.trainLoss) ?? [];
  const sideBySide = columns >= 90;
  const chartSpace = room - Math.max(1, nodes.length); // big charts only when every node fits
  const chartHeight = Math.min(10, sideBySide ? chartSpace - 1 : Math.floor(chartSpace / 2) - 1);
  const bigCharts = accuracy.filter((x) => x !== null).length >= 2 && chartHeight >= 4;
  const chartLines = bigCharts ? (sideBySide ? chartHeight + 1 : 2 * (chartHeight + 1)) : 3;
  const tableRows = Math.max(1, room - chartLines);

  // node table
  const idW = Math.min(24, Math.max(4, ...nodes.map((n) => n.nodeId.length)));
  const wide = columns >= 76;
  const header = `${'NODE'.padEnd(idW)} ${'STATE'.padEnd(9)} ${'SEEN'.padStart(8)} ${'EXAMPLES'.padStart(8)} ${wide ? `${'BACKEND'.padEnd(10)} ` : ''}${'ROUND'.padStart(5)} ${'LOSS'.padStart(7)} ${'TRAIN'.padStart(6)}`;
  row(text(header, { bold: true }));
  const visible = nodes.length > tableRows ? nodes.slice(0, tableRows - 1) : nodes;
  for (const n of visible) {
    const s = n.status;
    row(
      text(`${fit(n.nodeId, idW)} `),
      text(s.state.padEnd(9), { color: STATE_COLOR[s.state] }),
      text(
        ` ${ago(n.lastSeen, now).padStart(8)} ${String(s.numExamples ?? '-').padStart(8)} ${wide ? `${fit(s.device?.backend ?? '-', 10)} ` : ''}${String(s.lastRound?.round ?? '-').padStart(5)} ${fixed(s.lastRound?.loss).padStart(7)} ${(s.lastRound ? formatDuration(s.lastRound.trainMs) : '-').padStart(6)}`,
      ),
    );
  }
  if (visible.length < nodes.length) row(text(`… ${nodes.length - visible.length} more nodes (a taller terminal shows more)`, { dimColor: true }));
  if (nodes.length === 0) row(text('no nodes yet', { dimColor: true }));
  row(text('─'.repeat(columns), { dimColor: true }));

  // charts
  const r = lastRound;
  if (bigCharts) {
    const w = sideBySide ? Math.floor((columns - 2) / 2) : columns;
    const acc = lineChart(accuracy, { width: w, height: chartHeight, decimals: 3 });
    const loss = lineChart(testLoss.some((x) => x !== null) ? testLoss : trainLoss, { width: w, height: chartHeight, decimals: 3 });
    const lossName = testLoss.some((x) => x !== null) ? 'test loss' : 'train loss';
    const title = (name: string, last: number | null | undefined) => `${name} over ${accuracy.length} rounds, last ${fixed(last)}`;
    if (sideBySide) {
      row(text(fit(title('test accuracy', r?.testAccuracy), w + 2), { bold: true }), text(title(lossName, lossName === 'test loss' ? r?.testLoss : r?.trainLoss), { bold: true }));
      for (let i = 0; i < chartHeight; i++) row(text(fit(acc[i] ?? '', w + 2), { color: 'green' }), text(loss[i] ?? '', { color: 'yellow' }));
    } else {
      row(text(title('test accuracy', r?.testAccuracy), { bold: true }));
      for (let i = 0; i < chartHeight; i++) row(text(acc[i] ?? '', { color: 'green' }));
      row(text(title(lossName, lossName === 'test loss' ? r?.testLoss : r?.trainLoss), { bold: true }));
      for (let i = 0; i < chartHeight; i++) row(text(loss[i] ?? '', { color: 'yellow' }));
    }
  } else {
    const sw = Math.max(4, columns - 40);
    row(text('test accuracy '.padEnd(15)), text(sparkline(accuracy, sw), { color: 'green' }), text(`  ${fixed(r?.testAccuracy)}`));
    row(text('test loss '.padEnd(15)), text(sparkline(testLoss, sw), { color: 'yellow' }), text(`  ${fixed(r?.testLoss)}`));
    row(text('train loss '.padEnd(15)), text(sparkline(trainLoss, sw), { color: 'yellow' }), text(`  ${fixed(r?.trainLoss)}`));
  }

  // footer
  row(
    text(
      r
        ? `last round ${r.round}: ${r.reported}/${r.selected} reported, up ${formatBytes(r.bytesUp)}, down ${formatBytes(r.bytesDown)}, ${formatDuration(r.durationMs)}${Object.keys(r.failures).length ? `, failures ${Object.entries(r.failures).map(([k, n]) => `${k}=${n}`).join(' ')}` : ''}`
        : 'no round finished yet',
    ),
  );
  row(text(isRawModeSupported ? `q quit${props.job === undefined ? ' · Tab next job' : ''}` : 'Ctrl-C quit', { dimColor: true }));

  return h(Box, { flexDirection: 'column', width: columns }, ...lines);
}

/** Options of {@link renderMonitor}. */
export interface RenderMonitorOptions extends MonitorAppProps {
  /** Where to draw (default `process.stdout`); needs `columns` and `rows` to lay out. */
  stdout?: NodeJS.WriteStream;
  /** Keyboard input (default `process.stdin`). */
  stdin?: NodeJS.ReadStream;
}

/**
 * Renders {@link MonitorApp} with ink. The returned instance's `waitUntilExit()` resolves when the
 * user quits (`q`, Esc or Ctrl-C); ink restores the terminal (cursor, raw mode) on unmount.
 */
export function renderMonitor(opts: RenderMonitorOptions): Instance {
  const { stdout, stdin, ...props } = opts;
  return render(h(MonitorApp, props), {
    ...(stdout ? { stdout } : {}),
    ...(stdin ? { stdin } : {}),
    exitOnCtrlC: true,
    patchConsole: false,
  });
}
