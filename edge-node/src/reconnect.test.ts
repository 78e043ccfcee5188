import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { initBackend } from '@fedmq/ml';
import { NodeStatusSchema, decodeJson, topics } from '@fedmq/protocol';
import { EdgeNode } from './node.ts';
import { deviceInfo } from './device.ts';
import { FakeCoordinator, initialWeights, observedBroker, tabularData, type ObservedBroker } from './test-support.ts';

let ob: ObservedBroker | undefined;
let node: EdgeNode | undefined;
let coord: FakeCoordinator | undefined;
afterEach(async () => {
  await node?.stop();
  await coord?.close();
  await ob?.broker.close();
  node = coord = ob = undefined;
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
  it('reconnects to a restarted broker, announces itself again, and still answers fit tasks', async () => {
    const backend = await initBackend('cpu');
    ob = await observedBroker();
    const { port } = ob.broker;
    node = new EdgeNode({
      brokerUrl: ob.broker.url, job: 'rc', nodeId: 'pi-1', data: tabularData(12), device: deviceInfo(backend),
      reconnect: { initialMs: 50, maxMs: 200 },
    });
    await node.start();
    expect(await statusOn(ob.broker.url)).toBe('idle');

    const reannounced = new Promise<void>((resolve) => node!.once('announced', () => resolve()));
    await ob.broker.close(); // the new broker has no retained state or sessions: only a reconnect can put them back
    ob = await observedBroker(port);
    await reannounced;
    expect(await statusOn(ob.broker.url)).toBe('idle');

    // the node resubscribed to its task topic on the new broker
    coord = await FakeCoordinator.connect(ob.broker.url, 'rc');
    const { sha256 } = await coord.publishModel(1, initialWeights(1));
    const task = coord.fitTask('pi-1', 1, sha256);
    await coord.send('pi-1', task);
    const { update } = await coord.nextUpdate('pi-1');
    expect(update).toMatchObject({ nodeId: 'pi-1', taskId: task.taskId, numExamples: 12 });
  });
});
