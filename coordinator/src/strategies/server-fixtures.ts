/** Test fixtures shared by the server-optimiser strategies' hand-computed tests (FedAvgM, FedAdam, FedYogi, FedAdagrad). */
import type { NamedTensor } from '@fedmq/protocol';
import { addable } from '../aggregate.ts';
import type { Strategy } from '../strategy.ts';

export const fitConfig = { epochs: 1, batchSize: 32, learningRate: 0.1 };

/** The 3-parameter global model x_0 = (1, 2, 3). */
export const x0 = (): NamedTensor[] => [{ name: 'w', shape: [3], data: new Float32Array([1, 2, 3]) }];

/** One round: updates [numExamples, delta] folded in, then the strategy's step from `global`. */
export function round(s: Strategy, r: number, global: NamedTensor[], updates: [number, number[]][]): NamedTensor[] {
  const agg = s.beginRound(r, global);
  updates.forEach(([n, d], k) => agg.add({ nodeId: `n${k}`, numExamples: n, loss: 1, delta: [addable({ data: new Float32Array(d) })] }));
  return s.aggregateFit(r, global, agg, [])!;
}

// Round 1: A n=1 Δ=(0.4, −0.2, 0), B n=3 Δ=(0, −0.2, 0.4) → Δ_1 = (0.4/4, (−0.2−0.6)/4, 1.2/4) = (0.1, −0.2, 0.3)
export const ROUND1: [number, number[]][] = [[1, [0.4, -0.2, 0]], [3, [0, -0.2, 0.4]]];
// Round 2: A n=1 Δ=(0.5, 0.1, −0.05), B n=4 Δ=(0, 0.1, 0) → Δ_2 = (0.5/5, 0.5/5, −0.05/5) = (0.1, 0.1, −0.01)
export const ROUND2: [number, number[]][] = [[1, [0.5, 0.1, -0.05]], [4, [0, 0.1, 0]]];
