import { connect as netConnect } from 'node:net';
import mqtt from 'mqtt';
import { topicFilter, topics } from '@fedmq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';

let broker: RunningBroker | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

describe('startBroker', () => {
  it('listens on a free port and relays a retained message', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    expect(broker.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    await pub.publishAsync(topics.model('j', 1), 'hello', { qos: 1, retain: true });
    const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
    await sub.subscribeAsync(topicFilter('model', 'j'), { qos: 1 });
    expect(await got).toBe('hello');
    await Promise.all([pub.endAsync(), sub.endAsync()]);
  });

  it('survives a garbage frame and keeps serving', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const raw = netConnect(broker.port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => raw.on('close', () => resolve()));
    raw.on('error', () => {});
    raw.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01]));
    await closed;
    const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    expect(c.connected).toBe(true);
    await c.endAsync();
  });
});
