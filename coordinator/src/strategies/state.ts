import type { NamedTensor } from '@fedmq/protocol';
import type { JsonValue, StrategyState, StepTensor } from '../strategy.ts';

/** One per-tensor array of a {@link StrategyState}: the tensor's name and its values as plain numbers. */
export type StateTensor = { name: string; data: number[] };

/** Per-tensor arrays as {@link StateTensor}s (a copy, plain numbers; float64 values round-trip exactly through JSON). */
export function tensorsToState(names: readonly string[], arrays: readonly Float64Array[]): StateTensor[] {
  return arrays.map((a, t) => ({ name: names[t], data: Array.from(a) }));
}

/**
 * Parses a `StateTensor[] | null` field of a {@link StrategyState}.
 * @param what the field, for error messages.
 * @returns `null` for `null`, else the names and float64 copies of the values.
 * @throws TypeError when the field is missing or malformed (not an array of `{name, data}` with
 *   finite numbers).
 */
export function tensorsFromState(value: JsonValue | undefined, what: string): { names: string[]; arrays: Float64Array[] } | null {
  if (value === null) return null;
  if (!Array.isArray(value)) throw new TypeError(`${what} must be an array of {name, data} or null`);
  const names: string[] = [];
  const arrays: Float64Array[] = [];
  for (const t of value) {
    if (t === null || typeof t !== 'object' || Array.isArray(t) || typeof t.name !== 'string' || !Array.isArray(t.data)) {
      throw new TypeError(`${what} must be an array of {name, data} or null`);
    }
    const data = t.data;
    const a = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const x = data[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new TypeError(`${what}: tensor ${t.name} has a non-finite value at ${i}`);
      a[i] = x;
    }
    names.push(t.name);
    arrays.push(a);
  }
  return { names, arrays };
}

/**
 * Checks that per-tensor state arrays fit the model: same tensor count, names and sizes, in order.
 * @throws RangeError otherwise (for example a checkpoint of another model).
 */
export function checkStateMatchesModel(names: readonly string[], arrays: readonly Float64Array[], global: readonly NamedTensor[]): void {
  const ok = arrays.length === global.length && global.every((g, t) => g.name === names[t] && g.data.length === arrays[t].length);
  if (!ok) {
    const have = arrays.map((a, t) => `${names[t]}[${a.length}]`).join(', ');
    const want = global.map((g) => `${g.name}[${g.data.length}]`).join(', ');
    throw new RangeError(`optimizer state has tensors (${have}) but the model has (${want})`);
  }
}

/**
 * Checks the `strategy` field of a state (by convention the optimizer's name).
 * @throws TypeError when `state` is not an object or its `strategy` is not `name`.
 */
export function checkStateName(state: StrategyState, name: string): void {
  if (state === null || typeof state !== 'object' || Array.isArray(state)) throw new TypeError(`${name} state must be an object`);
  if (state.strategy !== name) throw new TypeError(`state is of optimizer ${JSON.stringify(state.strategy)}, not ${name}`);
}

/**
 * Checks that a step fits the model: one tensor per global tensor, same sizes, in order.
 * @throws RangeError otherwise.
 */
export function checkStep(global: readonly NamedTensor[], delta: readonly StepTensor[]): void {
  if (delta.length !== global.length) throw new RangeError(`step has ${delta.length} tensors, the model ${global.length}`);
  for (let t = 0; t < global.length; t++) {
    if (delta[t].data.length !== global[t].data.length) {
      throw new RangeError(`step tensor ${delta[t].name} has ${delta[t].data.length} values, model tensor ${global[t].name} ${global[t].data.length}`);
    }
  }
}
