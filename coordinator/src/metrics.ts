import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Coordinator } from './coordinator.ts';

/** Prometheus metrics of one coordinator, on a registry of their own. */
export interface CoordinatorMetrics {
  registry: Registry;
  /** Prometheus text exposition format (version 0.0.4). */
  text(): Promise<string>;
}

/**
 * Exposes a coordinator's progress as Prometheus metrics (prom-client), labelled with `job`:
 *
 * | metric | type | meaning |
 * |---|---|---|
 * | `fedmq_rounds_completed_total` | counter | rounds closed (with metrics published) |
 * | `fedmq_current_round` | gauge | round open now, or the last one |
 * | `fedmq_nodes_online` | gauge | nodes whose last status is not `offline` |
 * | `fedmq_updates_accepted_total` | counter | updates folded into the aggregate |
 * | `fedmq_updates_rejected_total{reason}` | counter | updates rejected, by FEDMQ error code |
 * | `fedmq_updates_missing_total{reason}` | counter | selected nodes that did not report: `timeout`, `offline` |
 * | `fedmq_bytes_in_total` | counter | bytes of accepted updates and evaluation results (Σ `bytesUp` of the rounds) |
 * | `fedmq_bytes_out_total` | counter | payload bytes the answering nodes received, as they measured them (Σ `bytesDown`) |
 * | `fedmq_round_duration_seconds` | histogram | round wall time |
 * | `fedmq_test_accuracy` | gauge | test accuracy of the latest global model (central test set) |
 * | `fedmq_federated_accuracy` | gauge | federated evaluation: numExamples-weighted accuracy of the latest global model on the nodes' held-out data |
 * | `fedmq_federated_worst_decile_accuracy` | gauge | mean accuracy of the worst 10 % of the evaluating nodes |
 * | `fedmq_privacy_epsilon` | gauge | differential privacy: ε(δ) spent so far, the latest round's `privacy.epsilon` (`+Inf` while unbounded: `epsilon` null) |
 * | `fedmq_privacy_delta` | gauge | δ of that ε |
 * | `fedmq_privacy_noise_multiplier` | gauge | σ of the latest round, noise std in units of the clip norm C |
 * | `fedmq_privacy_clip_norm` | gauge | C the latest round's nodes clipped their deltas to (L2 norm, in model-weight units) |
 * | `fedmq_privacy_max_epsilon` | gauge | the run's budget (`--max-epsilon`); absent without one |
 *
 * The `fedmq_privacy_*` gauges come from the rounds' `privacy` record (docs/privacy.md) and are
 * registered at the first round that has one: a run without differential privacy has none of
 * them (no sample, no HELP or TYPE line), and `fedmq_privacy_max_epsilon` appears only with a
 * budget.
 *
 * plus prom-client's default process metrics.
 */
export function coordinatorMetrics(coordinator: Coordinator): CoordinatorMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ job: coordinator.job });
  collectDefaultMetrics({ register: registry });
  const rounds = new Counter({ name: 'fedmq_rounds_completed_total', help: 'Rounds closed with metrics published', registers: [registry] });
  const current = new Gauge({ name: 'fedmq_current_round', help: 'Round open now, or the last one', registers: [registry] });
  new Gauge({
    name: 'fedmq_nodes_online', help: 'Nodes whose last status is not offline', registers: [registry],
    collect() {
      this.set(coordinator.onlineNodes().length);
    },
  });
  const accepted = new Counter({ name: 'fedmq_updates_accepted_total', help: 'Updates folded into the aggregate', registers: [registry] });
  const rejected = new Counter({ name: 'fedmq_updates_rejected_total', help: 'Updates rejected, by error code', labelNames: ['reason'], registers: [registry] });
  const missing = new Counter({ name: 'fedmq_updates_missing_total', help: 'Selected nodes that did not report, by reason', labelNames: ['reason'], registers: [registry] });
  const bytesIn = new Counter({ name: 'fedmq_bytes_in_total', help: 'Bytes of accepted updates', registers: [registry] });
  const bytesOut = new Counter({ name: 'fedmq_bytes_out_total', help: 'Payload bytes the answering nodes received (their measured bytesDown)', registers: [registry] });
  const duration = new Histogram({
    name: 'fedmq_round_duration_seconds', help: 'Round wall time', registers: [registry], buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
  });
  const accuracy = new Gauge({ name: 'fedmq_test_accuracy', help: 'Test accuracy of the latest global model', registers: [registry] });
  const fedAccuracy = new Gauge({ name: 'fedmq_federated_accuracy', help: "Federated evaluation: weighted accuracy on the nodes' held-out data", registers: [registry] });
  const fedWorst = new Gauge({ name: 'fedmq_federated_worst_decile_accuracy', help: 'Federated evaluation: mean accuracy of the worst 10 % of nodes', registers: [registry] });
  // Created on the first round with a `privacy` record, so a run without differential privacy
  // exposes exactly the metrics it did before (an unlabelled gauge shows 0 from its creation).
  let privacy: { epsilon: Gauge; delta: Gauge; noise: Gauge; clip: Gauge } | undefined;
  let maxEpsilon: Gauge | undefined;
  const privacyGauges = () =>
    (privacy ??= {
      epsilon: new Gauge({ name: 'fedmq_privacy_epsilon', help: 'Differential privacy: epsilon(delta) spent so far, dimensionless (+Inf while unbounded)', registers: [registry] }),
      delta: new Gauge({ name: 'fedmq_privacy_delta', help: 'Differential privacy: delta of the reported epsilon, a probability', registers: [registry] }),
      noise: new Gauge({ name: 'fedmq_privacy_noise_multiplier', help: 'Differential privacy: noise multiplier sigma of the latest round, noise std in units of the clip norm', registers: [registry] }),
      clip: new Gauge({ name: 'fedmq_privacy_clip_norm', help: "Differential privacy: clip norm C of the latest round, L2 norm of a node's delta in model-weight units", registers: [registry] }),
    });

  coordinator.on('stage', (p) => current.set(p.round));
  coordinator.on('accepted', () => accepted.inc());
  coordinator.on('rejected', (r) => rejected.inc({ reason: r.error.code }));
  coordinator.on('round', (r) => {
    rounds.inc();
    bytesIn.inc(r.bytesUp);
    bytesOut.inc(r.bytesDown);
    duration.observe(r.durationMs / 1000);
    for (const reason of ['timeout', 'offline']) if (r.failures[reason]) missing.inc({ reason }, r.failures[reason]);
    if (r.testAccuracy !== null) accuracy.set(r.testAccuracy);
    if (r.federatedEval) {
      fedAccuracy.set(r.federatedEval.accuracy);
      fedWorst.set(r.federatedEval.worstDecileAccuracy);
    }
    if (r.privacy) {
      const p = r.privacy;
      const g = privacyGauges();
      g.epsilon.set(p.epsilon ?? Infinity); // prom-client writes +Inf
      g.delta.set(p.delta);
      g.noise.set(p.noiseMultiplier);
      g.clip.set(p.clipNorm);
      if (p.maxEpsilon !== null) {
        maxEpsilon ??= new Gauge({ name: 'fedmq_privacy_max_epsilon', help: 'Differential privacy: the run budget max epsilon, dimensionless', registers: [registry] });
        maxEpsilon.set(p.maxEpsilon);
      }
    }
  });
  return { registry, text: () => registry.metrics() };
}

/**
 * Serves metrics on `port`, or on a free port when `port` is taken and `fallback` is true; on
 * `host` as {@link serveMetrics} (default 127.0.0.1).
 * @throws the listen error when the port is taken and `fallback` is false.
 */
export async function serveMetricsOrFallback(metrics: CoordinatorMetrics, port: number, fallback: boolean, host?: string): ReturnType<typeof serveMetrics> {
  try {
    return await serveMetrics(metrics, port, host);
  } catch (err) {
    if (fallback && (err as NodeJS.ErrnoException).code === 'EADDRINUSE') return serveMetrics(metrics, 0, host);
    throw err;
  }
}

/** Default port of the coordinator's `/metrics` (the port Prometheus exporters conventionally use). */
export const DEFAULT_METRICS_PORT = 9464;

/** Default interface of the coordinator's `/metrics`: loopback only (`0.0.0.0` opens it to the network). */
export const DEFAULT_METRICS_HOST = '127.0.0.1';

/**
 * Serves `GET /metrics` (Prometheus text format) for `metrics` on `port` (0 = a free one) of the
 * interface `host` (default {@link DEFAULT_METRICS_HOST}, 127.0.0.1: only this machine can scrape
 * it; `0.0.0.0` or `::` for every interface, for a Prometheus on another machine).
 * @returns the URL of the endpoint (`localhost` for every interface) and a `close()`.
 * @throws the listen error (e.g. `EADDRINUSE`, `EADDRNOTAVAIL` for an address this machine does not have).
 */
export async function serveMetrics(metrics: CoordinatorMetrics, port: number, host = DEFAULT_METRICS_HOST): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const urlHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${bound}/metrics`,
    port: bound,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
