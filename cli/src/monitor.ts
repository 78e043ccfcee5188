import type { Command } from 'commander';
import { pino } from 'pino';
import { jsonLine, plainLine, renderMonitor, startMonitor, type ConnectionEvent, type MonitorEvent } from '@fedmq/monitor';
import { clientMqttOptions, withClientSecurityOptions, type ClientSecurityFlags } from './security.ts';
import { withUrlCredentials } from './broker-url.ts';

interface MonitorCliOptions extends ClientSecurityFlags {
  broker: string;
  job?: string;
  json?: boolean;
}

/**
 * Adds `fedmq monitor --broker URL [--job ID] [--json]` to `program`: a live, read-only view of a
 * fleet through its MQTT topics (docs/monitor.md). On a terminal it draws the ink UI (q or Ctrl-C
 * quits); with `--json` it prints one JSON object per event on stdout; when stdout is not a
 * terminal and `--json` is not given, one plain line per event.
 *
 * A user and password in the broker URL are taken out of it (they log the monitor in; the URL it
 * prints has neither). With a username the MQTT client id is `<username>-monitor-<random>` (the
 * broker pins a monitor's client ids to its username; startMonitor's default), else `fedmq-monitor-<random>`.
 */
export function registerMonitorCommand(program: Command): void {
  withClientSecurityOptions(program
    .command('monitor')
    .description('watch a fleet live through its MQTT topics (works with any MQTT broker; read-only)')
    .requiredOption('--broker <url>', 'broker URL, e.g. mqtt://localhost:1883')
    .option('--job <id>', 'job id (default: every job on the broker)')
    .option('--json', 'print one JSON object per event on stdout (see docs/monitor.md)'), 'MQTT username (default "monitor" when a password or certificate is given)')
    .action(async (given: MonitorCliOptions) => {
      const { flags: o } = withUrlCredentials(given);
      const ui = !o.json && process.stdout.isTTY === true;
      // connection errors are part of the UI or of the stream on stdout; the log repeats them only when asked for (--log-level debug)
      const log = pino({ level: (program.opts().logLevel as string | undefined) ?? 'warn' }, pino.destination(2));
      const mqtt = clientMqttOptions(o, 'monitor');
      const monitor = startMonitor({ brokerUrl: o.broker, job: o.job, mqtt });
      let stopping: Promise<void> | undefined;
      const stop = (code: number) => {
        stopping ??= monitor.close().then(
          () => process.exit(code),
          () => process.exit(1),
        );
        return stopping;
      };
      process.on('SIGINT', () => void stop(0)).on('SIGTERM', () => void stop(0));
      process.stdout.on('error', () => void stop(0)); // e.g. EPIPE when piped into `head`

      if (ui) {
        const app = renderMonitor({ monitor, brokerUrl: o.broker, job: o.job });
        monitor.events.on('connection', (e) => e.type === 'error' && log.debug({ broker: o.broker, err: e.message }, 'mqtt error'));
        await app.waitUntilExit();
        await stop(0);
        return;
      }

      const line = o.json ? jsonLine : plainLine;
      const print = (e: MonitorEvent | ConnectionEvent) => process.stdout.write(`${line(e)}\n`);
      monitor.events.on('event', print);
      monitor.events.on('connection', (e) => {
        if (e.type === 'error') log.debug({ broker: o.broker, err: e.message }, 'mqtt error');
        print(e);
      });
    });
}
