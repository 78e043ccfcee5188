export {};
export { dashboardAssets, type DashboardAsset } from './dashboard/assets.ts';
export { FleetState, monitorTopics, nodeCounts, type JobState, type MessageInfo, type MonitorEvent, type NodeView, type TaskView } from './state.ts';
export { startMonitor, type ConnectionEvent, type MonitorEmitterEvents, type MonitorOptions, type RunningMonitor } from './monitor.ts';
export { MonitorApp, renderMonitor, type MonitorAppProps, type MonitorSource, type RenderMonitorOptions } from './terminal/app.ts';
export { ago, eventRecord, formatBytes, formatCount, formatDuration, jsonLine, plainLine } from './terminal/format.ts';
export { lineChart, sparkline } from './terminal/chart.ts';
export { renderReport, type ReportInput, type ReportNode, type ReportRound } from './report.ts';
