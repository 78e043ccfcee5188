/**
 * What a broker cluster (docs/scale.md, "Broker cluster") costs per message: Debian's redis-server
 * on a free port, two brokers of one cluster (`startBroker({ cluster })`, in this process) and a
 * stand-alone broker for comparison, mqtt.js clients on loopback. For each path — stand-alone
 * broker, one cluster broker (publisher and subscriber on the same broker: the message still goes
 * through Redis), and across the cluster (publisher on broker A, subscriber on broker B):
 *
 * - latency of 1 KiB QoS 1 messages sent one at a time (publish → message event), median and p99;
 * - a model-sized fan-in: 20 × 800 KB QoS 1 published at once, time until all arrived, MB/s.
 *
 *   npx tsx bench/cluster.ts [-- --messages 1000 --models 20 --model-bytes 800000]
 *
 * Prints a table and writes bench/results/cluster.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, startRedisServer, type RunningBroker } from '@fedmq/broker';
import { arg } from './lib.ts';

const messages = Number(arg('messages', '1000'));
const models = Number(arg('models', '20'));
const modelBytes = Number(arg('model-bytes', '800000'));

const redis = await startRedisServer();

const cluster = redis.url;
const alone = await startBroker({ port: 0, host: '127.0.0.1' });
const a = await startBroker({ port: 0, host: '127.0.0.1', cluster });
const b = await startBroker({ port: 0, host: '127.0.0.1', cluster });

const quantile = (xs: number[], q: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function measure(name: string, pubBroker: RunningBroker, subBroker: RunningBroker) {
  const pub = await mqtt.connectAsync(pubBroker.url, { reconnectPeriod: 0 });
  const sub = await mqtt.connectAsync(subBroker.url, { reconnectPeriod: 0 });
  const topic = `bench/${name.replace(/\W/g, '-')}`;
  await sub.subscribeAsync(`${topic}/#`, { qos: 1 });
  const next = (c: MqttClient, n: number) => new Promise<void>((resolve) => {
    let left = n;
    const on = () => {
      if (--left === 0) {
        c.off('message', on);
        resolve();
      }
    };
    c.on('message', on);
  });
  const small = Buffer.alloc(1024, 1);
  const lat: number[] = [];
  for (let i = 0; i < messages; i++) {
    const got = next(sub, 1);
    const t0 = performance.now();
    await pub.publishAsync(`${topic}/small`, small, { qos: 1 });
    await got;
    lat.push(performance.now() - t0);
  }
  const payload = Buffer.alloc(modelBytes, 7);
  const all = next(sub, models);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: models }, (_, i) => pub.publishAsync(`${topic}/model/${i}`, payload, { qos: 1 })));
  await all;
  const fanInMs = performance.now() - t0;
  await pub.endAsync();
  await sub.endAsync();
  return { path: name, medianMs: quantile(lat, 0.5), p99Ms: quantile(lat, 0.99), fanInMs, fanInMBps: (models * modelBytes) / 1e6 / (fanInMs / 1000) };
}

const rows = [
  await measure('stand-alone broker', alone, alone),
  await measure('cluster, same broker', a, a),
  await measure('cluster, A to B', a, b),
];
await Promise.all([alone, a, b].map((x) => x.close()));
await redis.stop();

const f = (x: number, d = 2) => x.toFixed(d);
console.log(`${messages} × 1 KiB QoS 1 one at a time; ${models} × ${modelBytes} bytes QoS 1 at once (Redis ${cluster}, loopback)`);
console.log('| path | latency median ms | latency p99 ms | fan-in ms | fan-in MB/s |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.path} | ${f(r.medianMs)} | ${f(r.p99Ms)} | ${f(r.fanInMs, 0)} | ${f(r.fanInMBps, 0)} |`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/cluster.json', import.meta.url), `${JSON.stringify({ date: new Date().toISOString(), messages, models, modelBytes, rows }, null, 2)}\n`);
