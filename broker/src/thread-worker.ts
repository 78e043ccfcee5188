import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { startBroker, type RunningBroker } from './index.ts';
import { createPersistence } from './persistence.ts';
import type { BrokerThreadInit, FromBrokerThread, ToBrokerThread } from './thread.ts';

// The broker of startBrokerThread (thread.ts): one Aedes broker on this thread's event loop.
const init = workerData as BrokerThreadInit;
const port = parentPort!;
const post = (m: FromBrokerThread) => port.postMessage(m);
const logger = pino({ level: init.logLevel ?? 'silent' }, pino.destination(2));
// one store for the thread's whole life, so a restart keeps retained messages and sessions
const store = createPersistence(init.persistence ?? 'memory');
let broker: RunningBroker | undefined;

async function open(mqttPort: number, httpPort: number | undefined): Promise<RunningBroker> {
  return startBroker({ port: mqttPort, host: init.host, httpPort, logger, aedes: { persistence: store.persistence } });
}

function addresses(b: RunningBroker): Extract<FromBrokerThread, { type: 'listening' }> {
  return { type: 'listening', url: b.url, port: b.port, httpUrl: b.httpUrl, httpPort: b.httpPort, wsUrl: b.wsUrl };
}

port.on('message', (m: ToBrokerThread) => {
  void (async () => {
    try {
      if (m.type === 'traffic') post({ type: 'traffic', id: m.id, traffic: broker!.traffic() });
      else if (m.type === 'restart') {
        const { port: p, httpPort } = broker!;
        await broker!.close();
        broker = await open(p, httpPort);
        post({ type: 'restarted', id: m.id });
      } else if (m.type === 'close') {
        await broker?.close();
        await store.close();
        post({ type: 'closed', id: m.id });
      }
    } catch (err) {
      post({ type: 'failed', id: m.id, message: (err as Error).message, code: (err as NodeJS.ErrnoException).code });
    }
  })();
});

open(init.port, init.httpPort).then(
  (b) => {
    broker = b;
    post(addresses(b));
  },
  (err: NodeJS.ErrnoException & { port?: number }) => post({ type: 'failed', message: err.message, code: err.code, port: err.port }),
);
