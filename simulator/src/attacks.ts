import { ErrorCodes, FedmqError, seededRng, type NamedTensor } from '@fedmq/protocol';
import type { Dataset } from '@fedmq/ml';

/**
 * Attacks a simulated malicious node can make (`fedmq simulate --byzantine F --attack NAME`):
 * - `sign-flip`: sends −delta (a reversed step; e.g. Fang et al. 2020, Li et al. 2019 "RSA");
 * - `gaussian`: sends N(0, σ²) noise instead of its delta, σ = 1 by default (Blanchard et al. 2017);
 * - `scale`: sends λ·delta, λ = 10 by default (boosting / model replacement, Bagdasaryan et al. 2020);
 * - `label-flip`: trains honestly on poisoned labels y → (classes − 1 − y) (Biggio et al. 2012);
 * - `alie`: "A Little Is Enough" (Baruch, Baruch & Goldberg, NeurIPS 2019, arXiv:1902.06156): the
 *   malicious nodes of a round collude, and each sends μ − z·σ of their honest deltas per
 *   coordinate, z = Φ⁻¹((n − s)/n), s = ⌊n/2 + 1⌋ − f (see alie.ts). It is computed across worker
 *   threads by the simulator, not by {@link attackDelta}; with a single colluder σ = 0 and it
 *   sends the honest delta.
 */
export const ATTACKS = ['sign-flip', 'gaussian', 'scale', 'label-flip', 'alie'] as const;
export type AttackName = (typeof ATTACKS)[number];

/** Parameters of the attacks. */
export interface AttackParams {
  /** gaussian: standard deviation of the noise sent. */
  sigma?: number;
  /** scale: factor λ. */
  lambda?: number;
  /** alie: the shift in standard deviations; default z_max of the paper for each round's n and f. */
  z?: number;
}

/**
 * The `fraction` of `nodeIds` that are malicious, chosen by `seed` (round(fraction·n) nodes).
 * @throws FedmqError FEDMQ_BAD_CONFIG when fraction is outside [0, 1).
 */
export function pickMalicious(nodeIds: readonly string[], fraction: number, seed: number): Set<string> {
  if (!(fraction >= 0 && fraction < 1)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `byzantine fraction must be in [0, 1), got ${fraction}`);
  const rng = seededRng(seed ^ 0x5bd1e995);
  const order = nodeIds.map((id) => ({ id, key: rng() })).sort((a, b) => a.key - b.key);
  return new Set(order.slice(0, Math.round(fraction * nodeIds.length)).map((o) => o.id));
}

/**
 * What a malicious node sends instead of its honest `delta` (for the attacks on updates; the
 * label-flip attack leaves the delta alone). `rng` drives the gaussian noise.
 * @throws FedmqError FEDMQ_BAD_CONFIG for `alie`, which needs the colluders' deltas (alie.ts).
 */
export function attackDelta(attack: AttackName, delta: readonly NamedTensor[], rng: () => number, p: AttackParams = {}): NamedTensor[] {
  if (attack === 'alie') throw new FedmqError(ErrorCodes.BAD_CONFIG, 'alie is a colluding attack: use alieDelta with the colluders\' deltas');
  if (attack === 'label-flip') return delta.map((t) => ({ ...t }));
  return delta.map((t) => {
    const out = new Float32Array(t.data.length);
    if (attack === 'sign-flip') for (let i = 0; i < out.length; i++) out[i] = -t.data[i];
    else if (attack === 'scale') for (let i = 0; i < out.length; i++) out[i] = (p.lambda ?? 10) * t.data[i];
    else {
      const sigma = p.sigma ?? 1;
      for (let i = 0; i < out.length; i += 2) {
        // Box–Muller: two normals per two uniforms
        const r = Math.sqrt(-2 * Math.log(1 - rng()));
        const a = 2 * Math.PI * rng();
        out[i] = sigma * r * Math.cos(a);
        if (i + 1 < out.length) out[i + 1] = sigma * r * Math.sin(a);
      }
    }
    return { name: t.name, shape: [...t.shape], data: out };
  });
}

/** A copy of `data` with every label y replaced by (classes − 1 − y): the label-flip poison. */
export function flipLabels(data: Dataset): Dataset {
  const y = new Int32Array(data.y.length);
  for (let i = 0; i < y.length; i++) y[i] = data.numClasses - 1 - data.y[i];
  return { ...data, y };
}
