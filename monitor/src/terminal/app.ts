import { EventEmitter } from 'node:events';
import { createElement as h, useEffect, useReducer, useState, type ReactElement, type ReactNode } from 'react';
import { Box, Text, render, useApp, useInput, useStdin, useStdout, type Instance } from 'ink';
import type { CoordinatorStatus, NodeStatus, StageName } from '@fedmq/protocol';
import { acceptedRounds, nodeCounts, type FleetState, type JobState, type NodeView } from '../state.ts';
import type { ConnectionEvent, MonitorEmitterEvents } from '../monitor.ts';
import { lineChart, sparkline, visibleLength } from './chart.ts';
import { ago, formatBytes, formatCount, formatDuration, formatEpsilon, formatFederated, roundWord, stageParts } from './format.ts';

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

const STATE_COLOR: Record<NodeStatus['state'], string> = { idle: 'green', training: 'yellow', evaluating: 'blue', uploading: 'cyan', offline: 'red' };
const RUN_COLOR: Record<CoordinatorStatus['state'], string> = { running: 'cyan', done: 'green', failed: 'red', offline: 'red' };
const STAGE_COLOR: Record<StageName, string> = { waiting: 'gray', select: 'magenta', 'advertise-keys': 'cyan', 'share-keys': 'cyan', fit: 'yellow', unmask: 'cyan', aggregate: 'magenta', evaluate: 'blue' };
const NODE_STATES: readonly NodeStatus['state'][] = ['training', 'evaluating', 'uploading', 'idle', 'offline'];

const byId = (a: NodeView, b: NodeView) => a.nodeId.localeCompare(b.nodeId, 'en', { numeric: true });
const fixed = (x: number | null | undefined, d = 4) => (x === null || x === undefined ? '-' : x.toFixed(d));
const fit = (s: string, w: number) => (s.length > w ? `${s.slice(0, Math.max(0, w - 1))}…` : s.padEnd(w));
/** Pads a line that may hold ANSI colours (a chart line) to `w` visible columns. */
const padVisible = (s: string, w: number) => s + ' '.repeat(Math.max(0, w - visibleLength(s)));

/** Picks the job to show: the one asked for, else the selected index among the known jobs. */
function pickJob(state: FleetState, job: string | undefined, index: number): { shown?: JobState; jobs: string[] } {
  if (job !== undefined) return { shown: state.jobs.get(job), jobs: [job] };
  const jobs = [...state.jobs.keys()].sort();
  if (jobs.length === 0) return { jobs };
  return { shown: state.jobs.get(jobs[index % jobs.length]), jobs };
}

/**
 * The live terminal view of `fedmq monitor` (ink):
 *
 * - a header with the broker, job, run and connection; the coordinator's run state (running,
 *   done, failed, offline) and, while it runs, the engine's stage (`round 3 · fit · cohort 10 ·
 *   9 online · deadline in 42 s`) and the rounds done (accepted) of the total; the fleet by node
 *   state and the global model;
 * - a node table (state, last seen, numExamples, backend, last fit round with its loss and time);
 * - a rounds table of the last rounds: nodes reported/selected, train loss, centralized test
 *   accuracy (when the job has a test set), federated accuracy with its per-node spread
 *   (`0.912 (p10 0.850 … p90 0.960, worst decile 0.800)`, when nodes evaluate); a round with
 *   `accepted: false` reads `failed, retried` in red;
 * - accuracy (test and federated, with the p10/p90 of the nodes) and loss over rounds: line
 *   charts when the terminal is tall enough, sparklines otherwise; and the last round's bytes;
 * - with differential privacy, the latest round's ε spent (of the budget, when the run has one;
 *   `∞` while unbounded) and clip norm C next to the accuracy title (`ε 2.31/3 C 0.5`; on the
 *   test or federated accuracy sparkline in small terminals).
 *
 * Fits 80×24 and uses the room of larger terminals. `q` or Esc quits; Tab shows the next job
 * when no job was given.
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
  type Segment = { s: string; style: Record<string, unknown> };
  const text = (s: string, style: Record<string, unknown> = {}): Segment => ({ s, style });
  /** Cuts styled segments to `width` visible columns (plain text with an ellipsis; chart lines, drawn to size, are kept). */
  const clip = (segments: Segment[], width: number): Segment[] => {
    let left = width;
    const out: Segment[] = [];
    for (const { s, style } of segments) {
      if (left <= 0) break;
      const w = visibleLength(s);
      out.push({ s: w > left && w === s.length ? `${s.slice(0, Math.max(0, left - 1))}…` : s, style });
      left -= Math.min(w, left);
    }
    return out;
  };
  /** One line of styled segments, cut to the terminal's width here (ink would shrink every segment instead). */
  const row = (...segments: Segment[]) => {
    const children = clip(segments, columns).map(({ s, style }, i) => h(Text, { key: `s${i}`, wrap: 'truncate-end', ...style }, s));
    lines.push(h(Box, { key: `l${lines.length}`, width: columns, height: 1, overflow: 'hidden' }, ...children));
  };

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

  // coordinator line: run state, stage (while running), rounds done
  const c = shown?.coordinator;
  const stage = shown?.stage;
  const history = shown?.rounds ?? [];
  const lastRound = history.at(-1);
  const mode = c?.mode ?? lastRound?.mode;
  const word = roundWord(mode);
  const parts: Segment[] = [text('coordinator '), text(c?.state ?? 'unknown', { color: c ? RUN_COLOR[c.state] : 'gray', bold: true })];
  if (shown && (c || history.length > 0)) parts.push(text(`  ${acceptedRounds(shown)}${c?.rounds !== undefined ? `/${c.rounds}` : ''} ${word}s done`));
  if (mode) parts.push(text(`  ${mode === 'async' ? 'asynchronous (FedBuff)' : 'synchronous'}`, { dimColor: true }));
  row(...parts);

  // stage line, while the run is running (the retained stage of a finished run is not shown)
  if (stage && (!c || c.state === 'running')) {
    const sp = stageParts(stage, now, mode);
    const st: Segment[] = [text('stage '), text(`${sp.round} · `), text(sp.stage, { color: STAGE_COLOR[sp.stage], bold: true }), text(sp.details.map((d) => ` · ${d}`).join(''))];
    if (sp.deadline) st.push(text(' · '), text(`deadline in ${sp.deadline.text}`, { color: sp.deadline.secondsLeft <= 10 ? 'red' : undefined }));
    row(...st);
  } else {
    row(text('stage ', {}), text(c && c.state !== 'running' ? `– (run ${c.state})` : '–', { dimColor: true }));
  }

  // fleet and model line
  if (shown) {
    const { online, byState } = nodeCounts(shown);
    const states = NODE_STATES.filter((st) => byState[st] > 0 || st === 'training' || st === 'idle').map((st) => `${byState[st]} ${st}`).join(', ');
    const model = shown.model ? `  model ${shown.model.model} v${shown.model.version} (${formatBytes(shown.model.bytes)}, ${formatCount(shown.model.params)} params)` : '';
    row(text(`nodes ${online} online: ${states}${model}`, { dimColor: true }));
  } else {
    row(text(`waiting for fedmq messages on ${brokerUrl}…`, { dimColor: true }));
  }
  row(text('─'.repeat(columns), { dimColor: true }));

  // what the rounds have: a central test set, federated evaluation
  const hasTest = history.some((r) => r.testAccuracy !== null || r.testLoss !== null);
  const hasFed = history.some((r) => r.federatedEval !== null);
  const testAcc = history.map((r) => r.testAccuracy);
  const fedAcc = history.map((r) => r.federatedEval?.accuracy ?? null);
  const fedP10 = history.map((r) => r.federatedEval?.accuracySpread.p10 ?? null);
  const fedP90 = history.map((r) => r.federatedEval?.accuracySpread.p90 ?? null);
  const testLoss = history.map((r) => r.testLoss);
  const fedLoss = history.map((r) => r.federatedEval?.loss ?? null);
  const trainLoss = history.map((r) => r.trainLoss);
  const lastOf = (xs: readonly (number | null)[]) => [...xs].reverse().find((x) => x !== null) ?? null;
  // differential privacy: the latest round's ε (ε/budget) and clip norm C; failed rounds carry the ε spent too
  const privacy = [...history].reverse().find((x) => x.privacy)?.privacy;
  const privacyText = privacy
    ? `  ε ${formatEpsilon(privacy.epsilon)}${privacy.maxEpsilon !== null ? `/${formatEpsilon(privacy.maxEpsilon)}` : ''} C ${formatEpsilon(privacy.clipNorm)}`
    : '';

  // room: header (5 lines) + node table header (1) + separator (1) + footer (2) + 1 spare line
  const nodes = shown ? [...shown.nodes.values()].sort(byId) : [];
  const room = rows - 5 - 1 - 1 - 2 - 1;
  const nodesNeeded = Math.max(1, nodes.length);
  const sparkLines = (hasTest || !hasFed ? 2 : 0) + (hasFed ? 1 : 0) + (!hasTest && hasFed ? 1 : 0) + 1;
  const roundRows = history.length === 0 ? 0 : Math.max(Math.min(2, history.length), Math.min(history.length, 5, room - sparkLines - nodesNeeded - 2));
  const roundLines = roundRows === 0 ? 0 : roundRows + 2; // header, rows, separator
  const sideBySide = columns >= 90;
  const chartSpace = room - nodesNeeded - roundLines; // big charts only when every node fits
  const chartHeight = Math.min(10, sideBySide ? chartSpace - 1 : Math.floor(chartSpace / 2) - 1);
  const accuracyPoints = history.filter((r) => r.testAccuracy !== null || r.federatedEval !== null).length;
  const bigCharts = accuracyPoints >= 2 && chartHeight >= 4;
  const chartLines = bigCharts ? (sideBySide ? chartHeight + 1 : 2 * (chartHeight + 1)) : sparkLines;
  const tableRows = Math.max(1, room - chartLines - roundLines);

  // node table
  const idW = Math.min(24, Math.max(4, ...nodes.map((n) => n.nodeId.length)));
  const wide = columns >= 76;
  const header = `${'NODE'.padEnd(idW)} ${'STATE'.padEnd(10)} ${'SEEN'.padStart(8)} ${'EXAMPLES'.padStart(8)} ${wide ? `${'BACKEND'.padEnd(10)} ` : ''}${'ROUND'.padStart(5)} ${'LOSS'.padStart(7)} ${'TRAIN'.padStart(6)}`;
  row(text(header, { bold: true }));
  const visible = nodes.length > tableRows ? nodes.slice(0, tableRows - 1) : nodes;
  for (const n of visible) {
    const s = n.status;
    row(
      text(`${fit(n.nodeId, idW)} `),
      text(s.state.padEnd(10), { color: STATE_COLOR[s.state] }),
      text(
        ` ${ago(n.lastSeen, now).padStart(8)} ${String(s.numExamples ?? '-').padStart(8)} ${wide ? `${fit(s.device?.backend ?? '-', 10)} ` : ''}${String(s.lastRound?.round ?? '-').padStart(5)} ${fixed(s.lastRound?.loss).padStart(7)} ${(s.lastRound ? formatDuration(s.lastRound.trainMs) : '-').padStart(6)}`,
      ),
    );
  }
  if (visible.length < nodes.length) row(text(`… ${nodes.length - visible.length} more nodes (a taller terminal shows more)`, { dimColor: true }));
  if (nodes.length === 0) row(text('no nodes yet', { dimColor: true }));
  row(text('─'.repeat(columns), { dimColor: true }));

  // rounds table: the last rounds
  if (roundRows > 0) {
    const showTest = hasTest || !hasFed;
    const lead = (a: string, b: string, cc: string, d?: string) => `${a.padStart(5)} ${b.padStart(7)} ${cc.padStart(7)} ${d !== undefined ? `${d.padStart(8)} ` : ''}`;
    const leadWidth = lead('', '', '', showTest ? '' : undefined).length;
    const short = leadWidth + 49 > columns;
    row(text(`${lead(word.toUpperCase(), 'NODES', 'TRAIN', showTest ? 'TEST ACC' : undefined)}${hasFed ? 'FED ACC (nodes\' p10 … p90, worst decile)' : ''}`, { bold: true }));
    for (const r of history.slice(-roundRows)) {
      const head = lead(String(r.round), `${r.reported}/${r.selected}`, fixed(r.trainLoss), showTest ? fixed(r.testAccuracy, 3) : undefined);
      if (!r.accepted) {
        const failures = Object.entries(r.failures).map(([k, n]) => `${k}=${n}`).join(' ');
        row(text(lead(String(r.round), `${r.reported}/${r.selected}`, fixed(r.trainLoss))), text(`failed, retried${failures ? ` (${failures})` : ''}`, { color: 'red' }));
      } else {
        row(text(fit(`${head}${hasFed ? formatFederated(r.federatedEval, { short }) : ''}`, columns)));
      }
    }
    row(text('─'.repeat(columns), { dimColor: true }));
  }

  // charts
  const r = lastRound;
  const lossName = hasTest ? 'test loss' : hasFed ? 'federated loss' : 'train loss';
  const lossSeries = hasTest ? testLoss : hasFed ? fedLoss : trainLoss;
  if (bigCharts) {
    const w = sideBySide ? Math.floor((columns - 2) / 2) : columns;
    const accSeries = [hasTest ? testAcc : [], hasFed ? fedAcc : [], hasFed ? fedP10 : [], hasFed ? fedP90 : []];
    const acc = lineChart(accSeries, { width: w, height: chartHeight, decimals: 3, colors: ['green', 'cyan', 'gray', 'gray'] });
    const loss = lineChart(lossSeries, { width: w, height: chartHeight, decimals: 3 });
    const accTitle: [string, Record<string, unknown>][] = [[`accuracy over ${history.length} ${word}s:`, { bold: true }]];
    if (hasTest) accTitle.push([` test ${fixed(lastOf(testAcc), 3)}`, { color: 'green', bold: true }]);
    if (hasFed) accTitle.push([` federated ${fixed(lastOf(fedAcc), 3)}`, { color: 'cyan', bold: true }], [' p10/p90', { dimColor: true }]);
    const lossTitle = `${lossName} over ${history.length} ${word}s, last ${fixed(lastOf(lossSeries))}`;
    const privacyTitle = text(privacyText, { color: 'magenta' });
    const accWidth = accTitle.reduce((n, [t]) => n + t.length, 0);
    // side by side the accuracy title has w + 1 columns: ε goes after it when it fits, else at the end of the line
    const privacyLeft = privacyText !== '' && (!sideBySide || accWidth + privacyText.length <= w + 1);
    if (privacyLeft) accTitle.push([privacyText, { color: 'magenta' }]);
    const titleWidth = accWidth + (privacyLeft ? privacyText.length : 0);
    if (sideBySide) {
      row(
        ...clip(accTitle.map(([t, st]) => text(t, st)), w + 1), text(' '.repeat(Math.max(1, w + 2 - Math.min(titleWidth, w + 1)))), text(lossTitle, { bold: true }),
        ...(privacyText && !privacyLeft ? [privacyTitle] : []),
      );
      for (let i = 0; i < chartHeight; i++) row(text(padVisible(acc[i] ?? '', w + 2)), text(loss[i] ?? '', { color: 'yellow' }));
    } else {
      row(...accTitle.map(([t, st]) => text(t, st)));
      for (let i = 0; i < chartHeight; i++) row(text(acc[i] ?? ''));
      row(text(lossTitle, { bold: true }));
      for (let i = 0; i < chartHeight; i++) row(text(loss[i] ?? '', { color: 'yellow' }));
    }
  } else {
    // a line is 15 + sw + 2 + a value of up to 6: 17 columns spare, which ε and C may take
    const sw = Math.max(4, columns - 40 - Math.max(0, privacyText.length - 17));
    const spark = (name: string, values: readonly (number | null)[], color: string, value: string, ...extra: Segment[]) =>
      row(text(name.padEnd(15)), text(sparkline(values, sw), { color }), text(`  ${value}`), ...extra);
    const privacySpark = privacyText ? [text(privacyText, { color: 'magenta' })] : [];
    if (hasTest || !hasFed) spark('test accuracy', testAcc, 'green', fixed(lastOf(testAcc)), ...privacySpark);
    if (hasFed) spark('fed accuracy', fedAcc, 'cyan', fixed(lastOf(fedAcc)), ...(hasTest ? [] : privacySpark));
    spark(hasTest || !hasFed ? 'test loss' : 'fed loss', hasTest || !hasFed ? testLoss : fedLoss, 'yellow', fixed(lastOf(hasTest || !hasFed ? testLoss : fedLoss)));
    spark('train loss', trainLoss, 'yellow', fixed(lastOf(trainLoss)));
  }

  // footer
  row(
    text(
      r
        ? `last ${word} ${r.round}${r.accepted ? '' : ' (failed, retried)'}: ${r.reported}/${r.selected} reported, up ${formatBytes(r.bytesUp)}, down ${formatBytes(r.bytesDown)}, ${formatDuration(r.durationMs)}${r.staleness ? `, staleness mean ${r.staleness.mean.toFixed(1)} max ${r.staleness.max}` : ''}${Object.keys(r.failures).length ? `, failures ${Object.entries(r.failures).map(([k, n]) => `${k}=${n}`).join(' ')}` : ''}`
        : `no ${word} finished yet`,
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
