import type { EventEmitter } from 'node:events';
import cliProgress from 'cli-progress';
import type { Coordinator, CoordinatorEvents } from '@fedmq/coordinator';
import type { StageName } from '@fedmq/protocol';
import type { Simulation, SimulationEvents } from '@fedmq/simulator';

/**
 * The live progress bar of `fedmq simulate` (cli-progress): nodes connected while they connect,
 * then per round the updates reported out of the nodes selected and the time left to the fit
 * deadline, or, in async (FedBuff) mode, the updates in the buffer out of K and the server steps
 * taken. Drawn only when the stream is a terminal and `--no-progress` was not given; otherwise
 * nothing is drawn and every line goes to the stream as it is, byte for byte.
 *
 * The core is {@link progressView}, a pure function of {@link ProgressState} and the time;
 * {@link simulateProgress} keeps that state from the coordinator's and the simulation's events
 * and redraws the bar from it.
 */

/** What the run is doing, as the bar shows it. */
export type ProgressPhase =
  /** Loading data, starting the broker and workers: nothing connected yet that we can count. */
  | 'starting'
  /** Nodes connecting (before the first round, or waiting for enough of them to come back). */
  | 'connecting'
  /** With `--broker`: every node of this process is connected; no update sent yet. */
  | 'connected'
  /** A stage of the round engine. */
  | Exclude<StageName, 'waiting'>;

/** Everything the bar shows. Counts are of nodes or updates; times are ms since the epoch. */
export interface ProgressState {
  phase: ProgressPhase;
  /** `sync` rounds or `async` FedBuff server steps (with `--broker` the coordinator decides: `sync` is shown). */
  mode: 'sync' | 'async';
  /** Nodes online (embedded: in the coordinator's registry; `--broker`: this process's nodes). */
  connected: number;
  /** Nodes of the run; 0 while not known (a natural split before its plan is made). */
  total: number;
  /** The round (sync) or server step (async) in progress; 0 before the first. */
  round: number;
  /** Accepted rounds (sync) or server steps (async) done, and how many the run takes (0: not known, with `--broker`). */
  done: number;
  rounds: number;
  /** Sync: updates accepted in this round; async: updates in the buffer; `--broker`: updates this process's nodes sent in `round`. */
  reported: number;
  /** Sync: nodes selected for this round's fit stage; 0 when not known (`--broker`). */
  selected: number;
  /** Deadline of the stage in progress (fit, or federated evaluate), when it has one. */
  deadline?: number;
  /** Async: K, the updates per server step. */
  bufferSize?: number;
}

/** What the bar draws: its fill (`value` of `total`; an empty bar when `total` is 0) and the text beside it. */
export interface ProgressView {
  value: number;
  total: number;
  text: string;
}

/** Time left as `45s` or `2m05s`, rounded up to whole seconds; `ms` ≤ 0 is `0s`. */
export function formatTimeLeft(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/**
 * The bar's fill and text for a state at time `now` (ms since the epoch, the clock the deadline is
 * on). Pure. For example, a sync fit stage reads
 * `round 3 · 2/15 done · fit · reported 12/100 · 998/1000 online · deadline in 1m52s`.
 */
export function progressView(s: ProgressState, now: number): ProgressView {
  const online = s.total > 0 ? `${s.connected}/${s.total}` : String(s.connected);
  switch (s.phase) {
    case 'starting':
      return { value: 0, total: 0, text: s.total > 0 ? `starting ${s.total} nodes…` : 'starting…' };
    case 'connecting': {
      const text = s.done > 0 ? `${s.mode === 'async' ? 'server step' : 'round'} ${s.round} · waiting for nodes · ${online} online` : `nodes connected ${online}`;
      return { value: s.connected, total: s.total, text };
    }
    case 'connected':
      return { value: s.connected, total: s.total, text: `nodes connected ${online} · waiting for tasks` };
    default:
      break;
  }
  const left = s.deadline === undefined ? [] : [s.deadline > now ? `deadline in ${formatTimeLeft(s.deadline - now)}` : 'deadline passed'];
  if (s.mode === 'async') {
    const k = s.bufferSize ?? 0;
    const parts = [`server steps ${s.done}${s.rounds > 0 ? `/${s.rounds}` : ''}`, `buffer ${s.reported}/${k}`, ...(s.phase === 'fit' ? [] : [s.phase]), `${online} online`];
    return { value: s.reported, total: k, text: parts.join(' · ') };
  }
  const done = s.rounds > 0 ? [`${s.done}/${s.rounds} done`] : [];
  if (s.selected > 0) {
    const parts = [`round ${s.round}`, ...done, s.phase, `reported ${s.reported}/${s.selected}`, `${online} online`, ...left];
    return { value: s.reported, total: s.selected, text: parts.join(' · ') };
  }
  // --broker: the selection is the coordinator's; only this process's nodes' updates are known
  const parts = [`round ${s.round}`, ...done, `${s.reported} of ${s.connected} nodes sent an update`, ...left];
  return { value: s.reported, total: s.connected, text: parts.join(' · ') };
}

/** The coordinator events and the registry count the bar reads (a {@link Coordinator}). */
export type ProgressCoordinator = EventEmitter<CoordinatorEvents> & Pick<Coordinator, 'onlineNodes'>;
/** The simulation the bar reads (a {@link Simulation}). */
export type ProgressSimulation = EventEmitter<SimulationEvents> & Pick<Simulation, 'plan'>;

/** Where the bar is drawn: a Writable; it is drawn only when `isTTY` is true. */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** Options of {@link simulateProgress}. */
export interface SimulateProgressOptions {
  /** Where the lines and the bar go (`process.stdout`). */
  stream: ProgressStream;
  /** False with `--no-progress`: no bar even on a terminal. */
  enabled: boolean;
  /** Nodes of the run (0 while not known: a natural split). */
  nodes: number;
  /** Accepted rounds or server steps of the run; 0 when not known (`--broker`). */
  rounds: number;
  mode: 'sync' | 'async';
  /** Async: K, updates per server step. */
  bufferSize?: number;
  /**
   * `true` with `--broker`: no coordinator here; rounds are followed through the simulation's
   * `updated` events (this process's nodes only).
   */
  nodesOnly?: boolean;
  /** Clock of the deadlines, ms since the epoch; default `Date.now` (the coordinator's default clock). */
  clock?: () => number;
  /** Redraws per second at most; default 5. */
  fps?: number;
}

/** A running progress display. Its methods are bound: pass them as callbacks as they are. */
export interface SimulateProgress {
  /** Whether the bar is drawn (a terminal, and not `--no-progress`). */
  readonly active: boolean;
  /** Writes text (whole lines, ending in a newline) above the bar; without a bar, straight to the stream. */
  write(text: string): void;
  /** Follows a coordinator's `stage`, `accepted` and `round` events and its count of online nodes (runLocalJob's `onCoordinator`). */
  onCoordinator(c: ProgressCoordinator): void;
  /** Learns the number of nodes from the simulation; with `nodesOnly`, follows its `updated` events (runLocalJob's `onSimulation`). */
  onSimulation(s: ProgressSimulation): void;
  /** Nodes connected so far out of `total` this process runs (startSimulation's `onConnected`); with `nodesOnly`, the count shown while they connect. */
  connected(count: number, total?: number): void;
  /** Writes what is pending, clears the bar and stops redrawing. Safe to call twice. */
  stop(): void;
}

/**
 * Starts the progress display of `fedmq simulate` on `o.stream`. When the stream is not a
 * terminal or `o.enabled` is false, it draws nothing, listens to nothing, and `write` is the
 * stream's own `write`: the output is what it was without a bar.
 */
export function simulateProgress(o: SimulateProgressOptions): SimulateProgress {
  const active = o.enabled && o.stream.isTTY === true;
  if (!active) {
    return { active, write: (text) => void o.stream.write(text), onCoordinator() {}, onSimulation() {}, connected() {}, stop() {} };
  }
  const clock = o.clock ?? Date.now;
  const state: ProgressState = {
    phase: 'starting', mode: o.nodesOnly ? 'sync' : o.mode, connected: 0, total: o.nodes, round: 0, done: 0, rounds: o.rounds, reported: 0, selected: 0,
    bufferSize: o.bufferSize,
  };
  let online: (() => number) | undefined;
  const multi = new cliProgress.MultiBar({
    stream: o.stream, format: '{bar} {text}', barsize: 24, barCompleteChar: '█', barIncompleteChar: '░', fps: o.fps ?? 5,
    // the bar is cleared at the end: the output then reads as it does without one
    clearOnComplete: true, hideCursor: false, linewrap: true, emptyOnZero: true, gracefulExit: false,
  });
  const bar = multi.create(0, 0, { text: '' });
  multi.on('update-pre', () => {
    if (online) state.connected = online();
    const v = progressView(state, clock());
    bar.setTotal(v.total);
    bar.update(v.value, { text: v.text });
  });
  let stopped = false;
  return {
    active,
    write(text) {
      if (stopped) o.stream.write(text);
      else multi.log(text);
    },
    onCoordinator(c) {
      online = () => c.onlineNodes().length;
      if (state.phase === 'starting') state.phase = 'connecting';
      c.on('stage', (s) => {
        if (s.stage === 'waiting') {
          state.round = s.round;
          state.phase = 'connecting';
          return;
        }
        if (state.mode === 'async') {
          // after a server step the next step's fit comes at once; its central evaluation
          // ('evaluate' of the step taken) runs beside it and its record comes later
          if (s.stage === 'fit' && s.round !== state.round) {
            state.round = s.round;
            state.reported = 0;
          }
          state.phase = 'fit';
          return;
        }
        state.round = s.round;
        if (s.stage === 'fit') {
          state.selected = s.cohort;
          state.reported = 0;
        }
        // a stage that waits for no node (aggregate, central evaluation) has no deadline
        state.deadline = s.deadline;
        state.phase = s.stage;
      });
      c.on('accepted', (a) => {
        if (a.round === state.round) state.reported++;
      });
      c.on('round', (r) => {
        if (r.accepted) state.done++;
      });
    },
    onSimulation(s) {
      if (state.total === 0) state.total = s.plan.length;
      if (!o.nodesOnly) return;
      // this process's nodes (a shard of the fleet, say)
      state.total = s.plan.length;
      state.connected = s.plan.length;
      if (state.phase === 'starting' || state.phase === 'connecting') state.phase = 'connected';
      s.on('updated', (u) => {
        if (u.round > state.round) {
          state.round = u.round;
          state.reported = 0;
          state.phase = 'fit';
        }
        if (u.round === state.round) state.reported++;
      });
    },
    connected(count, total) {
      // embedded, the coordinator's count of online nodes is shown: it decides when rounds start
      if (!o.nodesOnly) return;
      state.connected = count;
      if (total !== undefined) state.total = total;
      if (state.phase === 'starting') state.phase = 'connecting';
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi.update(); // writes the lines still buffered above the bar
      multi.stop();
    },
  };
}
