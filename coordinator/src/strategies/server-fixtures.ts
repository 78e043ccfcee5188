/** Test fixtures shared by the server optimizers' hand-computed tests (momentum, adam, yogi, adagrad). */
import type { NamedTensor } from '@fedmq/protocol';
import { addable } from '../aggregate.ts';
import type { Aggregator, ServerOptimizer } from '../strategy.ts';
import { MeanAggregator } from './mean.ts';

/** The 3-parameter global model x_0 = (1, 2, 3). */
export const x0 = (): NamedTensor[] => [{ name: 'w', shape: [3], data: new Float32Array([1, 2, 3]) }];

/**
 * One round: updates [numExamples, delta] folded into `parts.aggregator` (default: the weighted
 * mean, as the fedavgm/fedadam/fedyogi/fedadagrad presets), then the optimizer's step from `global`.
 */
export function round(parts: ServerOptimizer | { aggregator?: Aggregator; optimizer: ServerOptimizer }, r: number, global: NamedTensor[], updates: [number, number[]][]): NamedTensor[] {
  const { aggregator = new MeanAggregator(), optimizer } = 'step' in parts ? { optimizer: parts } : parts;
  const agg = aggregator.begin(r, global);
  updates.forEach(([n, d], k) => agg.add({ nodeId: `n${k}`, numExamples: n, loss: 1, delta: [addable({ data: new Float32Array(d) })] }));
  return optimizer.step(global, aggregator.finish(r, global, agg, [])!);
}

/** Round 1: A n=1 Δ=(0.4, −0.2, 0), B n=3 Δ=(0, −0.2, 0.4) → Δ_1 = (0.4/4, (−0.2−0.6)/4, 1.2/4) = (0.1, −0.2, 0.3). */
export const ROUND1: [number, number[]][] = [[1, [0.4, -0.2, 0]], [3, [0, -0.2, 0.4]]];
/** Round 2: A n=1 Δ=(0.5, 0.1, −0.05), B n=4 Δ=(0, 0.1, 0) → Δ_2 = (0.5/5, 0.5/5, −0.05/5) = (0.1, 0.1, −0.01). */
export const ROUND2: [number, number[]][] = [[1, [0.5, 0.1, -0.05]], [4, [0, 0.1, 0]]];
