import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { NodeStatusSchema, decodeJson, topics } from '@fedmq/protocol';
import { EdgeNode } from './node.ts';
import { deviceInfo } from './device.ts';

let broker: RunningBroker | undefined;
let node: EdgeNode | undefined;
afterEach(async () => {
  await node?.stop();
  await broker?.close();
});

/** Resolves with the node's retained status as a fresh subscriber on `url` sees it. */
async function statusOn(url: string): Promise<string> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  const got = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(decodeJson(NodeStatusSchema, p, 'status').state)));
  await c.subscribeAsync(topics.nodeStatus('rc', 'pi-1'), { qos: 1 });
  const state = await got;
  await c.endAsync();
  return state;
}

describe('edge node and a broker restart', () => {
  it('reconnects to a restarted broker and announces itself again', async () => {
    const backend = await initBackend('cpu');
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    const { port } = broker;
    node = new EdgeNode({
      brokerUrl: broker.url, job: 'rc', nodeId: 'pi-1', data: subset(loadMnist('test'), [0, 1, 2]), device: deviceInfo(backend),
      reconnect: { initialMs: 50, maxMs: 200 },
    });
    await node.start();
    expect(await statusOn(broker.url)).toBe('idle');

    const reannounced = new Promise<void>((resolve) => node!.once('announced', () => resolve()));
    await broker.close(); // the new broker has no retained state: only a reconnect can put the status back
    broker = await startBroker({ port, host: '127.0.0.1' });
    await reannounced;
    expect(await statusOn(broker.url)).toBe('idle');
  });
});
