import type { EngineMode, FederatedEval, PrivacyRecord, RoundMetrics, StageStatus } from '@fedmq/protocol';
import type { MonitorEvent } from '../state.ts';
import type { ConnectionEvent } from '../monitor.ts';

/**
 * One flat JSON object per monitor event, as `fedmq monitor --json` prints them (one per line;
 * docs/monitor.md). Field names are the protocol's (docs/protocol.md §3); `event` names the kind;
 * `ts` is the sender's timestamp (epoch ms) where the message has one; the protocol's `v` is
 * dropped. A `round` record is the whole RoundMetrics (`accepted`, `mode`, `federatedEval`,
 * `staleness` included); a `stage` record is the StageStatus plus `previous` (the stage before).
 */
export function eventRecord(e: MonitorEvent | ConnectionEvent): Record<string, unknown> {
  switch (e.type) {
    case 'coordinator': {
      const { v: _v, config: _c, ...s } = e.status;
      return { event: 'coordinator', ...s, previous: e.previous ?? null };
    }
    case 'node': {
      const { v: _v, device, ...s } = e.status;
      return { event: 'node', ...s, backend: device?.backend, previous: e.previous ?? null };
    }
    case 'nodeRemoved':
      return { event: 'nodeRemoved', job: e.job, nodeId: e.nodeId };
    case 'round': {
      const { v: _v, job, runId, ...m } = e.metrics;
      return { event: 'round', job, runId, ...m };
    }
    case 'stage': {
      if (!e.stage) return { event: 'stage', job: e.job, cleared: true, previous: e.previous ?? null };
      const { v: _v, ...st } = e.stage;
      return { event: 'stage', ...st, previous: e.previous ?? null };
    }
    case 'model': {
      const { v: _v, ...m } = e.meta;
      return { event: 'model', ...m };
    }
    case 'run':
      return { event: 'run', job: e.job, runId: e.runId, previousRunId: e.previousRunId ?? null };
    case 'invalid':
      return { event: 'invalid', job: e.job ?? null, topic: e.topic, code: e.code, message: e.message };
    case 'connected':
      return { event: 'connected', broker: e.brokerUrl, topics: e.topics };
    case 'offline':
      return { event: 'offline', broker: e.brokerUrl };
    case 'error':
      return { event: 'error', broker: e.brokerUrl, message: e.message };
  }
}

/** {@link eventRecord} as one line of JSON (no trailing newline). */
export function jsonLine(e: MonitorEvent | ConnectionEvent): string {
  return JSON.stringify(eventRecord(e));
}

const fixed = (x: number | null | undefined, d = 4) => (x === null || x === undefined ? '-' : x.toFixed(d));

/** `round` or, for asynchronous (FedBuff) jobs, `step`: what the engine calls one server step. */
export function roundWord(mode: EngineMode | undefined): 'round' | 'step' {
  return mode === 'async' ? 'step' : 'round';
}

/**
 * Federated evaluation of a round in one line: the numExamples-weighted accuracy of the global
 * model on the nodes' held-out data and the spread of the per-node accuracies, e.g.
 * `0.912 (p10 0.850 … p90 0.960, worst decile 0.800)`; `-` when the round has none.
 * `short` writes `worst` instead of `worst decile`.
 */
export function formatFederated(fe: FederatedEval | null | undefined, opts: { short?: boolean } = {}): string {
  if (!fe) return '-';
  const s = fe.accuracySpread;
  return `${fe.accuracy.toFixed(3)} (p10 ${s.p10.toFixed(3)} … p90 ${s.p90.toFixed(3)}, ${opts.short ? 'worst' : 'worst decile'} ${fe.worstDecileAccuracy.toFixed(3)})`;
}

/**
 * A privacy number (ε, a budget, σ, C) with 3 significant digits and no trailing zeros:
 * `2.3141` → `2.31`, `3` → `3`, `0.5` → `0.5`, `12.345` → `12.3`; `∞` for null (an ε that no noise
 * bounds yet, PrivacyRecord `epsilon: null`).
 */
export function formatEpsilon(x: number | null): string {
  return x === null ? '∞' : String(Number(x.toPrecision(3)));
}

/** δ in exponent notation with up to 3 significant digits: `1e-5`, `2.5e-6`. */
export function formatDelta(delta: number): string {
  return Number(delta.toPrecision(3)).toExponential();
}

/**
 * The differential-privacy budget spent so far, as the round summary shows it: `ε 2.31 (δ 1e-5)`,
 * with the run's budget `ε 2.31/3 (δ 1e-5)`, `ε ∞ (δ 1e-5)` while ε is unbounded.
 */
export function formatPrivacy(p: PrivacyRecord): string {
  return `ε ${formatEpsilon(p.epsilon)}${p.maxEpsilon !== null ? `/${formatEpsilon(p.maxEpsilon)}` : ''} (δ ${formatDelta(p.delta)})`;
}

/** The pieces of {@link stageText}, for views that style them separately. */
export interface StageParts {
  /** `round 3` (`step 3` in async mode). */
  round: string;
  stage: StageStatus['stage'];
  /** `cohort 10` (not for `waiting`), `9 online`. */
  details: string[];
  /** Seconds left to the deadline (0 once passed) and their text (`42 s`, `2m05s` beyond two minutes); absent without a deadline. */
  deadline?: { secondsLeft: number; text: string };
}

/** {@link stageText} in pieces. */
export function stageParts(stage: StageStatus, now: number, mode?: EngineMode): StageParts {
  const details = stage.stage === 'waiting' ? [] : [`cohort ${stage.cohort}`];
  details.push(`${stage.online} online`);
  const out: StageParts = { round: `${roundWord(mode)} ${stage.round}`, stage: stage.stage, details };
  if (stage.deadline !== undefined) {
    const left = Math.max(0, Math.ceil((stage.deadline - now) / 1000));
    out.deadline = { secondsLeft: left, text: left < 120 ? `${left} s` : formatDuration(left * 1000) };
  }
  return out;
}

/**
 * Where the round engine is, e.g. `round 3 · fit · cohort 10 · 9 online · deadline in 42 s`
 * (`waiting` shows only the nodes online; in async mode `step` replaces `round`). The deadline
 * is counted from `now` (epoch ms; the deadline is on the coordinator's clock).
 */
export function stageText(stage: StageStatus, now: number, mode?: EngineMode): string {
  const p = stageParts(stage, now, mode);
  return [p.round, p.stage, ...p.details, ...(p.deadline ? [`deadline in ${p.deadline.text}`] : [])].join(' · ');
}

/**
 * One round's metrics as a line: nodes, losses, centralized test accuracy (when the job has a
 * test set), federated accuracy and its spread (when nodes evaluated), staleness (async), the
 * privacy budget spent (with differential privacy, {@link formatPrivacy}: `ε 2.31/3 (δ 1e-5)`),
 * bytes, time and failures; a round with `accepted: false` reads `round 4 failed, retried: …`.
 */
export function roundSummary(m: RoundMetrics): string {
  const parts = [`${m.reported}/${m.selected} nodes`, `train loss ${fixed(m.trainLoss)}`];
  if (m.testLoss !== null || m.testAccuracy !== null) parts.push(`test loss ${fixed(m.testLoss)}`, `test acc ${fixed(m.testAccuracy)}`);
  if (m.federatedEval) parts.push(`fed acc ${formatFederated(m.federatedEval)}`);
  if (m.staleness) parts.push(`staleness mean ${m.staleness.mean.toFixed(2)} max ${m.staleness.max}`);
  if (m.privacy) parts.push(formatPrivacy(m.privacy));
  parts.push(`up ${formatBytes(m.bytesUp)}`, `down ${formatBytes(m.bytesDown)}`, formatDuration(m.durationMs));
  const failures = Object.entries(m.failures).map(([k, n]) => `${k}=${n}`).join(' ');
  if (failures) parts.push(`failures ${failures}`);
  return `${roundWord(m.mode)} ${m.round}${m.accepted ? '' : ' failed, retried'}: ${parts.join(', ')}`;
}

/** Human bytes: `797 kB`, `3.2 MB` (SI). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)} MB`;
  return `${(n / 1e9).toFixed(1)} GB`;
}

/** A count as `950`, `199k`, `1.2M`. */
export function formatCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)}M`;
}

/** A duration in ms as `850ms`, `3.2s`, `2m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** How long ago `then` was, as `3s ago` (`now` default `Date.now()`). */
export function ago(then: number, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - then) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/**
 * One plain-text line per event, for a monitor whose stdout is not a terminal and who did not
 * ask for JSON (e.g. `fedmq monitor … | tee log`).
 */
export function plainLine(e: MonitorEvent | ConnectionEvent): string {
  switch (e.type) {
    case 'coordinator': {
      const s = e.status;
      return `[${s.job}] coordinator ${e.previous ?? '-'} -> ${s.state}${s.mode ? ` (${s.mode})` : ''}, ${s.round}${s.rounds !== undefined ? `/${s.rounds}` : ''} ${s.mode === 'async' ? 'steps' : 'rounds'} done (run ${s.runId})`;
    }
    case 'node': {
      const s = e.status;
      const last = s.lastRound ? `, last round ${s.lastRound.round} loss ${fixed(s.lastRound.loss)} in ${formatDuration(s.lastRound.trainMs)}` : '';
      return `[${s.job}] node ${s.nodeId} ${e.previous ?? '-'} -> ${s.state}${s.numExamples !== undefined ? `, ${s.numExamples} examples` : ''}${last}`;
    }
    case 'nodeRemoved':
      return `[${e.job}] node ${e.nodeId} removed`;
    case 'round':
      return `[${e.metrics.job}] ${roundSummary(e.metrics)}`;
    case 'stage':
      return e.stage ? `[${e.job}] ${stageText(e.stage, e.stage.ts)}` : `[${e.job}] stage cleared`;
    case 'model':
      return `[${e.job}] model ${e.meta.model} v${e.meta.version} (round ${e.meta.round}), ${formatBytes(e.meta.bytes)}, ${formatCount(e.meta.params)} params${e.meta.chunks ? `, ${e.meta.chunks} chunks` : ''}`;
    case 'run':
      return `[${e.job}] new run ${e.runId}${e.previousRunId ? ` (was ${e.previousRunId})` : ''}`;
    case 'invalid':
      return `[${e.job ?? '?'}] invalid message on ${e.topic}: ${e.code}: ${e.message}`;
    case 'connected':
      return `connected to ${e.brokerUrl}; watching ${e.topics.join(', ')}`;
    case 'offline':
      return `broker ${e.brokerUrl} unreachable; reconnecting`;
    case 'error':
      return `mqtt error: ${e.message}`;
  }
}
