/** The ml package's data and model contracts, as used by the sensors code. */
export type { Dataset } from '../data.ts';
export type { ModelDefinition } from '../models/registry.ts';
