// The public API of @fedmq/monitor: a curated list (docs/monitor.md, docs/dashboard.md).
export { dashboardAssets, type DashboardAsset } from './dashboard/assets.ts';
export { FleetState, acceptedRounds, monitorTopics, nodeCounts, type JobState, type MessageInfo, type MonitorEvent, type NodeView } from './state.ts';
export { startMonitor, type ConnectionEvent, type MonitorEmitterEvents, type MonitorOptions, type RunningMonitor } from './monitor.ts';
export { MonitorApp, renderMonitor, type MonitorAppProps, type MonitorSource, type RenderMonitorOptions } from './terminal/app.ts';
export {
  ago, eventRecord, formatBytes, formatCount, formatDuration, formatFederated, jsonLine, plainLine, roundSummary, roundWord, stageParts, stageText,
  type StageParts,
} from './terminal/format.ts';
export { lineChart, sparkline, visibleLength } from './terminal/chart.ts';
export { renderReport, type ReportInput, type ReportNode } from './report.ts';
