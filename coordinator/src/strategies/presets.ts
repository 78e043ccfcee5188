/**
 * A `--strategy` preset: the strategy names users know, each an aggregator, a server optimizer
 * and fit-config contributors (all by descriptor name). `--aggregator` and `--server-optimizer`
 * replace a preset's parts.
 */
export interface Preset {
  /** The `--strategy` name. */
  readonly name: string;
  /** Descriptor name of the aggregator. */
  readonly aggregator: string;
  /** Descriptor name of the server optimizer. */
  readonly optimizer: string;
  /** Descriptor names of the fit-config contributors, applied in order. */
  readonly fitConfig: readonly string[];
  /** Citation of the method the preset reproduces. */
  readonly paper: string;
}

/** The presets, in the order the docs and `--help` list them. */
export const PRESETS = [
  { name: 'fedavg', aggregator: 'mean', optimizer: 'sgd', fitConfig: [], paper: 'McMahan et al. 2017, arXiv:1602.05629' },
  { name: 'fedavgm', aggregator: 'mean', optimizer: 'momentum', fitConfig: [], paper: 'Hsu et al. 2019, arXiv:1909.06335' },
  { name: 'fedprox', aggregator: 'mean', optimizer: 'sgd', fitConfig: ['proximal'], paper: 'Li et al. 2020, arXiv:1812.06127' },
  { name: 'fedadam', aggregator: 'mean', optimizer: 'adam', fitConfig: [], paper: 'Reddi et al. 2021, arXiv:2003.00295' },
  { name: 'fedyogi', aggregator: 'mean', optimizer: 'yogi', fitConfig: [], paper: 'Reddi et al. 2021, arXiv:2003.00295' },
  { name: 'fedadagrad', aggregator: 'mean', optimizer: 'adagrad', fitConfig: [], paper: 'Reddi et al. 2021, arXiv:2003.00295' },
  { name: 'median', aggregator: 'median', optimizer: 'sgd', fitConfig: [], paper: 'Yin et al. 2018 (ICML)' },
  { name: 'trimmed-mean', aggregator: 'trimmed-mean', optimizer: 'sgd', fitConfig: [], paper: 'Yin et al. 2018 (ICML)' },
  { name: 'krum', aggregator: 'krum', optimizer: 'sgd', fitConfig: [], paper: 'Blanchard et al. 2017 (NeurIPS)' },
  { name: 'multi-krum', aggregator: 'multi-krum', optimizer: 'sgd', fitConfig: [], paper: 'Blanchard et al. 2017 (NeurIPS)' },
  { name: 'norm-bounding', aggregator: 'norm-bounding', optimizer: 'sgd', fitConfig: [], paper: 'Sun et al. 2019, arXiv:1911.07963' },
] as const satisfies readonly Preset[];

/** A preset's name, e.g. `fedavg`. */
export type StrategyName = (typeof PRESETS)[number]['name'];
