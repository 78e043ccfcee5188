import { describe, expect, it } from 'vitest';
import { checkDataFits } from './check.ts';
import { getModelDefinition, modelNames } from './models/registry.ts';
import './models/index.ts';

const shape = (features: number[], numClasses: number, numExamples = 10) => ({ featureShape: features, numClasses, numExamples });

describe('checkDataFits', () => {
  const mlp = getModelDefinition('mlp-4x3');

  it('accepts the model\'s features with as many classes or fewer', () => {
    expect(() => checkDataFits(shape([4], 3), mlp)).not.toThrow();
    expect(() => checkDataFits(shape([4], 2), mlp)).not.toThrow();
    expect(() => checkDataFits(shape([28, 28], 10), getModelDefinition('mnist-2nn'))).not.toThrow();
  });

  it('refuses another feature count or more classes, naming the source and both shapes', () => {
    expect(() => checkDataFits(shape([5], 3, 2), mlp, 'test.csv')).toThrow(expect.objectContaining({
      code: 'ML_BAD_DATA', message: 'test.csv: 2 examples of 5 features, 3 classes (labels 0..2); model mlp-4x3 takes 4 features and 3 classes',
    }));
    expect(() => checkDataFits(shape([4], 4, 7), mlp)).toThrow(expect.objectContaining({
      code: 'ML_BAD_DATA', message: 'data: 7 examples of 4 features, 4 classes (labels 0..3); model mlp-4x3 takes 4 features and 3 classes',
    }));
  });

  it('does not check the classes of a reconstruction model', () => {
    const ae = getModelDefinition('telosb-ae');
    expect(() => checkDataFits(shape(ae.featureShape, 1), ae)).not.toThrow();
    expect(() => checkDataFits(shape([3], 1, 4), ae, 'motes.csv')).toThrow(expect.objectContaining({ message: expect.stringContaining('(a reconstruction model)') }));
  });
});

describe('modelNames', () => {
  it('lists the registered models and the mlp family by its pattern, not the members built so far', () => {
    getModelDefinition('mlp-7x2');
    const names = modelNames();
    expect(names).toContain('mnist-2nn');
    expect(names).toContain('telosb-ae');
    expect(names).toContain('mlp-<features>x<classes>');
    expect(names.filter((n) => /^mlp-\d/.test(n))).toEqual([]);
  });
});
