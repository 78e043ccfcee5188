import { InvalidArgumentError, Option, type Command } from 'commander';
import type { DistributedDpLedger, SecAggJobOptions } from '@fedmq/coordinator';

/** The secure-aggregation flags as commander parses them (docs/privacy.md, "Secure aggregation"). */
export interface SecAggFlags {
  secagg?: boolean;
  secaggGraph?: 'harary' | 'complete';
  secaggThreshold?: number;
  secaggNeighbours?: number;
  secaggClip?: number;
  secaggQuantBits?: number;
}

const KEYS = ['secaggGraph', 'secaggThreshold', 'secaggNeighbours', 'secaggClip', 'secaggQuantBits'] as const;

/** Adds the secure-aggregation flags to a command (coordinator, embedded simulate). */
export function addSecAggOptions(cmd: Command): Command {
  const fraction = (v: string) => {
    const n = Number(v);
    if (!(n > 0 && n <= 1)) throw new InvalidArgumentError('--secagg-threshold must be a fraction in (0, 1]');
    return n;
  };
  const even = (v: string) => {
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 2 && n % 2 === 0 && n <= 254)) throw new InvalidArgumentError('--secagg-neighbours must be an even integer in [2, 254]');
    return n;
  };
  const positive = (v: string) => {
    const n = Number(v);
    if (!(n > 0 && Number.isFinite(n))) throw new InvalidArgumentError('--secagg-clip must be a positive number');
    return n;
  };
  const bits = (v: string) => {
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 1 && n <= 24)) throw new InvalidArgumentError('--secagg-quant-bits must be an integer in [1, 24]');
    return n;
  };
  return cmd
    .option('--secagg', 'secure aggregation (SecAgg+, Bell et al. 2020): the coordinator learns only the sum of the round\'s updates (docs/privacy.md)')
    .addOption(new Option('--secagg-graph <graph>', 'secagg: harary = SecAgg+ (k random neighbours, default), complete = the original SecAgg (all pairs, ≤ 255 nodes)').choices(['harary', 'complete']))
    .option('--secagg-threshold <fraction>', 'secagg: θ, fraction of the cohort that must survive every stage (and of a node\'s neighbours holding its shares); default 0.5', fraction)
    .option('--secagg-neighbours <k>', 'secagg: neighbours per node (even; default from the cohort size, docs/privacy.md)', even)
    .option('--secagg-clip <c>', 'secagg: per-coordinate clipping range [−c, c] of the quantized deltas (default 1)', positive)
    .option('--secagg-quant-bits <b>', 'secagg: bits of a quantization level (default 16); with --dp distributed, C/γ = 2^(b−2)', bits);
}

/**
 * The coordinator's secure-aggregation options from the flags, or undefined without `--secagg`.
 * @throws InvalidArgumentError on a secagg flag without `--secagg`
 */
export function secaggOptions(o: SecAggFlags): SecAggJobOptions | undefined {
  if (!o.secagg) {
    const given = KEYS.filter((k) => o[k] !== undefined);
    if (given.length > 0) throw new InvalidArgumentError(`${given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}: secure aggregation is off; add --secagg`);
    return undefined;
  }
  return { graph: o.secaggGraph, thresholdFraction: o.secaggThreshold, neighbours: o.secaggNeighbours, clip: o.secaggClip, quantBits: o.secaggQuantBits };
}

/** The lines describing a run's secure aggregation (and distributed DP) for the CLI's header; none without `--secagg`. */
export function secaggSummary(o: SecAggFlags, c: { distributedDp?: DistributedDpLedger }): string[] {
  if (!o.secagg) return [];
  const graph = o.secaggGraph === 'complete' ? 'SecAgg (complete graph)' : `SecAgg+ (random ${o.secaggNeighbours ?? 'k'}-regular graph${o.secaggNeighbours ? '' : ', k from the cohort'})`;
  const d = c.distributedDp;
  const enc = d ? `distributed DP: each node adds discrete Gaussian noise, z=${d.noiseMultiplier}, C=${d.clipNorm} (L2), C/γ=${d.scale}, δ=${d.delta}, no amplification by sampling claimed${d.maxEpsilon !== null ? `, budget ε ≤ ${d.maxEpsilon}` : ''}` : `${o.secaggQuantBits ?? 16}-bit levels over [−${o.secaggClip ?? 1}, ${o.secaggClip ?? 1}]`;
  return [`secure aggregation: ${graph}, threshold θ=${o.secaggThreshold ?? 0.5}, ${enc}`];
}
