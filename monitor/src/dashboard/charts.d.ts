// Types of charts.js (a plain browser ES module, shared by the dashboard and the run report) for
// the TypeScript that imports it (report.ts). Keep in step with charts.js.
import type { PrivacyRecord, RoundRecord } from '@fedmq/protocol';

/** A round as charts.js takes it: a RoundRecord (RoundMetrics messages are ones too). */
export type ChartRecord = RoundRecord;

/** A column of {@link roundTable}. */
export interface RoundTableColumn {
  /** Stable id: `round`, `result`, `nodes`, `failures`, `train-loss`, `test-loss`, `test-accuracy`, `fed-accuracy`, `fed-spread`, `fed-worst`, `fed-local-better`, `staleness`, `epsilon`, `bytes-down`, `bytes-up`, `time`. */
  id: string;
  label: string;
  /** A numeric column (right-aligned). */
  num: boolean;
  /** A label to show as it is, not uppercased as the headers are (`ε`: an uppercase ε reads E). */
  keepCase?: true;
}

/** The round table: columns, and per round (sorted) the cell texts in column order. */
export interface RoundTable {
  columns: RoundTableColumn[];
  rows: Array<{ round: number; accepted: boolean; cells: string[] }>;
}

/** Bytes with SI units, 3 significant digits: 2391000 → "2.39 MB"; "–" when not a number. */
export function formatBytes(n: number | null | undefined): string;
/** A fraction as a percentage with two decimals: 0.8412 → "84.12 %"; "–" when missing. */
export function formatPercent(v: number | null | undefined): string;
/** A privacy number (ε, a budget, σ, C) with 3 significant digits, no trailing zeros: 2.3141 → "2.31"; "∞" for null; "–" when not a number. */
export function formatEpsilon(v: number | null | undefined): string;
/** δ in exponent notation, up to 3 significant digits: 1e-5 → "1e-5"; "–" when not a number. */
export function formatDelta(v: number | null | undefined): string;
/** The privacy record of the latest round that has one, or null (a run without differential privacy). */
export function lastPrivacy(records: readonly ChartRecord[]): PrivacyRecord | null;
/** A privacy record as texts (see charts.js): ε, ε / budget, δ, mode, σ and the clip norm C. */
export function privacyTexts(p: PrivacyRecord): { epsilon: string; budget: string; delta: string; mode: string; sigma: string; clip: string };
/** Total of a failures map. */
export function failureCount(failures: Record<string, number> | undefined): number;
/** A failures map as "timeout: 1, FEDMQ_STALE_UPDATE: 2" ("–" when none). */
export function failuresText(failures: Record<string, number> | undefined): string;
/** The round table of the dashboard and the report (see charts.js). */
export function roundTable(records: readonly ChartRecord[]): RoundTable;
/** Creates the four charts (needs the global `Chart` of chart.umd.js: browser only). */
export function createCharts(canvases: Record<'accuracy' | 'loss' | 'bytes' | 'participation', unknown>): Record<'accuracy' | 'loss' | 'bytes' | 'participation', unknown>;
/** Replaces the charts' data with `records`. */
export function setHistory(charts: ReturnType<typeof createCharts>, records: readonly ChartRecord[]): void;
