/**
 * The model zoo: a name → definition registry. Built-in models register themselves when
 * `@fedmq/ml` is imported; other files (e.g. `ml/src/sensors/`) call {@link registerModel}.
 */
import type * as tf from '@tensorflow/tfjs';
import { FedmqMlError } from '../errors.ts';

/** Public description of a model: what it expects and what it does. */
export interface ModelInfo {
  /** Registry name, e.g. `'mnist-2nn'`. */
  name: string;
  /** One-line human description, citing the paper it comes from. */
  description: string;
  /** Shape of one input example, e.g. `[784]`. */
  featureShape: number[];
  /** Number of output classes (classification) or 0/ignored for reconstruction. */
  numClasses: number;
  /**
   * `'classification'`: the model outputs class probabilities (softmax), trained with
   * categorical cross-entropy on the labels. `'reconstruction'`: the model outputs a tensor
   * shaped like its input, trained with mean squared error against the input (autoencoders).
   */
  task: 'classification' | 'reconstruction';
}

/**
 * A registrable model. `build(seed)` must return a fresh, uncompiled `tf.LayersModel` whose
 * initial weights are a pure function of `seed` (use seeded initialisers), and should give its
 * layers explicit names (e.g. `'fc1'`): weight names are derived from layer names, and tfjs'
 * automatic names (`dense_Dense3`) differ between instances (they are then replaced by
 * positional names `layer{i}`).
 */
export interface ModelDefinition extends ModelInfo {
  build(seed: number): tf.LayersModel;
}

const registry = new Map<string, ModelDefinition>();
const families: { pattern: RegExp; create: (m: RegExpExecArray) => ModelDefinition; label: string }[] = [];

/**
 * Registers a parametric family of models, e.g. `mlp-<features>x<classes>`: a name matching
 * `pattern` that is not registered yet is built with `create(match)` and registered on first use.
 * @param label how the family is named in lists ({@link modelNames}), e.g. `mlp-<features>x<classes>`;
 *   default the pattern's source.
 */
export function registerModelFamily(pattern: RegExp, create: (m: RegExpExecArray) => ModelDefinition, label = pattern.source): void {
  families.push({ pattern, create, label });
}

/**
 * The names a user can give: every registered model, sorted, then every family's label (e.g.
 * `mlp-<features>x<classes>`); the members of a family built so far are not listed one by one.
 * What `fedmq coordinator --help` lists.
 */
export function modelNames(): string[] {
  const fixed = [...registry.keys()].filter((name) => !families.some((f) => f.pattern.test(name))).sort();
  return [...fixed, ...families.map((f) => f.label)];
}

/**
 * Adds (or replaces, by name) a model definition.
 * @throws FedmqMlError `ML_UNKNOWN_MODEL` if `def.name` is empty or `build` is not a function.
 */
export function registerModel(def: ModelDefinition): void {
  if (!def || typeof def.name !== 'string' || def.name === '' || typeof def.build !== 'function') {
    throw new FedmqMlError('ML_UNKNOWN_MODEL', 'registerModel needs a definition with a non-empty name and a build function');
  }
  registry.set(def.name, def);
}

/** Infos of all registered models, sorted by name (copies; no `build`). */
export function listModels(): ModelInfo[] {
  return [...registry.values()]
    .map(({ name, description, featureShape, numClasses, task }) => ({
      name,
      description,
      featureShape: [...featureShape],
      numClasses,
      task,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * The registered definition named `name`.
 * @throws FedmqMlError `ML_UNKNOWN_MODEL` if none is registered under that name.
 */
export function getModelDefinition(name: string): ModelDefinition {
  let def = registry.get(name);
  if (!def) {
    for (const family of families) {
      const m = family.pattern.exec(name);
      if (m) {
        def = family.create(m);
        registry.set(name, def);
        return def;
      }
    }
    const known = [...registry.keys()].sort().join(', ');
    throw new FedmqMlError('ML_UNKNOWN_MODEL', `unknown model '${name}' (registered: ${known || 'none'})`);
  }
  return def;
}
