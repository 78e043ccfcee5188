import { pino, type Logger } from 'pino';
import { startBrokerThread, type BrokerThread } from '@fedmq/broker';
import { Coordinator, DEFAULT_METRICS_PORT, type DpOptions, type SecAggJobOptions, coordinatorMetrics, createStrategy, serveMetricsOrFallback, type AsyncOptions } from '@fedmq/coordinator';
import { initBackend, type PartitionSpec } from '@fedmq/ml';
import type { CodecName, CodecParams, FedmqError, FitConfig, NamedTensor, NodeStatus, RoundRecord } from '@fedmq/protocol';
import { loadSimDataset } from './datasets.ts';
import { startSimulation, type Simulation } from './simulation.ts';
import type { AttackName } from './attacks.ts';
import type { ChaosOptions } from './chaos.ts';

/** The default job `npm start` runs, chosen by measurement (docs/defaults.md). */
export const DEFAULT_JOB = {
  job: 'mnist',
  dataset: 'mnist',
  nodes: 10,
  partition: 'dirichlet:0.5',
  seed: 42,
  rounds: 15,
  fraction: 1,
  deadlineMs: 120_000,
  fit: { epochs: 1, batchSize: 32, learningRate: 0.2 } satisfies FitConfig,
};

/** Options of {@link runLocalJob}. */
export interface LocalJobOptions {
  job: string;
  dataset: string;
  nodes: number;
  partition: PartitionSpec;
  seed: number;
  rounds: number;
  fraction: number;
  /** Nodes that must be online before a round; default all of them. */
  minAvailableNodes?: number;
  /** Nodes sampled at least per round (default 1; the fraction decides above it). */
  minFitNodes?: number;
  deadlineMs: number;
  fit: FitConfig;
  /** Fraction of malicious nodes and their attack (simulation of hostile nodes). */
  byzantine?: number;
  attack?: AttackName;
  /** Faults to inject (chaos.ts): node dropouts, stragglers, links cut during uploads, a broker restart mid-round. */
  chaos?: ChaosOptions;
  /** Coordinator: accepted updates a round needs (default 1), as a fraction of the selected nodes (default 0). */
  minAcceptedUpdates?: number;
  minCompletionRate?: number;
  /** Over-selection and failed rounds in a row before the run aborts (coordinator options). */
  overSelection?: number;
  maxRoundRetries?: number;
  /** Strategy preset by name (default fedavg), its parts overridden, and the parameters of its parts (flat, camelCase keys). */
  strategy?: string;
  aggregator?: string;
  serverOptimizer?: string;
  strategyParams?: Record<string, unknown>;
  /** `sync` rounds (default) or `async` FedBuff with its options. */
  mode?: 'sync' | 'async';
  async?: AsyncOptions;
  /** Federated evaluation: fraction of nodes evaluating after each round, and the held-out fraction of their data. */
  evaluateFraction?: number;
  valFraction?: number;
  /** Evaluate on the dataset's central test set after each round (default true). */
  centralEval?: boolean;
  /** Uplink codec (default float32) and its parameters. */
  codec?: CodecName;
  codecParams?: CodecParams;
  /** Chunk the model and updates to at most this many bytes per MQTT message (docs/chunking.md). */
  maxPayloadBytes?: number;
  /** Encoding of the global model sent to nodes (default float32). */
  downlink?: 'float32' | 'float16';
  /** Secure aggregation (coordinator option `secagg`; docs/privacy.md). */
  secagg?: SecAggJobOptions;
  /** Client-level differential privacy (coordinator option `dp`; docs/privacy.md). */
  dp?: DpOptions;
  /** Run folder (history.json, model/). */
  outDir?: string;
  /** Broker port: default 1883, falling back to a free port when taken; 0 for a free port. */
  port?: number;
  /** Port of the broker's web dashboard: default 8080, falling back to a free port when taken; `false` for none. */
  httpPort?: number | false;
  /** Interface the embedded broker (MQTT and dashboard) listens on: default 127.0.0.1, so a simulation is not an open broker on the network (`0.0.0.0` for every interface). */
  host?: string;
  workers?: number;
  logger?: Logger;
  /** Port of the coordinator's Prometheus `/metrics`: default 9464, falling back to a free port; `false` for none. */
  metricsPort?: number | false;
  /** Interface of the coordinator's `/metrics`: default 127.0.0.1 (`0.0.0.0` for every interface). */
  metricsHost?: string;
  /** Called once the broker listens, with its MQTT URL and its dashboard URL (when served). */
  onBroker?: (url: string, dashboardUrl?: string) => void;
  /** Called once `/metrics` is served, with its URL. */
  onMetrics?: (url: string) => void;
  /** Called when the nodes are up. */
  onNodes?: (info: { nodes: number; workers: number; backend: string }) => void;
  onRound?: (r: RoundRecord) => void;
  /** Called with the coordinator before the run starts (to watch its events). */
  onCoordinator?: (c: Coordinator) => void;
  /** Called with the simulation once its nodes are up. */
  onSimulation?: (s: Simulation) => void;
  /** Called after a chaos broker restart, with the round it happened in. */
  onBrokerRestart?: (round: number) => void;
}

/**
 * Runs a whole federated job on this machine over real MQTT: an embedded Aedes broker (a worker
 * thread of its own, so routing never waits for the coordinator), a coordinator (this thread)
 * and `nodes` simulated edge nodes (worker threads).
 * Everything it starts is closed before it resolves or rejects.
 */
export async function runLocalJob(o: LocalJobOptions): Promise<{
  history: RoundRecord[]; brokerUrl: string; runId: string; weights: NamedTensor[];
  /** The coordinator's description of the run (coordinator/status `config`) and the nodes' last statuses, for the report. */
  config: Record<string, unknown>; nodes: NodeStatus[];
  /** Why the run stopped before its rounds, when it did on its own (FEDMQ_PRIVACY_BUDGET). */
  stopError?: FedmqError;
}> {
  const logger = o.logger ?? pino({ level: 'silent' });
  const data = loadSimDataset(o.dataset);
  await initBackend();
  let broker: BrokerThread | undefined;
  let sim: Simulation | undefined;
  let coordinator: Coordinator | undefined;
  let metrics: Awaited<ReturnType<typeof serveMetricsOrFallback>> | undefined;
  try {
    broker = await listen(o.port, o.httpPort, o.host ?? '127.0.0.1', logger.level);
    o.onBroker?.(broker.url, broker.httpUrl);
    const minAvailableNodes = o.minAvailableNodes ?? (o.nodes || data.groupCount || 1);
    const strategy = createStrategy(
      { strategy: o.strategy, aggregator: o.aggregator, serverOptimizer: o.serverOptimizer, fraction: o.fraction, minFitNodes: o.minFitNodes ?? 1, fitConfig: o.fit, params: o.strategyParams },
      { logger },
    );
    coordinator = new Coordinator({
      brokerUrl: broker.url, job: o.job, model: data.model, rounds: o.rounds, minAvailableNodes, deadlineMs: o.deadlineMs, strategy,
      minAcceptedUpdates: o.minAcceptedUpdates, minCompletionRate: o.minCompletionRate, overSelection: o.overSelection, maxRoundRetries: o.maxRoundRetries,
      mode: o.mode, async: o.async, evaluateFraction: o.evaluateFraction, valFraction: o.valFraction,
      outDir: o.outDir, testData: o.centralEval === false ? undefined : data.test,
      seed: o.seed, logger, codec: o.codec, codecParams: o.codecParams, maxPayloadBytes: o.maxPayloadBytes, downlink: o.downlink, dp: o.dp, secagg: o.secagg,
    });
    if (o.onRound) coordinator.on('round', o.onRound);
    o.onCoordinator?.(coordinator);
    const restartAt = o.chaos?.brokerRestartRound;
    if (restartAt) {
      let restarted = false;
      const restart = async ({ round }: { round: number }) => {
        if (round !== restartAt || restarted) return;
        restarted = true;
        logger.warn({ round }, 'chaos: restarting the broker');
        // the restart keeps retained messages and sessions, as a Redis-backed broker would
        await broker!.restart();
        o.onBrokerRestart?.(round);
      };
      coordinator.on('accepted', (a) => void restart(a).catch((err: unknown) => logger.error({ err }, 'chaos: broker restart failed')));
    }
    if (o.metricsPort !== false) {
      metrics = await serveMetricsOrFallback(coordinatorMetrics(coordinator), o.metricsPort ?? DEFAULT_METRICS_PORT, o.metricsPort === undefined, o.metricsHost);
      o.onMetrics?.(metrics.url);
    }
    const done = coordinator.run();
    done.catch(() => undefined);
    sim = await startSimulation({
      brokerUrl: broker.url, job: o.job, nodes: o.nodes, train: data.train, groups: data.groups, groupPrefix: data.groupPrefix,
      partition: o.partition, seed: o.seed, workers: o.workers, logLevel: logger.level, byzantine: o.byzantine, attack: o.attack, chaos: o.chaos,
    });
    o.onSimulation?.(sim);
    o.onNodes?.({ nodes: sim.plan.length, workers: sim.workers, backend: sim.backend });
    const history = await done;
    return {
      history, brokerUrl: broker.url, runId: coordinator.runId, weights: coordinator.globalWeights(), config: coordinator.describe(), nodes: coordinator.nodes(),
      stopError: coordinator.stopError,
    };
  } finally {
    await sim?.stop();
    await coordinator?.close();
    await metrics?.close();
    await broker?.close();
  }
}

/** Starts the broker thread on the default ports, moving each default port that is taken to a free one. */
async function listen(port: number | undefined, httpPort: number | false | undefined, host: string, logLevel: string): Promise<BrokerThread> {
  let mqttPort = port ?? 1883;
  let dashboardPort = httpPort === false ? undefined : (httpPort ?? 8080);
  for (;;) {
    try {
      return await startBrokerThread({ port: mqttPort, host, httpPort: dashboardPort, logLevel });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { port?: number };
      if (e.code !== 'EADDRINUSE') throw err;
      if (port === undefined && e.port === mqttPort && mqttPort !== 0) mqttPort = 0;
      else if (httpPort === undefined && e.port === dashboardPort && dashboardPort !== 0) dashboardPort = 0;
      else throw err;
    }
  }
}
