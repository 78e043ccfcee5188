/** `fedmq node`: an edge node on this device (docs/scale.md, "Edge footprint", for its memory). */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import type { BackendName } from '@fedmq/ml';
import { clientMqttOptions, withClientSecurityOptions, type ClientSecurityFlags } from './client-security.ts';
import { LABELS_HELP, parseLabels } from './data-flags.ts';
import { fullGc } from './edge-runtime.ts';
import { withUrlCredentials } from './broker-url.ts';
import { onSignal } from './process.ts';

/** Flags of `fedmq node`. */
interface NodeFlags extends ClientSecurityFlags {
  broker: string;
  job: string;
  id: string;
  data: string;
  labels?: string[];
  backend?: BackendName;
}

/**
 * Peak RSS of this process, bytes: the kernel's high-water mark (VmHWM of /proc/self/status) on
 * Linux, else getrusage's ru_maxrss. (On Linux ru_maxrss survives exec: a node started by a large
 * process reports that process's peak.)
 */
export function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024; // KiB
}

/** This process's memory, MB (10⁶ bytes): peak and current RSS, V8 heap in use, and memory outside the V8 heap (typed arrays, the wasm heap). */
export function memoryMb(): { peakRssMb: number; rssMb: number; heapUsedMb: number; externalMb: number } {
  const m = process.memoryUsage();
  const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
  return { peakRssMb: mb(peakRssBytes()), rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), externalMb: mb(m.external) };
}

/**
 * Adds `fedmq node` to `program`. The node and its tfjs runtime are imported when the command
 * runs, and the local data is loaded as compactly as it is stored (IDX pixel bytes stay bytes,
 * see `LoadOptions.keepBytes` of @fedmq/ml), and a full GC runs after each answer the node
 * published. The node logs its memory once its data is loaded and with every update, and prints
 * its peak RSS with every round it trained.
 */
export function registerNodeCommand(program: Command): void {
  withClientSecurityOptions(program
    .command('node')
    .description('run an edge node on this device with its local data')
    .requiredOption('--broker <url>', 'broker URL, e.g. mqtt://192.168.1.10:1883')
    .requiredOption('--job <id>', 'job id')
    .requiredOption('--id <nodeId>', 'this node\'s id (1-64 of A-Z a-z 0-9 _ . -)')
    .requiredOption('--data <path>', 'local data: a CSV with a label column, an IDX images file (.gz or not), or a folder holding one of them')
    .option('--labels <names>', LABELS_HELP, parseLabels)
    .addOption(new Option('--backend <name>', 'tfjs backend (default: tensorflow if installed, else wasm, else cpu)').choices(['tensorflow', 'wasm', 'cpu'])), 'MQTT username (default: the node id)')
    .action(async (given: NodeFlags, cmd: Command) => {
      const { flags: o, shown } = withUrlCredentials(given);
      const log = pino({ level: (cmd.optsWithGlobals().logLevel as string | undefined) ?? 'info' }, pino.destination(2));
      const [{ initBackend, loadDatasetAsync }, { EdgeNode, deviceInfo }] = await Promise.all([import('@fedmq/ml'), import('@fedmq/edge-node')]);
      const backend = await initBackend(o.backend);
      const data = await loadDatasetAsync(o.data, { keepBytes: true, labels: o.labels });
      log.info({ backend, data: o.data, numExamples: data.numExamples, features: data.featureShape, classes: data.numClasses, memory: memoryMb() }, `tfjs backend: ${backend}`);
      const node = new EdgeNode({ brokerUrl: o.broker, job: o.job, nodeId: o.id, data, device: deviceInfo(backend), logger: log, mqtt: clientMqttOptions(o, o.id) });
      // the round's garbage goes between rounds, not after ~64 MB of it (see fullGc)
      const gc = fullGc();
      node.on('evaluated', () => gc());
      node.on('updated', (u) => {
        gc();
        const memory = memoryMb();
        log.info({ round: u.round, taskId: u.taskId, memory }, 'memory');
        process.stdout.write(`round ${u.round}: trained on ${data.numExamples} examples, loss ${u.loss.toFixed(4)}, ${(u.trainMs / 1000).toFixed(1)} s, sent ${u.bytes} bytes, peak RSS ${Math.round(memory.peakRssMb)} MB\n`);
      });
      node.on('jobEnded', (e) => process.stdout.write(`job ${o.job} ${e.state} after round ${e.round}; waiting for the next run (Ctrl-C to exit)\n`));
      onSignal(() => node.stop());
      await node.start();
      process.stdout.write(`node ${o.id} connected to ${shown} (tfjs backend ${backend}, ${data.numExamples} examples); waiting for rounds\n`);
    });
}
