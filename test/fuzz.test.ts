/**
 * Fuzzing during a training run (issue "Fault tolerance and security"): random and mutated
 * payloads on the update and status topics of a job, and malformed MQTT frames on raw TCP at the
 * broker port, all while a real broker, coordinator and edge nodes run FedAvg rounds. The broker,
 * the coordinator and the nodes must stay up, the run must complete, and every valid update the
 * nodes send in between must be aggregated exactly once; every fuzz payload must be refused with
 * a coded error.
 *
 * Short by default (`npm test`): 5,000 payloads and 1,000 frames over 3 rounds, with a fixed seed.
 * Long (`npm run test:long`, FEDMQ_LONG=1): 100,000 payloads and 10,000 frames over 5 rounds, with
 * a fresh seed each time. FEDMQ_FUZZ_SEED=<n> replays a seed; FEDMQ_FUZZ_PAYLOADS and
 * FEDMQ_FUZZ_FRAMES override the budgets. The seed is in the test's name and printed on failure.
 *
 * Pacing: the nodes' trainer waits until the fuzzers have sent (k − ½)/rounds of their budgets
 * before training round k (like slow devices), so the fuzz traffic is spread over every round:
 * before the task, during training, and around the real updates. Fuzz publishers send QoS 0 (5 %
 * QoS 1) in batches and wait, by events, until the coordinator has processed all but a window of
 * what they sent: backpressure end to end, and exact counts at the end.
 *
 * Found by this test: (1) a QoS 1 PUBLISH to a topic with an empty level (`nodes//update`) made
 * Aedes drop the coordinator's persistent session; the broker now refuses such topics
 * (broker/src/empty-level.test.ts). (2) Aedes 1.2 silently drops a retained message for live
 * subscribers when a later packet overtakes it while the retained copy is being stored (its
 * per-client dedupe keeps only the highest packet counter seen): with the memory persistence
 * only a retained QoS 0 message followed by more packets of the same client, with Redis also
 * retained QoS 1 messages overtaken by other clients' packets. Not fixed here (it is inside
 * Aedes); the fuzzers send their retained payloads at QoS 1 so that counts stay exact.
 *
 * The fuzzers never send a payload the coordinator could accept (a forged valid update or status
 * for a node): that is spoofing, which only authentication and ACLs prevent (docs/security.md);
 * see test/fuzz/payloads.ts.
 */
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy, type RoundRecord } from '@fedmq/coordinator';
import { EdgeNode, createTrainer, deviceInfo, type LocalTrainer } from '@fedmq/edge-node';
import { createModel, initBackend, loadMnist, subset } from '@fedmq/ml';
import { NodeStatusSchema, RoundTaskSchema, decodeJson, seededRng, topics } from '@fedmq/protocol';
import { fuzzFrames, type FrameFuzzStats } from './fuzz/frames.ts';
import { PayloadFuzzer, updateCouldBeAccepted, type FuzzTarget } from './fuzz/payloads.ts';
import { Rand } from './fuzz/rand.ts';

const LONG = process.env.FEDMQ_LONG === '1';
const SEED = process.env.FEDMQ_FUZZ_SEED ? Number(process.env.FEDMQ_FUZZ_SEED) >>> 0 : LONG ? Date.now() % 2 ** 31 : 20_261_122;
const PAYLOADS = Number(process.env.FEDMQ_FUZZ_PAYLOADS ?? (LONG ? 100_000 : 5_000));
const FRAMES = Number(process.env.FEDMQ_FUZZ_FRAMES ?? (LONG ? 10_000 : 1_000));
const ROUNDS = LONG ? 5 : 3;
const JOB = 'fuzzjob';
const RUN_ID = 'fuzz-run';
const MODEL = 'mnist-2nn';
const NODE_IDS = ['n1', 'n2', 'n3'];
const EXAMPLES_PER_NODE = 200;
const PUBLISHERS = 3;
const BATCH = 200;
/** Payloads a publisher may have in flight beyond what the coordinator has processed. */
const WINDOW = 2_000;
/** Bound on any single wait for progress (not a sync: every wait is on an event). */
const STALL_MS = LONG ? 300_000 : 60_000;

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const inc = (m: Record<string, number>, k: string, by = 1) => {
  m[k] = (m[k] ?? 0) + by;
};

/** Counters that tick an emitter, so that waits are on events, not sleeps. */
class Progress extends EventEmitter {
  payloadsSent = 0;
  framesSent = 0;
  updatesSent = 0;
  /** Status payloads the coordinator must log as refused (all but empty ones on valid ids, which clear a retained status). */
  statusesExpected = 0;
  updatesRefused = 0;
  statusesRefused = 0;
  fuzzDone = false;
  tick(): void {
    this.emit('tick');
  }
  /** Resolves once `cond()` holds (checked at every tick); rejects after {@link STALL_MS} without progress. */
  until(cond: () => boolean, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        cleanup();
        resolve();
      };
      let timer = setTimeout(stall, STALL_MS);
      let last = this.snapshot();
      function stall(this: void) {
        // only a stall without any progress fails
        const now = progress.snapshot();
        if (now !== last) {
          last = now;
          timer = setTimeout(stall, STALL_MS);
          return;
        }
        cleanup();
        reject(new Error(`fuzz (seed ${SEED}) stalled waiting for ${what}: ${now}`));
      }
      const cleanup = () => {
        clearTimeout(timer);
        this.off('tick', check);
      };
      this.on('tick', check);
    });
  }
  snapshot(): string {
    return `sent ${this.payloadsSent} payloads (${this.updatesSent} updates) and ${this.framesSent} frames; refused ${this.updatesRefused} updates, ${this.statusesRefused}/${this.statusesExpected} statuses`;
  }
}
const progress = new Progress();
progress.setMaxListeners(100);

describe(`fuzzing during a training run (${LONG ? 'long' : 'short'})`, () => {
  let broker: RunningBroker | undefined;
  let coordinator: Coordinator | undefined;
  const nodes: EdgeNode[] = [];
  const clients: MqttClient[] = [];
  let trainer: LocalTrainer | undefined;

  afterAll(async () => {
    progress.fuzzDone = true;
    progress.tick();
    await Promise.all(nodes.map((n) => n.stop()));
    await coordinator?.close();
    await Promise.all(clients.map((c) => c.endAsync(true)));
    trainer?.dispose();
    await broker?.close();
  });

  it(
    `${PAYLOADS} payloads on update/status topics and ${FRAMES} malformed frames: all refused, every real update aggregated exactly once (seed ${SEED})`,
    async () => {
      onTestFailed(() => console.error(`fuzz failed with seed ${SEED}: rerun with FEDMQ_FUZZ_SEED=${SEED}${LONG ? ' FEDMQ_LONG=1' : ''}`));
      const started = performance.now();
      const backend = await initBackend();
      broker = await startBroker({ port: 0, host: '127.0.0.1' });
      const url = broker.url;

      // --- what the fuzzers know: the global model's tensor names and shapes, the run id, the latest task
      const shapeModel = createModel(MODEL, 42);
      const target: FuzzTarget = {
        job: JOB, runId: RUN_ID, realNodeIds: NODE_IDS, tensors: shapeModel.getWeights().map((t) => ({ name: t.name, shape: [...t.shape] })),
        current: { round: 1, modelVersion: 1 }, captured: [],
      };
      shapeModel.dispose();

      // --- the real clients must never be dropped by the broker
      const realClientIds = [`fedmq:${JOB}:coordinator`, ...NODE_IDS.map((n) => `fedmq:${JOB}:node:${n}`)];
      const dropped: string[] = [];
      broker.aedes.on('clientDisconnect', (c) => {
        if (realClientIds.includes(c.id) && !progress.fuzzDone) dropped.push(c.id);
      });
      // why the broker closed connections (malformed frames mostly), by message
      const brokerErrors: Record<string, number> = {};
      broker.aedes.on('clientError', (_c, e) => inc(brokerErrors, e.message.replace(/\d+/g, 'N').slice(0, 80)));
      broker.aedes.on('connectionError', (_c, e) => inc(brokerErrors, e.message.replace(/\d+/g, 'N').slice(0, 80)));
      onTestFailed(() => console.error({ dropped, brokerErrors }));

      // --- the coordinator, with a log sink that counts refused statuses by code
      const statusCodes: Record<string, number> = {};
      const sink = new Writable({
        write(chunk, _enc, cb) {
          for (const line of String(chunk).split('\n')) {
            if (!line.includes('"topic"')) continue;
            const l = JSON.parse(line) as { code?: string; topic?: string };
            if (l.topic?.endsWith('/status')) {
              inc(statusCodes, l.code ?? 'none');
              progress.statusesRefused++;
              progress.tick();
            }
          }
          cb();
        },
      });
      const train = loadMnist('train');
      coordinator = new Coordinator({
        brokerUrl: url, job: JOB, runId: RUN_ID, model: MODEL, rounds: ROUNDS, minNodes: NODE_IDS.length, deadlineMs: STALL_MS * 2, seed: 42,
        testData: subset(loadMnist('test'), range(0, 500)), logger: pino({ level: 'warn' }, sink),
        strategy: createStrategy('fedavg', { fractionFit: 1, minFitNodes: NODE_IDS.length, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
      });
      const accepted: { nodeId: string; round: number; bytes: number }[] = [];
      const rejectedCodes: Record<string, number> = {};
      coordinator.on('accepted', (a) => accepted.push(a));
      coordinator.on('rejected', (r) => {
        inc(rejectedCodes, r.error.code);
        progress.updatesRefused++;
        progress.tick();
      });

      // --- a watcher: the latest task for the fuzzers, verbatim real updates to replay, real nodes going offline
      const watcher = await mqtt.connectAsync(url, { clientId: 'fuzz-watcher', reconnectPeriod: 0 });
      clients.push(watcher);
      const offlineSeen: string[] = [];
      watcher.on('message', (topic, payload) => {
        if (topic === topics.task(JOB)) {
          if (payload.length === 0) return;
          const task = decodeJson(RoundTaskSchema, payload, 'task');
          target.current = { round: task.round, modelVersion: task.modelVersion };
          return;
        }
        const id = NODE_IDS.find((n) => topic === topics.nodeUpdate(JOB, n) || topic === topics.nodeStatus(JOB, n));
        if (!id) return;
        if (topic.endsWith('/update')) {
          // fuzzers never send an acceptable update (but verbatim replays): what passes is a real one
          if (updateCouldBeAccepted(payload, id, target) && !target.captured.some((c) => c.payload.equals(payload))) {
            target.captured.push({ nodeId: id, payload: Buffer.from(payload) });
            if (target.captured.length > 12) target.captured.shift();
          }
        } else {
          try {
            const s = decodeJson(NodeStatusSchema, payload, 'status');
            if (s.nodeId === id && s.state === 'offline' && !progress.fuzzDone) offlineSeen.push(id);
          } catch {
            // fuzz on the node's status topic
          }
        }
      });
      await watcher.subscribeAsync([topics.task(JOB), ...NODE_IDS.flatMap((n) => [topics.nodeUpdate(JOB, n), topics.nodeStatus(JOB, n)])], { qos: 1 });

      // --- real edge nodes; their shared trainer waits for the fuzzers' progress before each round (see the header)
      trainer = createTrainer();
      const inner = trainer;
      const paced = (): LocalTrainer => {
        let calls = 0;
        return {
          check: (m, w, d) => inner.check(m, w, d),
          globalWeights: (msg) => inner.globalWeights(msg),
          dispose: () => undefined,
          train: async (req) => {
            const k = ++calls;
            const share = (k - 0.5) / ROUNDS;
            await progress.until(() => progress.fuzzDone || (progress.payloadsSent >= share * PAYLOADS && progress.framesSent >= share * FRAMES), `fuzz progress before round ${k}`);
            return inner.train(req);
          },
        };
      };
      const updated: { nodeId: string; round: number; bytes: number }[] = [];
      const problems: string[] = [];
      const announced: Record<string, number> = {};
      for (const [i, nodeId] of NODE_IDS.entries()) {
        const node = new EdgeNode({
          brokerUrl: url, job: JOB, nodeId, data: subset(train, range(i * EXAMPLES_PER_NODE, EXAMPLES_PER_NODE)), device: deviceInfo(backend), trainer: paced(),
        });
        node.on('updated', (u) => updated.push({ nodeId, round: u.round, bytes: u.bytes }));
        node.on('problem', (e) => problems.push(`${nodeId}: ${e.code} ${e.message}`));
        node.on('announced', () => inc(announced, nodeId));
        nodes.push(node);
      }

      // --- the payload fuzzers: mqtt.js clients whose ids cannot replace a node's or the coordinator's ('fedmq:…')
      const sentKinds: Record<string, number> = {};
      const withheld: Record<string, number> = {};
      const fuzzers: PayloadFuzzer[] = [];
      const publisher = async (k: number) => {
        const client = await mqtt.connectAsync(url, { clientId: `fuzz-pub-${k}`, reconnectPeriod: 0 });
        clients.push(client);
        const fuzzer = new PayloadFuzzer(new Rand(seededRng(SEED + 1 + k)), target);
        fuzzers.push(fuzzer);
        while (progress.payloadsSent < PAYLOADS) {
          const batch: Promise<unknown>[] = [];
          for (let i = 0; i < BATCH && progress.payloadsSent < PAYLOADS; i++) {
            const f = fuzzer.next();
            progress.payloadsSent++;
            inc(sentKinds, f.kind);
            if (f.leaf === 'update') progress.updatesSent++;
            else if (!(f.payload.length === 0 && /^[A-Za-z0-9_.-]{1,64}$/.test(f.nodeId))) progress.statusesExpected++;
            batch.push(client.publishAsync(f.topic, f.payload, { qos: f.qos, retain: f.retain }));
          }
          await Promise.all(batch);
          progress.tick();
          await progress.until(
            () => progress.updatesRefused + progress.statusesRefused >= progress.updatesSent + progress.statusesExpected - WINDOW,
            'the coordinator to process fuzz payloads',
          );
        }
        return client;
      };

      // --- run
      const runStarted = performance.now();
      const done = coordinator.run();
      await Promise.all(nodes.map((n) => n.start()));
      let frameStats: FrameFuzzStats | undefined;
      const fuzzStarted = performance.now();
      const frameFuzz = fuzzFrames({
        host: '127.0.0.1', port: broker.port, rand: new Rand(seededRng(SEED ^ 0x5eed)), target: { job: JOB }, budget: FRAMES, concurrency: 8,
        onProgress: (n) => {
          progress.framesSent = n;
          progress.tick();
        },
      }).then((s) => (frameStats = s));
      const pubs = Promise.all(range(0, PUBLISHERS).map(publisher));
      const [history, publishers] = await Promise.all([done, pubs, frameFuzz]);
      const fuzzMs = performance.now() - fuzzStarted;
      // every update and status sent was processed (exact counts: nothing lost, nothing counted twice)
      await progress.until(() => progress.updatesRefused >= progress.updatesSent && progress.statusesRefused >= progress.statusesExpected, 'the last fuzz payloads');
      progress.fuzzDone = true;
      const runMs = performance.now() - runStarted;
      for (const f of fuzzers) for (const [k, n] of Object.entries(f.withheld)) inc(withheld, k, n);

      // --- the run completed, every round with every real node
      expect(history.map((r: RoundRecord) => [r.round, r.selected, r.reported])).toEqual(range(1, ROUNDS).map((r) => [r, 3, 3]));
      for (const r of history) {
        expect(r.failures.timeout, `round ${r.round} timeouts`).toBeUndefined();
        expect(r.failures.offline, `round ${r.round} offline`).toBeUndefined();
      }
      expect(history[ROUNDS - 1].testAccuracy!).toBeGreaterThan(0.5);

      // --- each real update aggregated exactly once, and nothing else
      const key = (u: { round: number; nodeId: string }) => `${u.round}/${u.nodeId}`;
      const expected = range(1, ROUNDS).flatMap((r) => NODE_IDS.map((n) => `${r}/${n}`)).sort();
      expect(updated.map(key).sort()).toEqual(expected);
      expect(accepted.map(key).sort()).toEqual(expected);
      const sentBytes = new Map(updated.map((u) => [key(u), u.bytes]));
      for (const a of accepted) expect(a.bytes, key(a)).toBe(sentBytes.get(key(a)));

      // --- every fuzz payload refused, with a code, exactly once
      expect(progress.updatesRefused).toBe(progress.updatesSent);
      expect(progress.statusesRefused).toBe(progress.statusesExpected);
      const failuresInRounds: Record<string, number> = {};
      for (const r of history) for (const [c, n] of Object.entries(r.failures)) inc(failuresInRounds, c, n);
      for (const [c, n] of Object.entries(failuresInRounds)) expect(n, c).toBeLessThanOrEqual(rejectedCodes[c] ?? 0);
      for (const c of [...Object.keys(rejectedCodes), ...Object.keys(statusCodes)]) expect(c).toMatch(/^FEDMQ_[A-Z_]+$/);

      // --- broker, coordinator and nodes stayed up: no reconnect, no offline, no problem; a fresh client gets in
      expect(problems).toEqual([]);
      expect(offlineSeen).toEqual([]);
      expect(dropped).toEqual([]);
      expect(announced).toEqual(Object.fromEntries(NODE_IDS.map((n) => [n, 1])));
      const aedesClients = (broker.aedes as unknown as { clients: Record<string, { connected?: boolean } | undefined> }).clients;
      for (const id of realClientIds) expect(aedesClients[id]?.connected, id).toBe(true);
      for (const p of publishers) expect(p.connected).toBe(true);
      expect(coordinator.onlineNodes()).toEqual(NODE_IDS);
      const fresh = await mqtt.connectAsync(url, { clientId: 'fuzz-fresh', reconnectPeriod: 0 });
      clients.push(fresh);
      const echoed = new Promise<string>((resolve) => fresh.on('message', (_t, p) => resolve(p.toString())));
      await fresh.subscribeAsync('fuzz/echo', { qos: 1 });
      await fresh.publishAsync('fuzz/echo', 'still up', { qos: 1 });
      expect(await echoed).toBe('still up');

      // --- frames
      expect(frameStats!.frames).toBeGreaterThanOrEqual(FRAMES);
      expect(frameStats!.stuck).toBe(0);

      const sortDesc = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).sort((a, b) => b[1] - a[1]));
      console.log(JSON.stringify({
        seed: SEED, mode: LONG ? 'long' : 'short', rounds: ROUNDS,
        payloads: { sent: progress.payloadsSent, updates: progress.updatesSent, statuses: progress.payloadsSent - progress.updatesSent, statusesRefused: progress.statusesRefused },
        accepted: accepted.length, testAccuracy: history.map((r) => r.testAccuracy),
        updateRejections: sortDesc(rejectedCodes), statusRejections: sortDesc(statusCodes), failuresInRounds: sortDesc(failuresInRounds),
        withheldAsAcceptable: sortDesc(withheld), kindsSent: Object.keys(sentKinds).length,
        frames: frameStats, brokerErrors: sortDesc(brokerErrors), ms: { total: Math.round(performance.now() - started), run: Math.round(runMs), fuzz: Math.round(fuzzMs) },
        payloadsPerSecond: Math.round(progress.payloadsSent / (fuzzMs / 1000)),
      }, null, 1));
    },
    LONG ? 3_600_000 : 180_000,
  );
});
