/**
 * Test kit of the round engine: a fake clock, scripted node messages and readers of the
 * machine's effects. No broker, no timers: tests feed events and assert effects.
 */
import {
  EvaluateTaskSchema, FitTaskSchema, NodeTaskSchema, PROTOCOL_VERSION, decodeGlobalModel, decodeJson, encodeJson, encodePacked, float32Codec, parseTopic,
  topics, weightsFromWire, type EvaluateResult, type EvaluateTask, type FitTask, type NamedTensor, type NodeTask, type UpdateMessage,
} from '@fedmq/protocol';
import { createStrategy } from '../strategies/index.ts';
import type { Strategy } from '../strategy.ts';
import { RoundMachine } from './machine.ts';
import type { CoordinatorCheckpoint, Effect, EngineConfig, EngineEvent, EngineNotice } from './types.ts';

export const JOB = 'engine-test';
export const FIT = { epochs: 1, batchSize: 8, learningRate: 0.1 };

/** A two-tensor model: a [2, 2] kernel and a [2] bias. */
export function tinyModel(): NamedTensor[] {
  return [
    { name: 'dense/kernel', shape: [2, 2], data: new Float32Array([0.5, -0.5, 0.25, 1]) },
    { name: 'dense/bias', shape: [2], data: new Float32Array([0, 0.1]) },
  ];
}

export function fedavg(fraction = 1, minFitNodes = 1): Strategy {
  return createStrategy({ strategy: 'fedavg', fraction, minFitNodes, fitConfig: FIT });
}

/** An engine config with test defaults. */
export function config(o: Partial<EngineConfig> = {}): EngineConfig {
  return {
    job: JOB, runId: 'run-1', model: 'tiny', mode: 'sync', rounds: 2, strategy: fedavg(), minAvailableNodes: 2, minAcceptedUpdates: 1, minCompletionRate: 0,
    overSelection: 0, maxRoundRetries: 3, deadlineMs: 10_000, codec: 'float32', downlink: 'float32', seed: 7, centralEval: false, evaluateFraction: 0,
    valFraction: 0, evaluateBatchSize: 64, describe: {}, ...o,
  };
}

/** A machine on a fake clock, with helpers to feed it and read what it did. */
export class Harness {
  time = 1_800_000_000_000;
  readonly machine: RoundMachine;
  /** Every effect so far, in order. */
  readonly effects: Effect[] = [];
  /** Timers set and not cancelled or fired: id → at. */
  readonly timers = new Map<string, number>();
  finished?: Extract<Effect, { type: 'finish' }>;

  constructor(cfg: EngineConfig, weights: NamedTensor[] = tinyModel(), resume?: CoordinatorCheckpoint) {
    this.machine = new RoundMachine(cfg, { weights, resume }, () => this.time);
  }

  /** Feeds one event; returns its effects. */
  feed(event: EngineEvent): Effect[] {
    const out = this.machine.handle(event);
    for (const e of out) {
      this.effects.push(e);
      if (e.type === 'timer') this.timers.set(e.id, e.at);
      if (e.type === 'cancelTimer') this.timers.delete(e.id);
      if (e.type === 'finish') this.finished = e;
    }
    return out;
  }

  /** Advances the clock to the earliest timer and fires it. */
  fireNextTimer(): Effect[] {
    const [id, at] = [...this.timers.entries()].sort((a, b) => a[1] - b[1])[0] ?? [];
    if (id === undefined) throw new Error('no timer set');
    this.time = Math.max(this.time, at);
    this.timers.delete(id);
    return this.feed({ type: 'timer', id });
  }

  status(nodeId: string, state: 'idle' | 'training' | 'offline' = 'idle'): Effect[] {
    return this.feed({ type: 'message', topic: topics.nodeStatus(JOB, nodeId), payload: encodeJson({ v: PROTOCOL_VERSION, job: JOB, nodeId, state, ts: this.time }) });
  }

  /** Tasks published in `effects` (default: all so far). */
  tasks(effects: readonly Effect[] = this.effects): NodeTask[] {
    return publishes(effects).filter((p) => parseTopic(p.topic).kind === 'nodeTask').map((p) => decodeJson(NodeTaskSchema, p.payload, 'task'));
  }

  fitTasks(effects: readonly Effect[] = this.effects): FitTask[] {
    return this.tasks(effects).filter((t): t is FitTask => t.stage === 'fit').map((t) => FitTaskSchema.parse(t));
  }

  evaluateTasks(effects: readonly Effect[] = this.effects): EvaluateTask[] {
    return this.tasks(effects).filter((t): t is EvaluateTask => t.stage === 'evaluate').map((t) => EvaluateTaskSchema.parse(t));
  }

  /** The latest global model published (retained, non-empty) on `models/{v}`, with its version. */
  latestModel(): { version: number; weights: NamedTensor[] } {
    const p = publishes(this.effects).filter((x) => parseTopic(x.topic).kind === 'model' && x.payload.length > 0).at(-1)!;
    const m = decodeGlobalModel(p.payload);
    return { version: m.version, weights: weightsFromWire(m.tensors) };
  }

  /** Answers a fit task with delta = `value` everywhere (or the given tensors). */
  answer(task: FitTask, numExamples: number, value: number | NamedTensor[], patch: Partial<UpdateMessage> = {}): Effect[] {
    return this.feed(updateEvent(task, numExamples, value, patch));
  }

  evaluation(task: EvaluateTask, numExamples: number, accuracy: number, local: number | null = null): Effect[] {
    const r: EvaluateResult = {
      v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId: task.nodeId, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion, numExamples,
      global: { loss: 1 - accuracy, accuracy }, local: local === null ? null : { loss: 1 - local, accuracy: local }, evalMs: 1, bytesDown: 100, ts: this.time,
    };
    return this.feed({ type: 'message', topic: topics.nodeEvaluation(JOB, task.nodeId), payload: encodeJson(r) });
  }

  notices(type?: EngineNotice['type']): EngineNotice[] {
    return this.effects.flatMap((e) => (e.type === 'emit' && (!type || e.event.type === type) ? [e.event] : []));
  }

  /** Codes of the `rejected` notices, in order. */
  rejections(): string[] {
    return this.notices('rejected').map((n) => (n.type === 'rejected' ? n.error.code : ''));
  }
}

/** The publish effects of `effects`. */
export function publishes(effects: readonly Effect[]): Extract<Effect, { type: 'publish' }>[] {
  return effects.filter((e): e is Extract<Effect, { type: 'publish' }> => e.type === 'publish');
}

/** A message event: `task.nodeId`'s update for `task`. */
export function updateEvent(task: FitTask, numExamples: number, value: number | NamedTensor[], patch: Partial<UpdateMessage> = {}): EngineEvent {
  const fill = typeof value === 'number' && Number.isNaN(value) ? 0 : value;
  const delta = typeof fill === 'number' ? tinyModel().map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(fill) })) : fill;
  const tensors = float32Codec.encode(delta, {}, undefined, Math.random);
  if (typeof value === 'number' && Number.isNaN(value)) {
    // fedmq's own encoder refuses NaN: write one into the bytes by hand
    const bytes = Uint8Array.from(tensors[0].data as Uint8Array);
    new DataView(bytes.buffer).setFloat32(0, Number.NaN, true);
    tensors[0] = { ...tensors[0], data: bytes };
  }
  const u: UpdateMessage = {
    v: PROTOCOL_VERSION, job: JOB, runId: task.runId, nodeId: task.nodeId, taskId: task.taskId, round: task.round, modelVersion: task.modelVersion, numExamples,
    codec: 'float32', kind: 'delta', metrics: { loss: 0.5, trainMs: 3, bytesDown: 1000 }, tensors, ts: 0,
    ...patch,
  };
  return { type: 'message', topic: topics.nodeUpdate(JOB, patch.nodeId ?? task.nodeId), payload: encodePacked(u) };
}
