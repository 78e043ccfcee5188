import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DOCS_END, DOCS_START, STRATEGIES_DOC, replaceStrategiesRegion } from './docs.ts';
import { strategiesMarkdown } from './index.ts';

describe('docs/strategies.md', () => {
  it('holds the tables generated from the descriptors', () => {
    const doc = readFileSync(STRATEGIES_DOC, 'utf8');
    const expected = replaceStrategiesRegion(doc, strategiesMarkdown());
    expect(doc === expected, 'docs/strategies.md is out of date with the strategy descriptors: run `npx tsx coordinator/src/strategies/docs.ts` to regenerate').toBe(true);
  });

  it('replaces only the region between the markers', () => {
    const doc = `# t\n\nbefore\n${DOCS_START}\nold\n${DOCS_END}\nafter\n`;
    expect(replaceStrategiesRegion(doc, 'new')).toBe(`# t\n\nbefore\n${DOCS_START}\nnew\n${DOCS_END}\nafter\n`);
    expect(replaceStrategiesRegion(replaceStrategiesRegion(doc, 'new'), 'new')).toBe(replaceStrategiesRegion(doc, 'new'));
    expect(() => replaceStrategiesRegion('no markers', 'x')).toThrow(Error);
    expect(() => replaceStrategiesRegion(`${DOCS_END}${DOCS_START}`, 'x')).toThrow(Error);
    expect(() => replaceStrategiesRegion(`${DOCS_START}${DOCS_END}${DOCS_START}${DOCS_END}`, 'x')).toThrow(Error);
  });

  it('documents every preset, aggregator, optimizer and flag, and no --eta', () => {
    const md = strategiesMarkdown();
    for (const name of ['fedavg', 'fedavgm', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad', 'median', 'trimmed-mean', 'krum', 'multi-krum', 'norm-bounding', 'mean', 'sgd', 'momentum', 'adam', 'yogi', 'adagrad', 'proximal']) {
      expect(md).toContain(`\`${name}\``);
    }
    for (const flag of ['--server-lr', '--server-momentum', '--beta1', '--beta2', '--tau', '--proximal-mu', '--trim-beta', '--krum-f', '--multi-krum-m', '--max-norm']) expect(md).toContain(`\`${flag}\``);
    expect(md).not.toContain('--eta');
    expect(md).toContain('`--krum-f` (required)');
    expect(md).toContain('`--server-lr` (0.01)');
  });
});
