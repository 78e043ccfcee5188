import type { Logger } from 'pino';
import type { RoundRecord } from '@fedmq/protocol';
import { aggregateF1, createModel, detectMote, loadTelosb, type DetectionMetrics, type MoteDetection } from '@fedmq/ml';
import type { FitConfig } from '@fedmq/protocol';
import { runLocalJob } from './job.ts';

/** Defaults of the sensors demo (measured in docs/sensors.md). */
export const SENSORS_DEMO = { rounds: 10, fit: { epochs: 1, batchSize: 32, learningRate: 0.05 } satisfies FitConfig, seed: 42 };

/** Per-mote detection quality of one way of training. */
export interface MoteRow {
  moteId: number;
  indoor: boolean;
  readings: number;
  events: number;
  flagged: number;
  metrics: DetectionMetrics;
}

/** Result of {@link runSensorsDemo}. */
export interface SensorsDemoResult {
  federated: MoteRow[];
  localOnly: MoteRow[];
  /** Over the motes that have events: mean of per-mote F1 and pooled F1. */
  summary: { federated: { meanF1: number; pooledF1: number }; localOnly: { meanF1: number; pooledF1: number } };
  history: RoundRecord[];
}

/**
 * Federated anomaly detection on the TelosB single-hop readings (Suthaharan et al. 2010): one
 * edge node per mote over real MQTT trains the `telosb-ae` autoencoder with FedAvg on windows of
 * its own temperature and humidity; then every mote scores its readings with the global model and
 * flags them with a label-free threshold. Labels are used only to score precision, recall and F1,
 * next to each mote training alone on its own data for the same number of epochs (local-only).
 */
export async function runSensorsDemo(o: {
  rounds?: number; fit?: FitConfig; seed?: number; outDir?: string; port?: number; logger?: Logger;
  onBroker?: (url: string) => void; onRound?: (r: RoundRecord) => void;
}): Promise<SensorsDemoResult> {
  const rounds = o.rounds ?? SENSORS_DEMO.rounds;
  const fit = o.fit ?? SENSORS_DEMO.fit;
  const seed = o.seed ?? SENSORS_DEMO.seed;
  const { history, weights } = await runLocalJob({
    job: 'telosb', dataset: 'telosb', nodes: 0, partition: { kind: 'natural', groups: [] }, seed, rounds, fraction: 1, deadlineMs: 120_000, fit,
    outDir: o.outDir, port: o.port, workers: 2, logger: o.logger, onBroker: o.onBroker, onRound: o.onRound, metricsPort: false, httpPort: false,
  });
  const telosb = loadTelosb();
  const row = (m: (typeof telosb.motes)[number], d: MoteDetection): MoteRow => ({
    moteId: m.moteId, indoor: m.indoor, readings: m.numReadings, events: d.events, flagged: d.flagged, metrics: d.metrics,
  });

  const global = createModel('telosb-ae', seed);
  global.setWeights(weights);
  const fedDetections = telosb.motes.map((m) => detectMote(global.layersModel, m));
  global.dispose();

  const localDetections: MoteDetection[] = [];
  for (const m of telosb.motes) {
    const local = createModel('telosb-ae', seed);
    await local.fit(m.dataset, { ...fit, epochs: rounds * fit.epochs, seed });
    localDetections.push(detectMote(local.layersModel, m));
    local.dispose();
  }
  const f = aggregateF1(fedDetections);
  const l = aggregateF1(localDetections);
  return {
    federated: telosb.motes.map((m, i) => row(m, fedDetections[i])),
    localOnly: telosb.motes.map((m, i) => row(m, localDetections[i])),
    summary: { federated: { meanF1: f.meanF1, pooledF1: f.pooled.f1 }, localOnly: { meanF1: l.meanF1, pooledF1: l.pooled.f1 } },
    history,
  };
}
