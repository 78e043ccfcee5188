/**
 * Scripted protocol v2 nodes for the coordinator's adapter tests (real broker, no tfjs on the
 * node side): each reads its own task topic and every model version, and answers fit tasks with
 * a delta of its choosing.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import {
  FitTaskSchema, NodeTaskSchema, PROTOCOL_VERSION, decodeGlobalModel, decodeJson, encodeJson, encodePacked, float32Codec, parseTopic, topicFilter, topics,
  weightsFromWire, type FitTask, type NamedTensor, type UpdateMessage,
} from '@fedmq/protocol';

/** A scripted node. */
export interface ScriptedNode {
  client: MqttClient;
  /** Rounds it answered. */
  answered: number[];
  /** Fit tasks it received, in order. */
  tasks: FitTask[];
  /** The model of `version`, once received. */
  model(version: number): NamedTensor[] | undefined;
  /** Resolves with the next fit task it receives. */
  nextTask(): Promise<FitTask>;
  /** Resolves with the model of `version` once received. */
  waitModel(version: number): Promise<NamedTensor[]>;
}

/** The update message of `nodeId` answering `task` with `delta`. */
export function updateFor(job: string, task: FitTask, nodeId: string, numExamples: number, delta: NamedTensor[], patch: Partial<UpdateMessage> = {}): Buffer {
  const u: UpdateMessage = {
    v: PROTOCOL_VERSION, job, runId: task.runId, nodeId, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion, numExamples,
    codec: 'float32', kind: 'delta', metrics: { loss: 1, trainMs: 1, bytesDown: 0 }, tensors: float32Codec.encode(delta, {}, undefined, Math.random), ts: Date.now(), ...patch,
  };
  return encodePacked(u);
}

/**
 * Connects a node that announces itself and, when `answer(task)` allows, answers each fit task
 * (once per task id, as EdgeNode does) with delta = 0.1 · (k − w) elementwise (k its constant) and numExamples 10·k.
 */
export async function scriptedNode(
  url: string, job: string, nodeId: string, k: number, answer: (task: FitTask) => boolean = () => true, clients: MqttClient[] = [], mqttOptions: IClientOptions = {},
): Promise<ScriptedNode> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: `scripted:${nodeId}`, ...mqttOptions });
  clients.push(c);
  const models = new Map<number, NamedTensor[]>();
  const waiting: { task: FitTask; resolve: (w: NamedTensor[]) => void }[] = [];
  const taskWaiters: ((t: FitTask) => void)[] = [];
  const modelWaiters: { version: number; resolve: (w: NamedTensor[]) => void }[] = [];
  const answeredTasks = new Set<string>();
  const node: ScriptedNode = {
    client: c, answered: [], tasks: [], model: (v) => models.get(v),
    nextTask: () => new Promise((resolve) => taskWaiters.push(resolve)),
    waitModel: (version) => new Promise((resolve) => (models.has(version) ? resolve(models.get(version)!) : modelWaiters.push({ version, resolve }))),
  };
  const respond = (task: FitTask, weights: NamedTensor[]) => {
    const delta = weights.map((w) => ({ ...w, data: Float32Array.from(w.data, (x) => 0.1 * (k - x)) }));
    node.answered.push(task.round);
    void c.publishAsync(topics.nodeUpdate(job, nodeId), updateFor(job, task, nodeId, 10 * k, delta), { qos: 1 });
  };
  c.on('message', (t, p) => {
    if (p.length === 0) return;
    const kind = parseTopic(t).kind;
    if (kind === 'model') {
      const m = decodeGlobalModel(p);
      const weights = weightsFromWire(m.tensors);
      models.set(m.version, weights);
      for (const x of modelWaiters.filter((w) => w.version === m.version)) {
        modelWaiters.splice(modelWaiters.indexOf(x), 1);
        x.resolve(weights);
      }
      for (const x of waiting.filter((w) => w.task.modelVersion === m.version)) {
        waiting.splice(waiting.indexOf(x), 1);
        x.resolve(weights);
      }
      return;
    }
    if (kind !== 'nodeTask') return;
    const any = decodeJson(NodeTaskSchema, p, 'task');
    if (any.stage !== 'fit') return;
    const task = FitTaskSchema.parse(any);
    node.tasks.push(task);
    for (const w of taskWaiters.splice(0)) w(task);
    // like EdgeNode: a task is answered once, however often QoS 1 and a republish deliver it
    const key = `${task.runId}:${task.taskId}`;
    if (answeredTasks.has(key) || !answer(task)) return;
    answeredTasks.add(key);
    const have = models.get(task.modelVersion);
    if (have) respond(task, have);
    else waiting.push({ task, resolve: (w) => respond(task, w) });
  });
  await c.subscribeAsync({ [topics.nodeTask(job, nodeId)]: { qos: 1 }, [topicFilter('model', job)]: { qos: 1 } });
  await c.publishAsync(topics.nodeStatus(job, nodeId), encodeJson({ v: PROTOCOL_VERSION, job, nodeId, state: 'idle', ts: Date.now(), numExamples: 10 * k }), { qos: 1, retain: true });
  return node;
}
