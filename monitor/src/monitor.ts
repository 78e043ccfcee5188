import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { FleetState, monitorTopics, type MonitorEvent } from './state.ts';

/** Options of {@link startMonitor}. */
export interface MonitorOptions {
  /** Broker URL, e.g. `mqtt://localhost:1883` (any MQTT 3.1.1 broker). */
  brokerUrl: string;
  /** Job to watch; every job (`fedmq/v2/+/…`) when omitted. */
  job?: string;
  /** Extra mqtt.js options (credentials, TLS, clientId …); the monitor stays read-only. */
  mqtt?: IClientOptions;
  /** State to fold messages into; a new {@link FleetState} by default. */
  state?: FleetState;
}

/** The broker connection as the monitor sees it. */
export type ConnectionEvent =
  /** Subscribed (SUBACK received) after a connect or reconnect: from now on nothing is missed. */
  | { type: 'connected'; brokerUrl: string; topics: string[] }
  /** The broker became unreachable; the client retries every second. */
  | { type: 'offline'; brokerUrl: string }
  /** A client or subscription error (the monitor keeps running). */
  | { type: 'error'; brokerUrl: string; message: string };

/** Events of a running monitor: every {@link MonitorEvent} under `event`, the connection under `connection`. */
export interface MonitorEmitterEvents {
  event: [MonitorEvent];
  connection: [ConnectionEvent];
}

/** A running monitor. */
export interface RunningMonitor {
  /** The fleet state, updated before each event is emitted. */
  state: FleetState;
  events: EventEmitter<MonitorEmitterEvents>;
  /** Topic filters subscribed to ({@link monitorTopics}: the JSON topics a monitor may read). */
  topics: string[];
  /** True while connected and subscribed. */
  readonly connected: boolean;
  /** Resolves after the first subscription is acknowledged; rejects only if closed before. */
  ready: Promise<void>;
  /** Disconnects. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Watches a fedmq job (or every job) on an MQTT broker: subscribes, read-only and with a clean
 * session, to the topics the broker's ACL lets a monitor read (docs/protocol.md §2) —
 * coordinator status and stage, node statuses, round metrics (per round and latest), model meta —
 * never models, tasks, updates or evaluation results; folds every message into a
 * {@link FleetState} and emits what changed.
 * Reconnects every second and resubscribes (retained messages are redelivered; the state
 * de-duplicates them). A connection error repeated on every attempt is emitted once.
 *
 * Never publishes and sets no Last Will. Returns at once; await `ready` to know the
 * subscriptions are in place.
 * @throws FedmqError FEDMQ_BAD_TOPIC when `job` is not a valid job id.
 */
export function startMonitor(opts: MonitorOptions): RunningMonitor {
  const state = opts.state ?? new FleetState();
  const topics = monitorTopics(opts.job);
  const events = new EventEmitter<MonitorEmitterEvents>();
  const brokerUrl = opts.brokerUrl;
  let connected = false;
  let closed = false;
  let markReady: () => void = () => undefined;
  let failReady: (err: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  ready.catch(() => undefined); // unobserved when closed before connecting

  const client: MqttClient = mqtt.connect(brokerUrl, {
    // a broker with --auth pins a monitor's client ids to its username: `<username>` or `<username>-…` (docs/security.md)
    clientId: `${opts.mqtt?.username ?? 'fedmq'}-monitor-${Math.random().toString(36).slice(2, 10)}`,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 1000,
    resubscribe: false, // subscribed explicitly on every connect, to know when it is acknowledged
    ...opts.mqtt,
  });
  client.on('connect', () => {
    client.subscribe(Object.fromEntries(topics.map((t) => [t, { qos: 1 as const }])), (err) => {
      if (err) {
        events.emit('connection', { type: 'error', brokerUrl, message: `subscribe failed: ${err.message}` });
        return;
      }
      connected = true;
      lastError = undefined;
      events.emit('connection', { type: 'connected', brokerUrl, topics });
      markReady();
    });
  });
  let lastError: string | undefined;
  const lost = () => {
    if (!connected) return;
    connected = false;
    if (!closed) events.emit('connection', { type: 'offline', brokerUrl });
  };
  client.on('offline', lost);
  client.on('close', lost);
  client.on('error', (err) => {
    if (err.message === lastError) return; // the same error on every reconnect attempt: report it once
    lastError = err.message;
    events.emit('connection', { type: 'error', brokerUrl, message: err.message });
  });
  client.on('message', (topic, payload, packet) => {
    for (const e of state.apply(topic, payload, { retained: packet.retain })) events.emit('event', e);
  });

  return {
    state,
    events,
    topics,
    get connected() {
      return connected;
    },
    ready,
    close: async () => {
      if (closed) return;
      closed = true;
      connected = false;
      failReady(new Error('monitor closed'));
      await client.endAsync();
    },
  };
}
