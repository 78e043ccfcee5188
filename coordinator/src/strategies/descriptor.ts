import type { Logger } from 'pino';
import { z } from 'zod';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import type { Aggregator, FitConfigContributor, ServerOptimizer } from '../strategy.ts';

/**
 * What a component's `create` gets besides its parameters. Every field is optional: a component
 * built alone (in a test) gets `{}`.
 */
export interface ComponentContext {
  /** Where the component logs (structured, pino); default: silent. Krum warns on refused rounds. */
  logger?: Logger;
  /**
   * The strategy's minFitNodes, for components whose parameters constrain it (Krum needs
   * minFitNodes ≥ 2f + 3). Set by `createStrategy`; absent when a component is built alone.
   */
  minFitNodes?: number;
}

/** One CLI flag of a component parameter. */
export interface ParamFlag {
  /** Commander syntax, e.g. `--trim-beta <b>`. The long name in camelCase must be {@link key}. */
  flag: string;
  /** The parameter's key in the params schema and in `createStrategy`'s flat `params`, e.g. `trimBeta`. */
  key: string;
  /** One line for `--help` and the docs (without the default: that comes from the schema). */
  help: string;
  /**
   * What the docs show as the default when the schema has none and the parameter is optional
   * (e.g. `n − f` for Multi-Krum's m, which depends on the round).
   */
  defaultText?: string;
}

/** A component's parameter schema: a zod object of numbers, with `.default(…)` on optional ones. */
export type ParamsSchema = z.ZodObject;

/** The kinds of component a descriptor can create. */
export type ComponentKind = 'aggregator' | 'optimizer' | 'fitConfig';

/**
 * A strategy component's descriptor: everything the registry, the CLI and the docs need to know
 * about it. Each component module in `coordinator/src/strategies/` exports exactly one.
 *
 * @typeParam K the kind of component.
 * @typeParam T what `create` returns.
 * @typeParam S the parameter schema.
 */
export interface Descriptor<K extends ComponentKind, T, S extends ParamsSchema = ParamsSchema> {
  kind: K;
  /** Name used by `--aggregator` / `--server-optimizer`, in logs and (optimizers) in the state: lowercase, `-`-separated. */
  name: string;
  /** Short human title, e.g. `coordinate-wise median`. */
  title: string;
  /** Citation of the method, e.g. `Yin et al. 2018, "Byzantine-Robust Distributed Learning…", ICML`. */
  paper: string;
  /**
   * The parameters: keys are camelCase and shared across components (one flat namespace, e.g.
   * `serverLr` for every optimizer, each with its own default); a required parameter has no
   * default. Unknown keys are ignored by a component (they belong to others).
   */
  params: S;
  /** One flag per key of {@link params}. */
  flags: readonly ParamFlag[];
  /**
   * Builds the component from validated parameters (defaults applied).
   * @throws RangeError when the parameters are inconsistent with each other or with the context
   *   (the registry turns it into FEDMQ_BAD_CONFIG).
   */
  create(params: z.output<S>, ctx: ComponentContext): T;
}

/** Descriptor of an {@link Aggregator}. */
export interface AggregatorDescriptor<S extends ParamsSchema = ParamsSchema> extends Descriptor<'aggregator', Aggregator, S> {
  /** The created aggregators' {@link Aggregator.streaming}: O(model) memory (true) or O(n × model). */
  streaming: boolean;
}

/** Descriptor of a {@link ServerOptimizer}. */
export interface OptimizerDescriptor<S extends ParamsSchema = ParamsSchema> extends Descriptor<'optimizer', ServerOptimizer, S> {
  /** True when the created optimizers keep state across rounds (they then have getState/setState). */
  stateful: boolean;
}

/** Descriptor of a {@link FitConfigContributor}. */
export interface FitConfigDescriptor<S extends ParamsSchema = ParamsSchema> extends Descriptor<'fitConfig', FitConfigContributor, S> {}

/** Any component descriptor. */
export type ComponentDescriptor = AggregatorDescriptor | OptimizerDescriptor | FitConfigDescriptor;

/**
 * The parameters of `d` taken from the flat namespace `params` (only `d`'s keys), validated and
 * with defaults applied.
 * @throws FedmqError FEDMQ_BAD_CONFIG naming the flag when a required parameter is missing or a
 *   value is refused by the schema (`details`: component, key, flag).
 */
export function parseComponentParams<S extends ParamsSchema>(d: Descriptor<ComponentKind, unknown, S>, params: Readonly<Record<string, unknown>>): z.output<S> {
  const own: Record<string, unknown> = {};
  for (const key of Object.keys(d.params.shape)) if (params[key] !== undefined) own[key] = params[key];
  const parsed = d.params.safeParse(own);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const key = String(issue.path[0] ?? '');
  const flag = d.flags.find((f) => f.key === key)?.flag ?? key;
  const details = { component: d.name, key, flag };
  if (own[key] === undefined) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${kindLabel(d.kind)} ${d.name} needs ${flag}`, details);
  throw new FedmqError(ErrorCodes.BAD_CONFIG, `${kindLabel(d.kind)} ${d.name}: ${flagName(flag)} ${issue.message}, got ${String(own[key])}`, details);
}

/**
 * Builds a component: {@link parseComponentParams}, then `d.create`.
 * @throws FedmqError FEDMQ_BAD_CONFIG on a missing or refused parameter, or when `create`
 *   throws a RangeError (its message kept, the RangeError as `cause`).
 */
export function createComponent<T>(d: Descriptor<ComponentKind, T>, params: Readonly<Record<string, unknown>>, ctx: ComponentContext): T {
  const p = parseComponentParams(d, params);
  try {
    return d.create(p, ctx);
  } catch (err) {
    if (err instanceof RangeError) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${kindLabel(d.kind)} ${d.name}: ${err.message}`, { component: d.name }, { cause: err });
    throw err;
  }
}

/**
 * Builders of the numeric parameter schemas, with the messages the BAD_CONFIG errors show
 * (`--flag <message>, got <value>`). NaN and ±Infinity are refused by all of them.
 */
export const numberParam = {
  /** A finite number > 0. */
  positive: () => z.number({ error: 'must be a finite number' }).positive('must be a positive finite number'),
  /** A finite number ≥ 0. */
  nonNegative: () => z.number({ error: 'must be a finite number' }).min(0, 'must be a finite number ≥ 0'),
  /** A number in [0, hi). */
  below: (hi: number) => z.number({ error: 'must be a finite number' }).min(0, `must be in [0, ${hi})`).lt(hi, `must be in [0, ${hi})`),
  /** An integer ≥ min. */
  integer: (min: number) => z.number({ error: 'must be a finite number' }).int(`must be an integer ≥ ${min}`).min(min, `must be an integer ≥ ${min}`),
};

/** `--trim-beta <b>` → `--trim-beta`. */
export function flagName(flag: string): string {
  return flag.split(/\s+/)[0];
}

function kindLabel(kind: ComponentKind): string {
  return kind === 'fitConfig' ? 'fit-config contributor' : kind === 'optimizer' ? 'server optimizer' : 'aggregator';
}
