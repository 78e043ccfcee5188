import { request } from 'node:http';
import mqtt from 'mqtt';
import { topicFilter, topics } from '@fedmq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';

const brokers: RunningBroker[] = [];
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

async function start(): Promise<RunningBroker> {
  const b = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0 });
  brokers.push(b);
  return b;
}

/** Raw GET (fetch would normalise `..` away): status, content-type, body. */
function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sum of the series of a byte counter for one transport (over its `role` label). */
function bytes(m: Map<string, number>, name: string, transport: string): number {
  let sum = 0;
  for (const [key, value] of m) if (key.startsWith(`${name}{`) && key.includes(`transport="${transport}"`)) sum += value;
  return sum;
}

/** Prometheus text → `name{labels}` → value (comment lines skipped). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`bad metrics line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

describe('broker HTTP: dashboard, /metrics, MQTT over WebSocket', () => {
  it('serves the dashboard page and its scripts, and nothing else', async () => {
    const b = await start();
    expect(b.httpUrl).toBe(`http://127.0.0.1:${b.httpPort}/`);
    expect(b.wsUrl).toBe(`ws://127.0.0.1:${b.httpPort}/mqtt`);

    const page = await get(b.httpPort!, '/');
    expect(page.status).toBe(200);
    expect(page.type).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('<title>fedmq dashboard</title>');
    expect(page.body).toContain('src="app.js"');
    expect(page.body).toContain('src="vendor/chart.umd.js"');

    const app = await get(b.httpPort!, '/app.js');
    expect(app.type).toBe('text/javascript; charset=utf-8');
    expect(app.body).toContain("from './vendor/mqtt.esm.js'");
    const mqttBundle = await get(b.httpPort!, '/vendor/mqtt.esm.js');
    expect(mqttBundle.status).toBe(200);
    expect(mqttBundle.body).toMatch(/export default \w+\(\);/);
    const chart = await get(b.httpPort!, '/vendor/chart.umd.js');
    expect(chart.status).toBe(200);
    expect(chart.body).toContain('Chart.js v4');
    expect((await get(b.httpPort!, '/style.css')).type).toBe('text/css; charset=utf-8');
    expect((await get(b.httpPort!, '/charts.js')).body).toContain('export function createCharts');

    for (const path of ['/../package.json', '/%2e%2e/%2e%2e/package.json', '/vendor/../../broker/src/index.ts', '/nope', '/vendor/']) {
      expect((await get(b.httpPort!, path)).status, path).toBe(404);
    }
    expect((await get(b.httpPort!, '/', 'POST')).status).toBe(405);
    const head = await get(b.httpPort!, '/', 'HEAD');
    expect([head.status, head.body]).toEqual([200, '']);
  });

  it('relays MQTT over WebSocket to TCP and back, and /metrics counts connections, messages and bytes', async () => {
    const b = await start();
    const before = parseMetrics((await get(b.httpPort!, '/metrics')).body);
    expect(before.get('fedmq_broker_connections')).toBe(0);
    expect(before.get('fedmq_broker_messages_received_total')).toBe(0);
    expect(bytes(before, 'fedmq_broker_bytes_received_total', 'ws')).toBe(0);

    const ws = await mqtt.connectAsync(b.wsUrl!, { reconnectPeriod: 0 });
    const tcp = await mqtt.connectAsync(b.url, { reconnectPeriod: 0 });
    const atWs = new Promise<[string, string]>((resolve) => ws.on('message', (t, p) => resolve([t, p.toString()])));
    const atTcp = new Promise<[string, string]>((resolve) => tcp.on('message', (t, p) => resolve([t, p.toString()])));
    await ws.subscribeAsync(topics.coordinatorStatus('j'), { qos: 1 });
    await tcp.subscribeAsync(topicFilter('nodeStatus', 'j'), { qos: 1 });
    await tcp.publishAsync(topics.coordinatorStatus('j'), '{"v":2}', { qos: 1 });
    await ws.publishAsync(topics.nodeStatus('j', 'n1'), 'x'.repeat(10_000), { qos: 1 });
    expect(await atWs).toEqual([topics.coordinatorStatus('j'), '{"v":2}']);
    expect(await atTcp).toEqual([topics.nodeStatus('j', 'n1'), 'x'.repeat(10_000)]);

    const res = await get(b.httpPort!, '/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toContain('text/plain');
    expect(res.body).toContain('# TYPE fedmq_broker_connections gauge');
    expect(res.body).toContain('# TYPE fedmq_broker_bytes_sent_total counter');
    const m = parseMetrics(res.body);
    expect(m.get('fedmq_broker_connections')).toBe(2);
    expect(m.get('fedmq_broker_connections_total')).toBe(2);
    expect(m.get('fedmq_broker_messages_received_total')).toBe(2);
    expect(m.get('fedmq_broker_messages_sent_total')).toBe(2);
    // The 10 kB payload went in over WebSocket and out over TCP.
    expect(bytes(m, 'fedmq_broker_bytes_received_total', 'ws')).toBeGreaterThan(10_000);
    expect(bytes(m, 'fedmq_broker_bytes_sent_total', 'tcp')).toBeGreaterThan(10_000);
    expect(bytes(m, 'fedmq_broker_bytes_received_total', 'tcp')).toBeGreaterThan(0);
    expect(bytes(m, 'fedmq_broker_bytes_received_total', 'tcp')).toBeLessThan(10_000);
    expect(bytes(m, 'fedmq_broker_bytes_sent_total', 'ws')).toBeGreaterThan(0);
    expect(m.get('process_cpu_seconds_total')).toBeGreaterThan(0);

    const gone = new Promise<void>((resolve) => b.aedes.once('clientDisconnect', () => resolve()));
    await ws.endAsync();
    await gone;
    const after = parseMetrics((await get(b.httpPort!, '/metrics')).body);
    expect(after.get('fedmq_broker_connections')).toBe(1);
    expect(after.get('fedmq_broker_connections_total')).toBe(2);
    await tcp.endAsync();
  });

  it('runs two brokers with HTTP in one process (separate registries)', async () => {
    const [a, b] = [await start(), await start()];
    const c = await mqtt.connectAsync(a.wsUrl!, { reconnectPeriod: 0 });
    const ma = parseMetrics((await get(a.httpPort!, '/metrics')).body);
    const mb = parseMetrics((await get(b.httpPort!, '/metrics')).body);
    expect([ma.get('fedmq_broker_connections_total'), mb.get('fedmq_broker_connections_total')]).toEqual([1, 0]);
    await c.endAsync();
  });

  it('close() drops WebSocket clients and frees the HTTP port; a taken HTTP port is an error', async () => {
    const b = await start();
    const c = await mqtt.connectAsync(b.wsUrl!, { reconnectPeriod: 0 });
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await expect(startBroker({ port: 0, host: '127.0.0.1', httpPort: b.httpPort })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await b.close();
    await closed;
    expect(c.connected).toBe(false);
    await expect(get(b.httpPort!, '/')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    c.end(true);
  });

  it('without httpPort there is no HTTP server, but the registry counts', async () => {
    const b = await startBroker({ port: 0, host: '127.0.0.1' });
    brokers.push(b);
    expect(b.httpUrl).toBeUndefined();
    const c = await mqtt.connectAsync(b.url, { reconnectPeriod: 0 });
    await c.publishAsync('t', 'x', { qos: 1 });
    const m = parseMetrics(await b.metrics.metrics());
    expect(m.get('fedmq_broker_messages_received_total')).toBe(1);
    await c.endAsync();
  });
});
