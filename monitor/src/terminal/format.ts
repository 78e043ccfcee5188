import type { MonitorEvent } from '../state.ts';
import type { ConnectionEvent } from '../monitor.ts';

/**
 * One flat JSON object per monitor event, as `fedmq monitor --json` prints them (one per line;
 * docs/monitor.md). Field names are the protocol's (docs/protocol.md §3); `event` names the kind;
 * `ts` is the sender's timestamp (epoch ms) where the message has one; the protocol's `v` is
 * dropped.
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
      const { v: _v, ...m } = e.metrics;
      return { event: 'round', ...m };
    }
    case 'model': {
      const { v: _v, ...m } = e.meta;
      return { event: 'model', ...m };
    }
    case 'task': {
      if (!e.task) return { event: 'task', job: e.job, cleared: true };
      const { v: _v, ...t } = e.task;
      return { event: 'task', ...t };
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
      return `[${s.job}] coordinator ${e.previous ?? '-'} -> ${s.state}, round ${s.round}${s.rounds !== undefined ? `/${s.rounds}` : ''} (run ${s.runId})`;
    }
    case 'node': {
      const s = e.status;
      const last = s.lastRound ? `, last round ${s.lastRound.round} loss ${fixed(s.lastRound.loss)} in ${formatDuration(s.lastRound.trainMs)}` : '';
      return `[${s.job}] node ${s.nodeId} ${e.previous ?? '-'} -> ${s.state}${s.numExamples !== undefined ? `, ${s.numExamples} examples` : ''}${last}`;
    }
    case 'nodeRemoved':
      return `[${e.job}] node ${e.nodeId} removed`;
    case 'round': {
      const m = e.metrics;
      const failures = Object.entries(m.failures).map(([k, n]) => `${k}=${n}`).join(' ');
      return `[${m.job}] round ${m.round}: ${m.reported}/${m.selected} nodes, train loss ${fixed(m.trainLoss)}, test loss ${fixed(m.testLoss)}, test acc ${fixed(m.testAccuracy)}, up ${formatBytes(m.bytesUp)}, down ${formatBytes(m.bytesDown)}, ${formatDuration(m.durationMs)}${failures ? `, failures ${failures}` : ''}`;
    }
    case 'model':
      return `[${e.job}] model ${e.meta.model} v${e.meta.version} (round ${e.meta.round}), ${formatBytes(e.meta.bytes)}, ${formatCount(e.meta.params)} params`;
    case 'task':
      return e.task
        ? `[${e.job}] task: round ${e.task.round}, ${e.task.selected.length} selected, deadline in ${formatDuration(e.task.timeoutMs)}`
        : `[${e.job}] task cleared (end of run)`;
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
