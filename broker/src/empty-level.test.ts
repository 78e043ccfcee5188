import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';

// Regression (found by test/fuzz.test.ts): Aedes routes with `+` matching an empty topic level
// (mqemitter `matchEmptyLevels`, MQTT-4.7.1-3) but its session persistence does not, so a QoS 1
// publish to `fedmq/v1/j/nodes//update` reached the coordinator's persistent session (clean:
// false, `nodes/+/update` at QoS 1) with no queued copy, and Aedes dropped the coordinator with
// "no such packet". Any client could do it, again and again.
let broker: RunningBroker | undefined;
const clients: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await broker?.close();
});

async function client(id: string, clean = true): Promise<MqttClient> {
  const c = await mqtt.connectAsync(broker!.url, { clientId: id, clean, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

describe('topics with an empty level', () => {
  it('are refused (the publisher is disconnected), and a persistent-session subscriber on + stays connected', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const sub = await client('fedmq:j:coordinator', false);
    const dropped: string[] = [];
    broker.aedes.on('clientDisconnect', (c) => dropped.push(c.id));
    const received: string[] = [];
    const got = new Promise<void>((resolve) => sub.on('message', (t) => received.push(t) === 1 && resolve()));
    await sub.subscribeAsync('fedmq/v1/j/nodes/+/update', { qos: 1 });

    for (const topic of ['fedmq/v1/j/nodes//update', '/x', 'x/', 'a//b']) {
      const bad = await client(`bad-${topic.length}`);
      const closed = new Promise<string>((resolve) => bad.once('close', () => resolve('closed')));
      const acked = bad.publishAsync(topic, 'x', { qos: 1 }).then(() => 'acked', () => 'failed');
      expect(await Promise.race([closed, acked]), topic).toBe('closed');
    }
    const subClosed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
    const good = await client('good');
    await good.publishAsync('fedmq/v1/j/nodes/n1/update', 'ok', { qos: 1 });
    await Promise.race([got, subClosed]);
    expect(received).toEqual(['fedmq/v1/j/nodes/n1/update']);
    expect(sub.connected).toBe(true);
    expect(dropped).not.toContain('fedmq:j:coordinator');
  });

  it('are refused as a Last Will topic too', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const sub = await client('fedmq:j:coordinator', false);
    const received: string[] = [];
    const got = new Promise<void>((resolve) => sub.on('message', (t) => received.push(t) === 1 && resolve()));
    await sub.subscribeAsync('fedmq/v1/j/nodes/+/status', { qos: 1 });
    const dying = await mqtt.connectAsync(broker.url, { clientId: 'dying', reconnectPeriod: 0, will: { topic: 'fedmq/v1/j/nodes//status', payload: Buffer.from('x'), qos: 1, retain: false } });
    const gone = new Promise<void>((resolve) => broker!.aedes.once('clientDisconnect', () => resolve()));
    const subClosed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
    dying.stream.destroy(); // an unclean end publishes the will
    await gone;
    const good = await client('good');
    await good.publishAsync('fedmq/v1/j/nodes/n1/status', 'ok', { qos: 1 });
    await Promise.race([got, subClosed]);
    expect(received).toEqual(['fedmq/v1/j/nodes/n1/status']);
    expect(sub.connected).toBe(true);
  });
});
