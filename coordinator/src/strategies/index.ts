/**
 * The strategy registry, generated from the component descriptors: names for `--strategy`,
 * `--aggregator` and `--server-optimizer`, {@link createStrategy}, the CLI flags
 * ({@link strategyCliOptions}) and the docs tables ({@link strategiesMarkdown}). Adding a
 * component is one module with one descriptor, listed in {@link DESCRIPTORS}.
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import { ErrorCodes, FedmqError, type FitConfig } from '@fedmq/protocol';
import type { Strategy } from '../strategy.ts';
import { adagradDescriptor } from './adagrad.ts';
import { adamDescriptor } from './adam.ts';
import { ComposedStrategy } from './compose.ts';
import { createComponent, flagName, type AggregatorDescriptor, type ComponentDescriptor, type FitConfigDescriptor, type OptimizerDescriptor, type ParamFlag } from './descriptor.ts';
import { FedAvgSelector, sample } from './fedavg-selector.ts';
import { krumDescriptor } from './krum.ts';
import { meanDescriptor } from './mean.ts';
import { medianDescriptor } from './median.ts';
import { momentumDescriptor } from './momentum.ts';
import { multiKrumDescriptor } from './multi-krum.ts';
import { normBoundingDescriptor } from './norm-bounding.ts';
import { PRESETS, type Preset, type StrategyName } from './presets.ts';
import { proximalDescriptor } from './proximal.ts';
import { sgdDescriptor } from './sgd.ts';
import { trimmedMeanDescriptor } from './trimmed-mean.ts';
import { yogiDescriptor } from './yogi.ts';

/** The aggregator descriptors, in docs order. */
export const AGGREGATORS: readonly AggregatorDescriptor[] = [meanDescriptor, normBoundingDescriptor, medianDescriptor, trimmedMeanDescriptor, krumDescriptor, multiKrumDescriptor];
/** The server-optimizer descriptors, in docs order. */
export const OPTIMIZERS: readonly OptimizerDescriptor[] = [sgdDescriptor, momentumDescriptor, adamDescriptor, yogiDescriptor, adagradDescriptor];
/** The fit-config contributor descriptors. */
export const FIT_CONFIG_CONTRIBUTORS: readonly FitConfigDescriptor[] = [proximalDescriptor];
/** Every component descriptor: aggregators, then server optimizers, then fit-config contributors. */
export const DESCRIPTORS: readonly ComponentDescriptor[] = [...AGGREGATORS, ...OPTIMIZERS, ...FIT_CONFIG_CONTRIBUTORS];

/** Names `--strategy` accepts: the presets (docs/strategies.md). */
export const STRATEGY_NAMES: readonly StrategyName[] = PRESETS.map((p) => p.name);
/** Names `--aggregator` accepts. */
export const AGGREGATOR_NAMES: readonly string[] = AGGREGATORS.map((d) => d.name);
/** Names `--server-optimizer` accepts. */
export const OPTIMIZER_NAMES: readonly string[] = OPTIMIZERS.map((d) => d.name);

export { PRESETS, sample, type Preset, type StrategyName };

/** What {@link createStrategy} builds a strategy from. */
export interface StrategySpec {
  /** Preset name (one of {@link STRATEGY_NAMES}); default `fedavg`. */
  strategy?: string;
  /** Replaces the preset's aggregator (one of {@link AGGREGATOR_NAMES}). */
  aggregator?: string;
  /** Replaces the preset's server optimizer (one of {@link OPTIMIZER_NAMES}). */
  serverOptimizer?: string;
  /** Fraction C of the available nodes sampled each round, in (0, 1]. */
  fraction: number;
  /** Minimum nodes sampled per round (when available), integer ≥ 1. */
  minFitNodes: number;
  /** Local training configuration sent to every selected node (before fit-config contributors). */
  fitConfig: FitConfig;
  /**
   * The components' parameters, ONE flat namespace of camelCase keys shared by all descriptors
   * (the CLI passes its parsed flags: `serverLr`, `trimBeta`, `krumF` …, see
   * {@link strategyCliOptions}). Each component reads only its own keys; `undefined` values are
   * ignored (the default applies). Keys no descriptor knows are refused.
   */
  params?: Readonly<Record<string, unknown>>;
}

/**
 * Builds a strategy: the preset's parts, with `aggregator` / `serverOptimizer` replacing them,
 * each component built from its descriptor with its keys of `params`; the selector is FedAvg's
 * uniform sample of `fraction` (at least `minFitNodes`).
 *
 * The strategy's `name` is the preset's when no part was replaced, else
 * `aggregator+optimizer`, followed by `+contributor` for each fit-config contributor of the preset
 * (e.g. `median+adam`, `mean+adam+proximal` for `--strategy fedprox --server-optimizer adam`).
 *
 * @param ctx `logger` is passed to the components (Krum logs refused rounds).
 * @throws FedmqError FEDMQ_BAD_CONFIG on an unknown strategy, aggregator or optimizer name (the
 *   message lists the valid ones), a `fraction` outside (0, 1], a `minFitNodes` that is not an
 *   integer ≥ 1, a `params` key no descriptor knows, a missing required parameter or a refused
 *   value (the message names the flag, e.g. `--krum-f <f>`), or parameters inconsistent with the
 *   strategy (Krum's minFitNodes ≥ 2f + 3).
 */
export function createStrategy(spec: StrategySpec, ctx: { logger?: Logger } = {}): Strategy {
  if (!(typeof spec.fraction === 'number' && spec.fraction > 0 && spec.fraction <= 1)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `fraction must be in (0, 1], got ${String(spec.fraction)}`, { key: 'fraction' });
  }
  if (!(Number.isInteger(spec.minFitNodes) && spec.minFitNodes >= 1)) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `minFitNodes must be an integer ≥ 1, got ${String(spec.minFitNodes)}`, { key: 'minFitNodes' });
  }
  const params = spec.params ?? {};
  const unknown = Object.keys(params).filter((k) => params[k] !== undefined && !PARAM_KEYS.has(k));
  if (unknown.length > 0) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown strategy parameter ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected one of ${[...PARAM_KEYS].join(', ')}`, { keys: unknown });
  }
  const presetName = spec.strategy ?? 'fedavg';
  const preset: Preset | undefined = PRESETS.find((p) => p.name === presetName);
  if (!preset) throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown strategy ${JSON.stringify(presetName)}; expected one of ${STRATEGY_NAMES.join(', ')}`);
  const aggName = spec.aggregator ?? preset.aggregator;
  const aggD = AGGREGATORS.find((d) => d.name === aggName);
  if (!aggD) throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown aggregator ${JSON.stringify(aggName)}; expected one of ${AGGREGATOR_NAMES.join(', ')}`);
  const optName = spec.serverOptimizer ?? preset.optimizer;
  const optD = OPTIMIZERS.find((d) => d.name === optName);
  if (!optD) throw new FedmqError(ErrorCodes.BAD_CONFIG, `unknown server optimizer ${JSON.stringify(optName)}; expected one of ${OPTIMIZER_NAMES.join(', ')}`);
  const componentCtx = { logger: ctx.logger, minFitNodes: spec.minFitNodes };
  const aggregator = createComponent(aggD, params, componentCtx);
  const optimizer = createComponent(optD, params, componentCtx);
  const contributors = preset.fitConfig.map((n) => createComponent(byName(FIT_CONFIG_CONTRIBUTORS, n), params, componentCtx));
  const replaced = aggName !== preset.aggregator || optName !== preset.optimizer;
  const name = replaced ? [aggName, optName, ...preset.fitConfig].join('+') : preset.name;
  return new ComposedStrategy({
    name,
    selector: new FedAvgSelector({ fraction: spec.fraction, minFitNodes: spec.minFitNodes }),
    aggregator,
    optimizer,
    contributors,
    fitConfig: spec.fitConfig,
  });
}

/** A CLI flag for a strategy parameter, as {@link strategyCliOptions} lists them. */
export interface StrategyCliOption {
  /** Commander syntax, e.g. `--server-lr <eta>`; commander's camelCase of the long name is {@link key}. */
  flag: string;
  /** The key in {@link StrategySpec.params}, e.g. `serverLr`. */
  key: string;
  /** `--help` text, with each component's default, e.g. `server learning rate η (default: sgd 1, momentum 1, adam 0.1, …)`. */
  help: string;
  /**
   * The flag's value as a number.
   * @throws Error with a message naming the flag when `value` is not a finite number or is refused
   *   by a component's schema (e.g. `--trim-beta must be in [0, 0.5), got 0.7`).
   */
  parse(value: string): number;
}

/**
 * The CLI flags to register for the strategy parameters, generated from the descriptors and
 * deduplicated by flag (one flag may serve several components, e.g. `--server-lr` for every
 * optimizer, each with its own default). A flag left out on the command line should be left out
 * of `params` (the components' defaults then apply). A fresh array.
 */
export function strategyCliOptions(): StrategyCliOption[] {
  return FLAG_TABLE.map((e) => ({
    flag: e.flag,
    key: e.key,
    help: `${e.help} (${defaultsText(e)})`,
    parse: (value: string) => parseFlagValue(e, value),
  }));
}

/**
 * The markdown tables of docs/strategies.md (between its `<!-- strategies:start -->` and
 * `<!-- strategies:end -->` markers): presets, aggregators, server optimizers and fit-config
 * contributors, with papers, flags with defaults, and whether updates fold as they arrive.
 * No trailing newline.
 */
export function strategiesMarkdown(): string {
  const flagsOf = (ds: readonly ComponentDescriptor[]): string => {
    const cells = ds.flatMap((d) => d.flags.map((f) => `\`${flagName(f.flag)}\` (${defaultOf(d, f)})`));
    return cells.length === 0 ? '—' : [...new Set(cells)].join(', ');
  };
  const streaming = (d: AggregatorDescriptor): string => (d.streaming ? 'yes: O(model)' : 'no: keeps every update, O(n × model)');
  const lines: string[] = [];
  lines.push('**Presets** (`--strategy NAME`; `--aggregator` and `--server-optimizer` replace a part):', '');
  lines.push('| `--strategy` | aggregator | server optimizer | fit config | paper | options (default) | folds as updates arrive? |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const p of PRESETS) {
    const agg = byName(AGGREGATORS, p.aggregator);
    const opt = byName(OPTIMIZERS, p.optimizer);
    const fit = p.fitConfig.map((n) => byName(FIT_CONFIG_CONTRIBUTORS, n));
    const fitCell = fit.length === 0 ? '—' : fit.map((d) => `\`${d.name}\``).join(', ');
    lines.push(`| \`${p.name}\` | \`${agg.name}\` | \`${opt.name}\` | ${fitCell} | ${p.paper} | ${flagsOf([agg, opt, ...fit])} | ${agg.streaming ? 'yes' : 'no'} |`);
  }
  lines.push('', '**Aggregators** (`--aggregator NAME`): turn the round\'s updates into one step Δ.', '');
  lines.push('| `--aggregator` | rule | paper | options (default) | folds as updates arrive? |');
  lines.push('|---|---|---|---|---|');
  for (const d of AGGREGATORS) lines.push(`| \`${d.name}\` | ${d.title} | ${d.paper} | ${flagsOf([d])} | ${streaming(d)} |`);
  lines.push('', '**Server optimizers** (`--server-optimizer NAME`): x_{t+1} from x_t and the step Δ_t; work over any aggregator.', '');
  lines.push('| `--server-optimizer` | update | paper | options (default) | state in the checkpoint |');
  lines.push('|---|---|---|---|---|');
  for (const d of OPTIMIZERS) lines.push(`| \`${d.name}\` | ${d.title} | ${d.paper} | ${flagsOf([d])} | ${d.stateful ? 'yes' : 'no'} |`);
  lines.push('', '**Fit-config contributors**: add to the local training configuration sent to the nodes.', '');
  lines.push('| contributor | effect | paper | options (default) | in presets |');
  lines.push('|---|---|---|---|---|');
  for (const d of FIT_CONFIG_CONTRIBUTORS) {
    const users = PRESETS.filter((p) => (p.fitConfig as readonly string[]).includes(d.name)).map((p) => `\`${p.name}\``).join(', ') || '—';
    lines.push(`| \`${d.name}\` | ${d.title} | ${d.paper} | ${flagsOf([d])} | ${users} |`);
  }
  return lines.join('\n');
}

// ---- generated tables and their consistency checks ----

/** One CLI flag and the components that declare it. */
interface FlagEntry {
  flag: string;
  key: string;
  help: string;
  users: { d: ComponentDescriptor; f: ParamFlag }[];
}

function byName<D extends ComponentDescriptor>(ds: readonly D[], name: string): D {
  const d = ds.find((x) => x.name === name);
  if (!d) throw new Error(`no descriptor named ${name}`);
  return d;
}

/** commander's attribute name of a flag: `--multi-krum-m <m>` → `multiKrumM`. */
export function flagAttributeName(flag: string): string {
  return flagName(flag).replace(/^--/, '').replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * The flags of all descriptors, deduplicated, after checking the registry: unique component and
 * preset names, presets naming existing components, each flag's key in its schema (and every
 * schema key with a flag), one key per flag and one flag per key, and keys equal to commander's
 * attribute names.
 * @throws Error on an inconsistency (a programming error, caught by the tests at load).
 */
function buildFlagTable(): FlagEntry[] {
  const names = new Set<string>();
  for (const d of DESCRIPTORS) {
    const id = `${d.kind}:${d.name}`;
    if (names.has(id)) throw new Error(`two ${d.kind} descriptors are named ${d.name}`);
    names.add(id);
  }
  if (new Set(PRESETS.map((p) => p.name)).size !== PRESETS.length) throw new Error('two presets have the same name');
  for (const p of PRESETS) {
    byName(AGGREGATORS, p.aggregator);
    byName(OPTIMIZERS, p.optimizer);
    for (const n of p.fitConfig) byName(FIT_CONFIG_CONTRIBUTORS, n);
  }
  const table = new Map<string, FlagEntry>();
  const flagOfKey = new Map<string, string>();
  for (const d of DESCRIPTORS) {
    const keys = Object.keys(d.params.shape);
    for (const k of keys) if (!d.flags.some((f) => f.key === k)) throw new Error(`${d.name}: parameter ${k} has no flag`);
    for (const f of d.flags) {
      const name = flagName(f.flag);
      if (!keys.includes(f.key)) throw new Error(`${d.name}: flag ${name} names ${f.key}, not a parameter`);
      if (flagAttributeName(f.flag) !== f.key) throw new Error(`${d.name}: flag ${name} must have the key ${flagAttributeName(f.flag)}, not ${f.key}`);
      const other = flagOfKey.get(f.key);
      if (other !== undefined && other !== name) throw new Error(`key ${f.key} has two flags, ${other} and ${name}`);
      flagOfKey.set(f.key, name);
      const e = table.get(name);
      if (e === undefined) table.set(name, { flag: f.flag, key: f.key, help: f.help, users: [{ d, f }] });
      else if (e.flag !== f.flag) throw new Error(`flag ${name} is declared as ${e.flag} and ${f.flag}`);
      else e.users.push({ d, f });
    }
  }
  return [...table.values()];
}

const FLAG_TABLE: readonly FlagEntry[] = buildFlagTable();
const PARAM_KEYS: ReadonlySet<string> = new Set(FLAG_TABLE.map((e) => e.key));

/** A parameter's schema field. */
function field(d: ComponentDescriptor, key: string): z.ZodType {
  return d.params.shape[key];
}

/** The docs' default of one flag of one component: the schema default, `required`, or the flag's `defaultText`. */
function defaultOf(d: ComponentDescriptor, f: ParamFlag): string {
  const r = field(d, f.key).safeParse(undefined);
  if (!r.success) return 'required';
  return r.data === undefined ? (f.defaultText ?? 'none') : String(r.data);
}

/** `default 0.1`, `required`, or `default: sgd 1, momentum 1, adam 0.1, …` when the components differ. */
function defaultsText(e: FlagEntry): string {
  const all = e.users.map(({ d, f }) => ({ d, v: defaultOf(d, f) }));
  if (all.every((x) => x.v === all[0].v)) return all[0].v === 'required' ? `required by ${all.map((x) => x.d.name).join(', ')}` : `default ${all[0].v}`;
  return `default: ${all.map((x) => `${x.d.name} ${x.v}`).join(', ')}`;
}

function parseFlagValue(e: FlagEntry, value: string): number {
  const name = flagName(e.flag);
  const s = value.trim();
  const n = s === '' ? NaN : Number(s);
  if (!Number.isFinite(n)) throw new Error(`${name} expects a finite number, got ${JSON.stringify(value)}`);
  for (const { d } of e.users) {
    const r = field(d, e.key).safeParse(n);
    if (!r.success) throw new Error(`${name} ${r.error.issues[0].message}, got ${value}`);
  }
  return n;
}
