import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino, type Logger } from 'pino';
import { startBroker } from '@fedmq/broker';
import {
  AGGREGATOR_NAMES, CHECKPOINT_FILE, Coordinator, DEFAULT_METRICS_PORT, OPTIMIZER_NAMES, STRATEGY_NAMES, coordinatorMetrics, createStrategy, serveMetricsOrFallback,
  strategyCliOptions, type AsyncOptions, type CoordinatorCheckpoint, type StalenessFunction,
} from '@fedmq/coordinator';
import { checkDataFits, featureSize, getModelDefinition, initBackend, loadDatasetAsync, loadMnist, mnistDataDir, modelNames, parsePartition, subset, writeCsv, writeIdx, type Dataset } from '@fedmq/ml';
import { CODEC_NAMES, type CodecName, type DownlinkDtype, type FitConfig } from '@fedmq/protocol';
import { ATTACKS, DATASETS, parseChaos, type AttackName, type ChaosOptions, DEFAULT_JOB, SENSORS_DEMO, loadSimDataset, parseShard, planNodes, runLocalJob, type Shard, runSensorsDemo, startSimulation } from '@fedmq/simulator';
import { writeFile } from 'node:fs/promises';
import { roundHeader, roundLine } from './output.ts';
import { simulateProgress } from './progress.ts';
import { writeReport } from './report.ts';
import { registerMonitorCommand } from './monitor.ts';
import { registerNodeCommand } from './node-command.ts';
import { registerPrivacyCommand } from './privacy-command.ts';
import { registerInversionDemo } from './demo-inversion.ts';
import { LABELS_HELP, parseLabels } from './data-flags.ts';
import { addDpOptions, dpOptions, dpSummary, type DpFlags } from './dp-flags.ts';
import { addSecAggOptions, secaggOptions, secaggSummary, type SecAggFlags } from './secagg-flags.ts';
import { logLevelOption, onSignal, runProgram } from './process.ts';
import { withUrlCredentials } from './broker-url.ts';
import { assertJobId, defaultRunDir, prepareOutDir } from './out-dir.ts';
import { brokerSecurityOptions, clientMqttOptions, registerAuthCommand, registerCertsCommand, simulatedNodeMqtt, withBrokerSecurityOptions, withClientSecurityOptions, type BrokerSecurityFlags, type ClientSecurityFlags } from './security.ts';

const program = new Command('fedmq')
  .description('Federated learning for IoT and edge fleets over MQTT')
  .showHelpAfterError()
  .addOption(logLevelOption());

function logger(level: string): Logger {
  return pino({ level: (program.opts().logLevel as string | undefined) ?? level }, pino.destination(2));
}

const int = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
  return n;
};
const num = (name: string, ok: (n: number) => boolean, what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || !ok(n)) throw new InvalidArgumentError(`${name} must be ${what}`);
  return n;
};
const fraction = num('fraction', (n) => n > 0 && n <= 1, 'in (0, 1]');
const positive = (name: string) => num(name, (n) => n > 0, 'positive');

/** `--chaos` as chaos options, or commander's error. */
function parseChaosFlag(v: string): ChaosOptions {
  try {
    return parseChaos(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** `--shard I/N` as a shard, or commander's error. */
function shardFlag(v: string): Shard {
  try {
    return parseShard(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** The strategy flags, generated from the strategy descriptors (docs/strategies.md). */
const STRATEGY_FLAGS = strategyCliOptions();

/** The strategy parameters among the parsed options: one flat namespace of the descriptors' keys. */
function strategyParams(o: object): Record<string, unknown> {
  const given = o as Record<string, unknown>;
  return Object.fromEntries(STRATEGY_FLAGS.filter((f) => given[f.key] !== undefined).map((f) => [f.key, given[f.key]]));
}

/** `--staleness polynomial:A | constant` as a staleness function, or commander's error. */
function parseStaleness(v: string): StalenessFunction {
  if (v === 'constant') return { kind: 'constant' };
  const m = /^polynomial:([0-9]*\.?[0-9]+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('staleness must be polynomial:A (A ≥ 0) or constant');
  return { kind: 'polynomial', exponent: Number(m[1]) };
}

/** Flags of a job's rounds, shared by `coordinator` and the embedded `simulate` (commander's parsed values). */
interface RoundFlags extends DpFlags, SecAggFlags {
  rounds: number;
  fraction: number;
  minNodes?: number;
  minFitNodes: number;
  minAcceptedUpdates: number;
  minCompletionRate: number;
  overSelection: number;
  maxRoundRetries: number;
  deadlineMs: number;
  epochs: number;
  batchSize: number;
  lr: number;
  seed: number;
  codec: CodecName;
  topk: number;
  blockSize: number;
  downlink: DownlinkDtype;
  strategy: string;
  aggregator?: string;
  serverOptimizer?: string;
  maxPayloadBytes?: number;
  mode: 'sync' | 'async';
  bufferSize: number;
  concurrency: number;
  staleness: StalenessFunction;
  maxStaleness: number;
  evaluateFraction: number;
  valFraction?: number;
  /** A path (coordinator --test-data), false with --no-test-data, true/undefined: the default. */
  testData?: boolean | string;
}

/** FedBuff's options from the flags, in async mode. */
function asyncOptions(o: RoundFlags): AsyncOptions | undefined {
  return o.mode === 'async' ? { bufferSize: o.bufferSize, concurrency: o.concurrency, staleness: o.staleness, maxStaleness: o.maxStaleness } : undefined;
}

function fitConfig(o: RoundFlags): FitConfig {
  return { epochs: o.epochs, batchSize: o.batchSize, learningRate: o.lr };
}

/** Round, training, codec, strategy and engine options shared by `coordinator` and the embedded `simulate`. */
function withRoundOptions(cmd: Command): Command {
  const before = new Set(cmd.options.map((x) => x.attributeName()));
  addRoundOptions(cmd);
  for (const x of cmd.options) if (!before.has(x.attributeName())) ROUND_OPTION_KEYS.add(x.attributeName());
  return cmd;
}

/** Attribute names of the round options (filled by {@link withRoundOptions}). */
const ROUND_OPTION_KEYS = new Set<string>();

function addRoundOptions(cmd: Command): Command {
  cmd
    .option('--rounds <n>', 'accepted rounds (async: server steps) to run', int('rounds', 1), DEFAULT_JOB.rounds)
    .option('--fraction <f>', 'fraction of online nodes selected each round', fraction, DEFAULT_JOB.fraction)
    .option('--min-nodes <k>', 'nodes that must be online before a round starts (coordinator: 2, simulate: all nodes)', int('min-nodes', 1))
    .option('--min-fit-nodes <k>', 'nodes sampled at least per round (the fraction decides above it)', int('min-fit-nodes', 1), 1)
    .option('--min-accepted-updates <k>', 'accepted updates a round needs (else the model is kept and the round retried)', int('min-accepted-updates', 1), 1)
    .option('--min-completion-rate <r>', 'accepted updates a round needs, as a fraction of the selected nodes', num('min-completion-rate', (n) => n >= 0 && n <= 1, 'in [0, 1]'), 0)
    .option('--over-selection <f>', 'select this fraction more nodes than the strategy picks; close the round once the pick reported', num('over-selection', (n) => n >= 0, '≥ 0'), 0)
    .option('--max-round-retries <n>', 'failed rounds in a row before the run aborts', int('max-round-retries'), 3)
    .option('--deadline-ms <ms>', 'deadline of each stage that waits for nodes (async: of each fit task), ms', int('deadline-ms', 1), DEFAULT_JOB.deadlineMs)
    .option('--epochs <n>', 'local epochs E', int('epochs', 1), DEFAULT_JOB.fit.epochs)
    .option('--batch-size <n>', 'local batch size B', int('batch-size', 1), DEFAULT_JOB.fit.batchSize)
    .option('--lr <rate>', 'local SGD learning rate', positive('lr'), DEFAULT_JOB.fit.learningRate)
    .option('--seed <n>', 'seed of the initial model, selection and partition', int('seed'), DEFAULT_JOB.seed)
    .addOption(new Option('--codec <name>', 'uplink codec of the updates (docs/codecs.md)').choices([...CODEC_NAMES]).default('float32'))
    .option('--topk <fraction>', 'top-k codecs: fraction of each tensor sent', num('topk', (n) => n > 0 && n <= 1, 'in (0, 1]'), 0.01)
    .option('--block-size <n>', 'int8 codecs: values per scale block (0 = one per tensor)', int('block-size'), 256)
    .addOption(new Option('--downlink <dtype>', 'encoding of the global model sent to nodes').choices(['float32', 'float16']).default('float32'))
    .addOption(new Option('--strategy <name>', 'strategy preset: an aggregator and a server optimizer (docs/strategies.md)').choices([...STRATEGY_NAMES]).default('fedavg'))
    .addOption(new Option('--aggregator <name>', "replace the preset's aggregator").choices([...AGGREGATOR_NAMES]))
    .addOption(new Option('--server-optimizer <name>', "replace the preset's server optimizer").choices([...OPTIMIZER_NAMES]));
  for (const f of STRATEGY_FLAGS) {
    cmd.option(f.flag, f.help, (v: string) => {
      try {
        return f.parse(v);
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
    });
  }
  cmd
    .option('--max-payload-bytes <n>', 'send the model and updates in chunks of at most this many bytes (e.g. 131072 for AWS IoT Core)', int('max-payload-bytes', 1024))
    .addOption(new Option('--mode <mode>', 'sync rounds, or async buffered aggregation (FedBuff)').choices(['sync', 'async']).default('sync'))
    .option('--buffer-size <k>', 'async: accepted updates per server step (K)', int('buffer-size', 1), 3)
    .option('--concurrency <c>', 'async: fit tasks in flight at once (C)', int('concurrency', 1), 6)
    .option('--staleness <fn>', 'async: staleness weight, polynomial:A = (1 + τ)^-A, or constant', parseStaleness, { kind: 'polynomial', exponent: 0.5 })
    .option('--max-staleness <s>', 'async: updates more than S versions behind are rejected (FEDMQ_TOO_STALE)', int('max-staleness'), 10)
    .option('--evaluate-fraction <f>', 'federated evaluation: fraction of online nodes that evaluate each new model on their held-out data', num('evaluate-fraction', (n) => n >= 0 && n <= 1, 'in [0, 1]'), 0)
    .option('--val-fraction <f>', "fraction of each node's data held out for evaluation (default 0.1 with --evaluate-fraction, else 0)", num('val-fraction', (n) => n >= 0 && n <= 0.9, 'in [0, 0.9]'))
    .option('--no-test-data', 'no central evaluation (a fleet has no central test set; use --evaluate-fraction)');
  return addSecAggOptions(addDpOptions(cmd));
}

withBrokerSecurityOptions(program
  .command('broker')
  .description('run an Aedes MQTT broker')
  .option('--port <port>', 'TCP port for MQTT', int('port'), 1883)
  .option('--host <host>', 'interface to listen on', '0.0.0.0')
  .option('--http-port <port>', 'also serve the web dashboard, /metrics and MQTT over WebSocket (/mqtt) on this HTTP port', int('http-port'))
  .option('--http-host <host>', 'interface of the HTTP port (default: --host)')
  .option('--persistence <where>', 'retained messages and sessions: memory, or redis://host:port[/db] / unix:/path/redis.sock to keep them across restarts', 'memory')
  .option('--cluster <redis-url>', 'join a cluster of brokers on this Redis (redis://host:port[/db]): clients may connect to any of them; implies --persistence on the same URL (docs/scale.md)'))
  .action(async (o: { port: number; host: string; httpPort?: number; httpHost?: string; persistence: string; cluster?: string } & BrokerSecurityFlags, cmd: Command) => {
    const log = logger('info');
    const security = brokerSecurityOptions(o, cmd.getOptionValueSource('port') !== 'default');
    // --cluster implies the Redis persistence on its URL; an explicit other --persistence is refused by startBroker
    const persistence = o.cluster && cmd.getOptionValueSource('persistence') === 'default' ? undefined : o.persistence;
    const broker = await startBroker({ port: o.port, host: o.host, httpPort: o.httpPort, httpHost: o.httpHost, logger: log, persistence, cluster: o.cluster, ...security });
    const shown = (url: string) => url.replace('localhost', o.host === '0.0.0.0' ? '0.0.0.0' : o.host);
    process.stdout.write(`fedmq broker listening on ${[broker.port === broker.tlsPort ? undefined : broker.url, broker.tlsUrl].filter(Boolean).map((u) => shown(u!)).join(' and ')}${broker.credentials ? ` (auth: ${broker.credentials.size} users)` : ''}${broker.cluster ? ` (cluster: ${broker.cluster.url}, broker id ${broker.aedes.id})` : ''}\n`);
    if (broker.httpUrl) process.stdout.write(`dashboard: ${broker.httpUrl}  (Prometheus: ${broker.httpUrl}metrics, MQTT over WebSocket: ${broker.wsUrl})\n`);
    onSignal(() => broker.close());
  });

/** Flags of `fedmq coordinator`. */
interface CoordinatorFlags extends RoundFlags, ClientSecurityFlags {
  broker?: string;
  job?: string;
  resume?: string;
  model: string;
  metricsPort?: number;
  metricsHost: string;
  out?: string;
  force?: boolean;
  /** Class names of a --test-data CSV's labels, in class order. */
  labels?: string[];
}

withClientSecurityOptions(withRoundOptions(
  program
    .command('coordinator')
    .description('run the rounds of a federated job')
    .option('--broker <url>', 'broker URL, e.g. mqtt://localhost:1883 (required unless --resume)')
    .option('--job <id>', 'job id (required unless --resume)')
    .option('--resume <dir>', 'continue the run saved in this run folder (its checkpoint.msgpack and config.json; flags given now override the saved ones)')
    .option('--model <name>', `model to train (${listModelsSafe()})`, 'mnist-2nn')
    .option('--test-data <path>', 'held-out test set (a CSV, an IDX images file, .gz or not, or a folder holding one of them); default for mnist-2nn: the MNIST test set')
    .option('--labels <names>', `--test-data CSV: ${LABELS_HELP}`, parseLabels)
    .option('--metrics-port <port>', `port of the Prometheus /metrics endpoint (default ${DEFAULT_METRICS_PORT}, or a free one if taken)`, int('metrics-port'))
    .option('--metrics-host <host>', 'interface of the /metrics endpoint (0.0.0.0: every interface, for a Prometheus on another machine)', '127.0.0.1')
    .option('--out <dir>', 'run folder for history.json, report.html and model/ (new or empty, unless --force)')
    .option('--force', 'write into a --out folder that is not empty (its files of the same names are replaced)'),
), 'MQTT username (default "coordinator" when a password or certificate is given)').action(async (given: CoordinatorFlags, cmd: Command) => {
  const log = logger('info');
  const { o, out, resume, shownBroker } = await coordinatorRun(given, cmd);
  await initBackend();
  const testData = await coordinatorTestData(o, log);
  const strategy = createStrategy(
    { strategy: o.strategy, aggregator: o.aggregator, serverOptimizer: o.serverOptimizer, fraction: o.fraction, minFitNodes: o.minFitNodes, fitConfig: fitConfig(o), params: strategyParams(o) },
    { logger: log },
  );
  const coordinator = new Coordinator({
    brokerUrl: o.broker!, job: o.job!, model: o.model, rounds: o.rounds, minAvailableNodes: o.minNodes ?? 2, deadlineMs: o.deadlineMs, outDir: out, testData, resume,
    minAcceptedUpdates: o.minAcceptedUpdates, minCompletionRate: o.minCompletionRate, overSelection: o.overSelection, maxRoundRetries: o.maxRoundRetries,
    mode: o.mode, async: asyncOptions(o), evaluateFraction: o.evaluateFraction, valFraction: o.valFraction,
    seed: o.seed, logger: log, mqtt: clientMqttOptions(o, 'coordinator'), codec: o.codec, codecParams: { k: o.topk, blockSize: o.blockSize }, maxPayloadBytes: o.maxPayloadBytes,
    downlink: o.downlink, strategy, dp: dpOptions(o), secagg: secaggOptions(o),
  });
  if (coordinator.privacy) process.stdout.write(`${dpSummary(coordinator.privacy, o.targetEpsilon)}\n`);
  for (const line of secaggSummary(o, coordinator)) process.stdout.write(`${line}\n`);
  const metrics = await serveMetricsOrFallback(coordinatorMetrics(coordinator), o.metricsPort ?? DEFAULT_METRICS_PORT, o.metricsPort === undefined, o.metricsHost);
  const federated = o.evaluateFraction > 0;
  process.stdout.write(`coordinator for job ${o.job} on ${shownBroker}; waiting for ${o.minNodes ?? 2} node(s); run folder ${out}\nPrometheus metrics: ${metrics.url}\n${roundHeader({ federated })}\n`);
  coordinator.on('round', (r) => process.stdout.write(`${roundLine(r, { federated })}\n`));
  const running = coordinator.run().then(async (h) => {
    await writeReport(out, { job: o.job!, runId: coordinator.runId, config: coordinator.describe(), history: h, nodes: coordinator.nodes() });
    return h;
  });
  // a stopped run ends with what it has (history, model, report) before the process exits
  onSignal(async () => {
    await coordinator.close();
    await running.catch(() => undefined);
    await metrics.close();
  });
  const history = await running;
  await coordinator.close();
  await metrics.close();
  if (coordinator.stopError) process.stdout.write(`stopped: ${coordinator.stopError.code}: ${coordinator.stopError.message}\n`);
  const last = history.at(-1);
  const acc = last?.testAccuracy ?? last?.federatedEval?.accuracy;
  process.stdout.write(`done: ${history.length} rounds, ${last?.testAccuracy == null && last?.federatedEval ? 'federated' : 'test'} accuracy ${acc?.toFixed(4) ?? '-'}; wrote ${out}/history.json, ${out}/report.html and ${out}/model/model.json\n`);
});

/**
 * The coordinator's options and run folder. A new run checks its job id and run folder (new or
 * empty, unless `--force`) before it writes anything, then writes its flags to `config.json` in
 * the run folder — never the password, nor the broker URL's (the URL is kept without user and
 * password, the user as `username`); `--resume DIR` reads them back, lets flags given now
 * override them, and loads `DIR/checkpoint.msgpack`. `shownBroker` is the broker URL to print
 * (password as `***`).
 * @throws FedmqError FEDMQ_BAD_CONFIG on a bad job id, a bad broker URL or a run folder that is
 *   not empty.
 */
async function coordinatorRun(given: CoordinatorFlags, cmd: Command): Promise<{ o: CoordinatorFlags; out: string; shownBroker: string; resume?: CoordinatorCheckpoint }> {
  if (!given.resume) {
    if (!given.broker || !given.job) throw new InvalidArgumentError('--broker and --job are required (unless --resume DIR)');
    assertJobId(given.job);
    const { flags: o, shown } = withUrlCredentials(given);
    const out = resolve(given.out ?? defaultRunDir(given.job));
    await prepareOutDir(out, { force: given.force });
    // --force: an earlier run's checkpoint must not be taken for this run's by a later --resume
    if (given.force) await rm(join(out, CHECKPOINT_FILE), { force: true });
    const { password: _p, force: _f, ...saved } = o;
    await writeFile(join(out, 'config.json'), `${JSON.stringify(saved, null, 2)}\n`);
    return { o, out, shownBroker: shown! };
  }
  const out = resolve(given.resume);
  let saved: Record<string, unknown> = {};
  try {
    saved = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // a checkpoint without config.json (written by the library): every flag must be given again
  }
  const merged: Record<string, unknown> = { ...given };
  for (const [k, v] of Object.entries(saved)) if (cmd.getOptionValueSource(k) !== 'cli' && k !== 'resume' && k !== 'out') merged[k] = v;
  // config.json holds what commander parsed, written by this same command: the same flag types
  const m = merged as unknown as CoordinatorFlags;
  if (!m.broker || !m.job) throw new InvalidArgumentError(`${out}/config.json has no broker or job: give --broker and --job`);
  assertJobId(m.job);
  const { flags: o, shown } = withUrlCredentials(m);
  // killed before its first round closed: nothing to continue, start the run again
  if (!existsSync(join(out, CHECKPOINT_FILE))) return { o, out, shownBroker: shown! };
  return { o, out, shownBroker: shown!, resume: await Coordinator.loadCheckpoint(out) };
}

registerNodeCommand(program);

/** Flags of `fedmq simulate`. */
interface SimulateFlags extends RoundFlags, ClientSecurityFlags {
  broker?: string;
  job: string;
  nodes: number;
  dataset: string;
  partition: string;
  workers?: number;
  shard?: Shard;
  byzantine?: number;
  attack?: AttackName;
  chaos?: ChaosOptions;
  port?: number;
  host: string;
  httpPort?: number;
  metricsPort?: number;
  metricsHost: string;
  out?: string;
  force?: boolean;
  /** False with --no-progress. */
  progress: boolean;
}

/**
 * Flags that mean something only to the embedded coordinator and broker (every round option but
 * `--seed`, which also seeds the partition): refused with --broker instead of silently ignored.
 */
function embeddedOnly(): string[] {
  return [...ROUND_OPTION_KEYS].filter((k) => k !== 'seed').concat(['port', 'host', 'httpPort', 'metricsPort', 'metricsHost', 'out', 'force']);
}

withClientSecurityOptions(withRoundOptions(
  program
    .command('simulate')
    .description('simulate many edge nodes over real MQTT; without --broker, also run an embedded broker and coordinator')
    .option('--broker <url>', 'broker URL (omit to run an embedded broker and coordinator)')
    .option('--job <id>', 'job id', DEFAULT_JOB.job)
    .option('--nodes <n>', 'number of nodes', int('nodes', 1), DEFAULT_JOB.nodes)
    .addOption(new Option('--dataset <name>', 'dataset').choices([...DATASETS]).default(DEFAULT_JOB.dataset))
    .option('--partition <spec>', 'iid | dirichlet:ALPHA | natural', DEFAULT_JOB.partition)
    .option('--workers <n>', 'worker threads (default: one per core)', int('workers', 1))
    .option('--shard <I/N>', 'with --broker: run shard I of N of the fleet (--nodes is the fleet\'s total; disjoint node ids and data, docs/scale.md)', shardFlag)
    .option('--byzantine <fraction>', 'fraction of nodes that are malicious, in [0, 1) (with --attack)', num('byzantine', (n) => n >= 0 && n < 1, 'in [0, 1)'))
    .addOption(new Option('--attack <name>', 'what the malicious nodes do').choices([...ATTACKS]))
    .option('--chaos <spec>', 'inject faults: default, or dropout=P,stragglers=P,straggler-ms=MS,upload-kill=P,broker-restart=ROUND (embedded broker only)', parseChaosFlag)
    .option('--port <port>', 'embedded broker port (default 1883, or a free one if taken)', int('port'))
    .option('--host <host>', 'interface of the embedded broker and its dashboard (0.0.0.0: every interface, an open broker without --auth)', '127.0.0.1')
    .option('--http-port <port>', 'embedded broker\'s dashboard port (default 8080, or a free one if taken)', int('http-port'))
    .option('--metrics-port <port>', `coordinator's Prometheus /metrics port (embedded mode; default ${DEFAULT_METRICS_PORT}, or a free one if taken)`, int('metrics-port'))
    .option('--metrics-host <host>', 'interface of the coordinator\'s /metrics (embedded mode; 0.0.0.0: every interface)', '127.0.0.1')
    .option('--out <dir>', 'run folder (embedded mode; new or empty, unless --force); default runs/<run-id>')
    .option('--force', 'write into a --out folder that is not empty (embedded mode)')
    .option('--no-progress', 'no live progress bar (drawn only when stdout is a terminal)'),
), 'MQTT username with --broker (default: each node\'s own id)').action(async (given: SimulateFlags, cmd: Command) => {
  assertJobId(given.job);
  const { flags: o, shown: shownBroker } = withUrlCredentials(given);
  const partition = parsePartition(o.partition);
  if (partition.kind === 'natural' && cmd.getOptionValueSource('nodes') === 'default') o.nodes = 0; // one node per natural group
  if (o.shard && !o.broker) throw new InvalidArgumentError('--shard: shards join a fleet on a shared broker; give --broker URL (docs/scale.md)');
  if (o.broker) {
    const given = embeddedOnly().filter((k) => cmd.getOptionValueSource(k) === 'cli');
    if (given.length > 0) {
      throw new InvalidArgumentError(`${given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}: the coordinator decides this; with --broker only the nodes run here (pass it to \`fedmq coordinator\`)`);
    }
    const log = logger('info');
    await initBackend();
    const data = loadSimDataset(o.dataset);
    const progress = simulateProgress({ stream: process.stdout, enabled: o.progress, nodes: o.nodes, rounds: 0, mode: 'sync', nodesOnly: true });
    const sim = await startSimulation({
      brokerUrl: o.broker, job: o.job, nodes: o.nodes, train: data.train, groups: data.groups, groupPrefix: data.groupPrefix, partition, seed: o.seed,
      workers: o.workers, logLevel: log.level, byzantine: o.byzantine, attack: o.attack, mqtt: simulatedNodeMqtt(o), chaos: o.chaos, shard: o.shard,
      onConnected: progress.connected,
    }).catch((err: unknown) => {
      progress.stop();
      throw err;
    });
    progress.onSimulation(sim);
    onSignal(() => {
      progress.stop();
      return sim.stop();
    });
    const shard = o.shard ? ` (shard ${o.shard.index + 1}/${o.shard.count}: ${sim.plan[0].nodeId} … ${sim.plan.at(-1)!.nodeId})` : '';
    progress.write(`${sim.plan.length} nodes${shard} of job ${o.job} on ${shownBroker} in ${sim.workers} worker threads (tfjs ${sim.backend}); Ctrl-C to stop\n`);
    return;
  }
  const log = logger('warn');
  const out = resolve(o.out ?? defaultRunDir(o.job));
  await prepareOutDir(out, { force: o.force });
  const t0 = performance.now();
  const codec = o.codec === 'float32' ? '' : `, codec ${o.codec}${o.codec.startsWith('topk') ? ` k=${o.topk}` : ''}`;
  const mode = o.mode === 'async' ? `async FedBuff (K=${o.bufferSize}, C=${o.concurrency}) server steps` : 'rounds';
  process.stdout.write(`fedmq: ${o.nodes} nodes, ${o.dataset}, partition ${o.partition}, seed ${o.seed}, ${o.rounds} ${mode} of ${o.strategy === 'fedavg' ? 'FedAvg' : o.strategy} (E=${o.epochs}, B=${o.batchSize}, lr=${o.lr}, fraction ${o.fraction}${codec})\n`);
  const federated = o.evaluateFraction > 0;
  const dp = dpOptions(o);
  const progress = simulateProgress({ stream: process.stdout, enabled: o.progress, nodes: o.nodes, rounds: o.rounds, mode: o.mode, bufferSize: o.bufferSize });
  const result = await runLocalJob({
    job: o.job, dataset: o.dataset, nodes: o.nodes, partition, seed: o.seed, rounds: o.rounds, fraction: o.fraction, deadlineMs: o.deadlineMs,
    minAvailableNodes: o.minNodes, minFitNodes: o.minFitNodes, minAcceptedUpdates: o.minAcceptedUpdates, minCompletionRate: o.minCompletionRate,
    overSelection: o.overSelection, maxRoundRetries: o.maxRoundRetries, mode: o.mode, async: asyncOptions(o), evaluateFraction: o.evaluateFraction,
    valFraction: o.valFraction, centralEval: o.testData !== false,
    fit: fitConfig(o), outDir: out, port: o.port, workers: o.workers, logger: log,
    metricsPort: o.metricsPort, metricsHost: o.metricsHost, host: o.host, httpPort: o.httpPort, byzantine: o.byzantine, attack: o.attack, chaos: o.chaos, strategy: o.strategy, aggregator: o.aggregator,
    serverOptimizer: o.serverOptimizer, strategyParams: strategyParams(o), codec: o.codec, codecParams: { k: o.topk, blockSize: o.blockSize },
    maxPayloadBytes: o.maxPayloadBytes, downlink: o.downlink, dp, secagg: secaggOptions(o),
    onBroker: (url, dashboard) => progress.write(`broker: ${url}\ndashboard: ${dashboard}\n`),
    onMetrics: (url) => progress.write(`Prometheus metrics: ${url}\n`),
    onNodes: (n) => progress.write(`${n.nodes} nodes connected in ${n.workers} worker threads (tfjs backend ${n.backend})\n${roundHeader({ federated })}\n`),
    onRound: (r) => progress.write(`${roundLine(r, { federated })}\n`),
    onCoordinator: (c) => {
      if (c.privacy) progress.write(`${dpSummary(c.privacy, o.targetEpsilon)}\n`);
      for (const line of secaggSummary(o, c)) progress.write(`${line}\n`);
      progress.onCoordinator(c);
    },
    onSimulation: progress.onSimulation,
  }).finally(progress.stop);
  if (result.stopError) process.stdout.write(`stopped: ${result.stopError.code}: ${result.stopError.message}\n`);
  await writeReport(out, { job: o.job, runId: result.runId, config: result.config, history: result.history, nodes: result.nodes });
  const last = result.history.at(-1);
  const acc = last?.testAccuracy ?? last?.federatedEval?.accuracy;
  const what = last?.testAccuracy == null && last?.federatedEval ? 'federated' : 'test';
  process.stdout.write(`final ${what} accuracy ${acc?.toFixed(4) ?? '-'} after ${result.history.length} ${o.mode === 'async' ? 'server steps' : 'rounds'} in ${((performance.now() - t0) / 1000).toFixed(1)} s; run written to ${out}\n`);
});

const demo = program
  .command('demo')
  .description('ready-made demonstrations');

demo
  .command('sensors')
  .description('federated anomaly detection on 4 TelosB motes (one node each) vs each mote alone')
  .option('--rounds <n>', 'rounds', int('rounds', 1), SENSORS_DEMO.rounds)
  .option('--seed <n>', 'seed', int('seed'), SENSORS_DEMO.seed)
  .option('--port <port>', 'embedded broker port (default 1883, or a free one if taken)', int('port'))
  .option('--out <dir>', 'run folder (new or empty, unless --force); default runs/<run-id>')
  .option('--force', 'write into a --out folder that is not empty')
  .action(async (o: { rounds: number; seed: number; port?: number; out?: string; force?: boolean }) => {
    const out = resolve(o.out ?? defaultRunDir('telosb'));
    await prepareOutDir(out, { force: o.force });
    const f = SENSORS_DEMO.fit;
    process.stdout.write(`fedmq demo: TelosB motes (Suthaharan et al. 2010, CC BY 4.0), telosb-ae autoencoder, ${o.rounds} rounds of FedAvg (E=${f.epochs}, B=${f.batchSize}, lr=${f.learningRate}), seed ${o.seed}\n`);
    const r = await runSensorsDemo({
      rounds: o.rounds, seed: o.seed, port: o.port, outDir: out, logger: logger('warn'),
      onBroker: (url) => process.stdout.write(`broker: ${url}\n${roundHeader()}\n`),
      onRound: (rec) => process.stdout.write(`${roundLine(rec)}\n`),
    });
    const p = (x: number) => (Number.isNaN(x) ? '  n/a' : x.toFixed(3));
    process.stdout.write(`\nper reading, label-free threshold; labels only for scoring\n`);
    process.stdout.write(`mote  place    events | federated: flagged  precision  recall     F1 | local-only: flagged  precision  recall     F1\n`);
    r.federated.forEach((fr, i) => {
      const lr = r.localOnly[i];
      process.stdout.write(
        `${String(fr.moteId).padStart(4)}  ${(fr.indoor ? 'indoor' : 'outdoor').padEnd(7)}  ${String(fr.events).padStart(6)} |            ${String(fr.flagged).padStart(7)}  ${p(fr.metrics.precision).padStart(9)}  ${p(fr.metrics.recall).padStart(6)}  ${p(fr.metrics.f1).padStart(5)} |             ${String(lr.flagged).padStart(7)}  ${p(lr.metrics.precision).padStart(9)}  ${p(lr.metrics.recall).padStart(6)}  ${p(lr.metrics.f1).padStart(5)}\n`,
      );
    });
    const s = r.summary;
    process.stdout.write(`F1 over the motes with events: federated ${p(s.federated.meanF1)} (mean of motes), ${p(s.federated.pooledF1)} (pooled); local-only ${p(s.localOnly.meanF1)} (mean), ${p(s.localOnly.pooledF1)} (pooled)\n`);
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'sensors.json'), `${JSON.stringify({ federated: r.federated, localOnly: r.localOnly, summary: r.summary }, null, 2)}\n`);
    process.stdout.write(`run written to ${out}\n`);
  });
registerInversionDemo(demo);

program
  .command('data')
  .description('prepare local data files for nodes')
  .command('split')
  .description('split a dataset into one folder per node (MNIST-style IDX files, or data.csv), for `fedmq node --data`')
  .addOption(new Option('--dataset <name>', 'dataset').choices([...DATASETS]).default(DEFAULT_JOB.dataset))
  .option('--nodes <n>', 'number of nodes', int('nodes', 1), 2)
  .option('--partition <spec>', 'iid | dirichlet:ALPHA | natural', 'iid')
  .option('--seed <n>', 'seed of the partition', int('seed'), DEFAULT_JOB.seed)
  .addOption(new Option('--format <format>', 'file format (default: idx for mnist, csv otherwise)').choices(['idx', 'csv']))
  .requiredOption('--out <dir>', 'folder to write node-000/, node-001/, … (mote-1/, … for a natural split); new or empty, unless --force')
  .option('--force', 'write into a --out folder that is not empty (node folders of the same names are written over)')
  .action(async (o: { dataset: string; nodes: number; partition: string; seed: number; out: string; format?: string; force?: boolean }, cmd: Command) => {
    const spec = parsePartition(o.partition);
    const data = loadSimDataset(o.dataset);
    const nodes = spec.kind === 'natural' && cmd.getOptionValueSource('nodes') === 'default' ? 0 : o.nodes;
    const format = o.format ?? (o.dataset === 'mnist' ? 'idx' : 'csv');
    await prepareOutDir(o.out, { force: o.force });
    for (const n of planNodes(data.train, nodes, spec, o.seed, data.groups, data.groupPrefix)) {
      const dir = join(o.out, n.nodeId);
      const part = subset(data.train, n.indices);
      if (format === 'idx') writeIdx(dir, part);
      else writeCsv(join(dir, 'data.csv'), part);
      process.stdout.write(`${dir}: ${n.indices.length} examples (model ${data.model})\n`);
    }
  });

registerMonitorCommand(program);
registerAuthCommand(program);
registerCertsCommand(program);
registerPrivacyCommand(program);

function listModelsSafe(): string {
  try {
    return modelNames().join(', ');
  } catch {
    return 'see docs';
  }
}

/**
 * The coordinator's central test set: `--test-data` (gzip-compressed IDX too, `--labels` for a
 * CSV's class names), or MNIST's test set for mnist-2nn unless `--no-test-data`. Checked against
 * the model before any node is waited for, and logged (file, examples, features, classes).
 * @throws FedmqMlError ML_BAD_DATA when it cannot be loaded or does not fit the model (naming the
 *   file and both shapes); InvalidArgumentError for --labels without --test-data.
 */
async function coordinatorTestData(o: CoordinatorFlags, log: Logger): Promise<Dataset | undefined> {
  const given = typeof o.testData === 'string' ? o.testData : undefined;
  if (o.labels && !given) throw new InvalidArgumentError('--labels names the classes of a --test-data CSV: give --test-data too');
  const data = given ? await loadDatasetAsync(given, { labels: o.labels }) : o.testData !== false && o.model === 'mnist-2nn' ? loadMnist('test') : undefined;
  if (!data) return undefined;
  const file = given ?? join(mnistDataDir(), 't10k-images-idx3-ubyte');
  let model;
  try {
    model = getModelDefinition(o.model);
  } catch {
    return data; // an unknown model: the coordinator refuses it (FEDMQ_BAD_CONFIG)
  }
  checkDataFits(data, model, file);
  log.info({ file, numExamples: data.numExamples, features: featureSize(data.featureShape), classes: data.numClasses }, `test set: ${data.numExamples} examples of ${featureSize(data.featureShape)} features, ${data.numClasses} classes, from ${file}`);
  return data;
}

runProgram(program);
