import mqtt, { type MqttClient } from 'mqtt';
import { topicFilter, topics } from '@fedmq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from './index.ts';

// Regression (found by test/fuzz.e2e.test.ts): Aedes routes with `+` matching an empty topic level
// (mqemitter `matchEmptyLevels`, MQTT-4.7.1-3) but its session persistence does not, so a QoS 1
// publish to `fedmq/v2/j/nodes//update` (found on v1's topic of the same shape) reached the
// coordinator's persistent session (clean: false, `nodes/+/update` at QoS 1) with no queued copy,
// and Aedes dropped the coordinator with "no such packet". Any client could do it, again and again.
let broker: RunningBroker | undefined;
const clients: MqttClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await broker?.close();
});

/** The topic of `kind` in job `j` with an empty `{nodeId}` level, e.g. `fedmq/v2/j/nodes//update`. */
const emptyNodeId = (kind: 'nodeUpdate' | 'nodeStatus') => topicFilter(kind, 'j').replace('/+/', '//');

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
    await sub.subscribeAsync(topicFilter('nodeUpdate', 'j'), { qos: 1 });

    for (const topic of [emptyNodeId('nodeUpdate'), '/x', 'x/', 'a//b']) {
      const bad = await client(`bad-${topic.length}`);
      const closed = new Promise<string>((resolve) => bad.once('close', () => resolve('closed')));
      const acked = bad.publishAsync(topic, 'x', { qos: 1 }).then(() => 'acked', () => 'failed');
      expect(await Promise.race([closed, acked]), topic).toBe('closed');
    }
    const subClosed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
    const good = await client('good');
    await good.publishAsync(topics.nodeUpdate('j', 'n1'), 'ok', { qos: 1 });
    await Promise.race([got, subClosed]);
    expect(received).toEqual([topics.nodeUpdate('j', 'n1')]);
    expect(sub.connected).toBe(true);
    expect(dropped).not.toContain('fedmq:j:coordinator');
  });

  it('are refused as a Last Will topic too', async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const sub = await client('fedmq:j:coordinator', false);
    const received: string[] = [];
    const got = new Promise<void>((resolve) => sub.on('message', (t) => received.push(t) === 1 && resolve()));
    await sub.subscribeAsync(topicFilter('nodeStatus', 'j'), { qos: 1 });
    const dying = await mqtt.connectAsync(broker.url, { clientId: 'dying', reconnectPeriod: 0, will: { topic: emptyNodeId('nodeStatus'), payload: Buffer.from('x'), qos: 1, retain: false } });
    const gone = new Promise<void>((resolve) => broker!.aedes.once('clientDisconnect', () => resolve()));
    const subClosed = new Promise<void>((resolve) => sub.once('close', () => resolve()));
    dying.stream.destroy(); // an unclean end publishes the will
    await gone;
    const good = await client('good');
    await good.publishAsync(topics.nodeStatus('j', 'n1'), 'ok', { qos: 1 });
    await Promise.race([got, subClosed]);
    expect(received).toEqual([topics.nodeStatus('j', 'n1')]);
    expect(sub.connected).toBe(true);
  });
});
