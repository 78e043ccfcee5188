import { InvalidArgumentError, Option, type Command } from 'commander';
import type { DpOptions } from '@fedmq/coordinator';
import { DP_MODES, type DpMode } from '@fedmq/protocol';

/** The differential-privacy flags as commander parses them (docs/privacy.md, "Parameters"). */
export interface DpFlags {
  dp?: DpMode;
  noiseMultiplier?: number;
  clipNorm?: number | { targetQuantile: number };
  initialClipNorm?: number;
  clipLr?: number;
  targetEpsilon?: number;
  targetDelta?: number;
  maxEpsilon?: number;
}

const positive = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || !(n > 0)) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};

/** `--clip-norm C | adaptive:γ`. */
function parseClipNorm(v: string): number | { targetQuantile: number } {
  const m = /^adaptive:(.+)$/.exec(v);
  if (m) {
    const g = Number(m[1]);
    if (!(g > 0 && g < 1)) throw new InvalidArgumentError('clip-norm adaptive:γ needs a target quantile γ in (0, 1), e.g. adaptive:0.5');
    return { targetQuantile: g };
  }
  const c = Number(v);
  if (!Number.isFinite(c) || !(c > 0)) throw new InvalidArgumentError('clip-norm must be a positive number C or adaptive:γ');
  return c;
}

/** Adds the DP flags to a command (coordinator, embedded simulate). */
export function addDpOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--dp <mode>', 'client-level differential privacy (DP-FedAvg): central = the coordinator noises the sum, local = each node noises its update, distributed = each node adds a share of the noise under --secagg (docs/privacy.md)').choices([...DP_MODES]))
    .option('--noise-multiplier <σ>', 'dp: noise std in units of the clip norm (or give --target-epsilon)', positive('noise-multiplier'))
    .option('--clip-norm <C>', 'dp: L2 clip norm of every delta, or adaptive:γ (Andrew et al. 2021: C follows the γ-quantile of the update norms; central only)', parseClipNorm)
    .option('--initial-clip-norm <C0>', 'dp, adaptive clipping: the first round\'s C (default 0.1)', positive('initial-clip-norm'))
    .option('--clip-lr <η>', 'dp, adaptive clipping: learning rate of the geometric C update (default 0.2)', positive('clip-lr'))
    .option('--target-epsilon <ε>', 'dp: pick the smallest noise multiplier with ε(δ) ≤ this after --rounds rounds', positive('target-epsilon'))
    .option('--target-delta <δ>', 'dp: δ of the target, the budget and every reported ε (default 1e-5)', positive('target-delta'))
    .option('--max-epsilon <ε>', 'dp: stop the run (FEDMQ_PRIVACY_BUDGET, checkpointed) before a round would make ε(δ) exceed this', positive('max-epsilon'));
}

/** Attribute names of the DP flags other than `--dp`. */
const DP_DETAIL_KEYS = ['noiseMultiplier', 'clipNorm', 'initialClipNorm', 'clipLr', 'targetEpsilon', 'targetDelta', 'maxEpsilon'] as const;

/**
 * The coordinator's DP options from the flags, or undefined without `--dp`.
 * @throws InvalidArgumentError on a DP flag without `--dp`, `--dp` without `--clip-norm` or without
 *   exactly one of `--noise-multiplier` and `--target-epsilon`, or the adaptive flags with a fixed C.
 */
export function dpOptions(o: DpFlags): DpOptions | undefined {
  const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  if (!o.dp) {
    const given = DP_DETAIL_KEYS.filter((k) => o[k] !== undefined);
    if (given.length > 0) throw new InvalidArgumentError(`${given.map(flag).join(', ')}: differential privacy is off; add --dp central or --dp local`);
    return undefined;
  }
  if (o.clipNorm === undefined) throw new InvalidArgumentError('--dp needs --clip-norm C (or adaptive:γ in central mode)');
  if ((o.noiseMultiplier === undefined) === (o.targetEpsilon === undefined)) throw new InvalidArgumentError('--dp needs exactly one of --noise-multiplier σ and --target-epsilon ε');
  if (typeof o.clipNorm === 'number' && (o.initialClipNorm !== undefined || o.clipLr !== undefined)) {
    throw new InvalidArgumentError('--initial-clip-norm and --clip-lr are for adaptive clipping: --clip-norm adaptive:γ');
  }
  if (o.targetDelta !== undefined && !(o.targetDelta < 1)) throw new InvalidArgumentError('--target-delta must be in (0, 1)');
  const clipNorm = typeof o.clipNorm === 'number' ? o.clipNorm : { targetQuantile: o.clipNorm.targetQuantile, initialClipNorm: o.initialClipNorm, learningRate: o.clipLr };
  return { mode: o.dp, noiseMultiplier: o.noiseMultiplier, targetEpsilon: o.targetEpsilon, delta: o.targetDelta, clipNorm, maxEpsilon: o.maxEpsilon };
}

/** One line describing a run's DP, for the CLI's header (from the coordinator's resolved ledger). */
export function dpSummary(p: { mode: DpMode; q: number; noiseMultiplier: number; delta: number; clipNorm: number; adaptive: { targetQuantile: number } | null; maxEpsilon: number | null }, targetEpsilon?: number): string {
  const sigma = `σ=${p.noiseMultiplier.toPrecision(4)}${targetEpsilon !== undefined ? ` (calibrated for ε=${targetEpsilon})` : ''}`;
  const clip = p.adaptive ? `C adaptive (γ=${p.adaptive.targetQuantile}, C0=${p.clipNorm})` : `C=${p.clipNorm}`;
  return `differential privacy: ${p.mode}, Poisson sampling q=${p.q}, ${sigma}, ${clip}, δ=${p.delta}${p.maxEpsilon !== null ? `, budget ε ≤ ${p.maxEpsilon}` : ''}`;
}
