import { createServer } from 'node:net';
import mqtt from 'mqtt';
import { topics } from '@fedmq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { startBrokerThread, type BrokerThread } from './thread.ts';

let broker: BrokerThread | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

describe('startBrokerThread', () => {
  it('serves MQTT from its own thread, counts socket bytes by role, and keeps retained messages over a restart', async () => {
    broker = await startBrokerThread({ port: 0, host: '127.0.0.1' });
    expect(broker.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const before = await broker.traffic();
    const node = await mqtt.connectAsync(broker.url, { clientId: 'fedmq:j:node:n1', reconnectPeriod: 0 });
    await node.publishAsync(topics.nodeStatus('j', 'n1'), 'online', { qos: 1, retain: true });
    await node.endAsync();
    const after = await broker.traffic();
    expect(after.node.read).toBeGreaterThan(before.node.read + 'online'.length);

    await broker.restart();
    const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
    await sub.subscribeAsync(topics.nodeStatus('j', 'n1'), { qos: 1 });
    expect(await got).toBe('online');
    await sub.endAsync();
  });

  it('rejects with the listen error when the port is taken, and ends its thread', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    const err = await startBrokerThread({ port, host: '127.0.0.1' }).catch((e: unknown) => e as NodeJS.ErrnoException & { port?: number });
    expect(err).toMatchObject({ code: 'EADDRINUSE' });
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  });

  it('close is safe to call twice and refuses calls afterwards', async () => {
    const b = await startBrokerThread({ port: 0, host: '127.0.0.1' });
    await Promise.all([b.close(), b.close()]);
    await expect(b.traffic()).rejects.toThrow(/exited/);
  });
});
