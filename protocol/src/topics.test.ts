import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { TOPIC_KINDS, TOPIC_TABLE, parseTopic, topicFilter, topics } from './topics.ts';

/** Sample parameters for every `{param}` of the table. */
const SAMPLE: Record<string, string | number> = { nodeId: 'pi.7_a', version: 3, index: 12, round: 9 };
const argsOf = (pattern: string) => [...pattern.matchAll(/\{(\w+)\}/g)].map((m) => SAMPLE[m[1]]);

describe('topic table', () => {
  it('parses what it builds, for every kind', () => {
    for (const kind of TOPIC_KINDS) {
      const args = argsOf(TOPIC_TABLE[kind].pattern);
      const build = topics[kind] as (job: string, ...a: unknown[]) => string;
      const topic = build('j1', ...args);
      const params = Object.fromEntries([...TOPIC_TABLE[kind].pattern.matchAll(/\{(\w+)\}/g)].map((m) => [m[1], SAMPLE[m[1]]]));
      expect(parseTopic(topic)).toEqual({ kind, job: 'j1', ...params });
    }
  });

  it('builds the documented strings', () => {
    expect(topics.nodeUpdate('mnist', 'n1')).toBe('fedmq/v2/mnist/nodes/n1/update');
    expect(topics.nodeTask('mnist', 'n1')).toBe('fedmq/v2/mnist/nodes/n1/task');
    expect(topics.model('mnist', 4)).toBe('fedmq/v2/mnist/models/4');
    expect(topics.modelChunk('mnist', 4, 0)).toBe('fedmq/v2/mnist/models/4/chunks/0');
    expect(topics.legacyCoordinatorStatus('mnist')).toBe('fedmq/v1/mnist/coordinator/status');
    expect(topics.legacyNodeStatus('mnist', 'n1')).toBe('fedmq/v1/mnist/nodes/n1/status');
  });

  it('gives every pattern a distinct topic (no two kinds parse the same string)', () => {
    const seen = new Set<string>();
    for (const kind of TOPIC_KINDS) {
      const s = `${TOPIC_TABLE[kind].root}/${TOPIC_TABLE[kind].pattern}`;
      expect(seen.has(s)).toBe(false);
      seen.add(s);
    }
  });

  it.each(['a/b', 'a+', '#', '', 'x'.repeat(65), 'é'])('refuses the id %j', (bad) => {
    expect(() => topics.nodeStatus('job', bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
    expect(() => topics.model(bad, 1)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it.each([0, -1, 1.5, Number.NaN, 1e10])('refuses the version %s', (bad) => {
    expect(() => topics.model('j', bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it.each([
    'fedmq/v3/j/models/1',
    'other/v2/j/models/1',
    'fedmq/v1/j/model',
    'fedmq/v1/j/nodes/n/update',
    'fedmq/v2/j/model',
    'fedmq/v2/j/models/0',
    'fedmq/v2/j/models/01',
    'fedmq/v2/j/models/1/chunks/x',
    'fedmq/v2/j/nodes/n/other',
    'fedmq/v2/j/rounds/0/metrics',
    'fedmq/v2/j/rounds/x/metrics',
    'fedmq/v2/j/nodes//status',
    'fedmq/v2/j/model/meta/extra',
    'fedmq/v2/j/task',
  ])('refuses the topic %s', (t) => {
    expect(() => parseTopic(t)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it('builds subscription filters per kind, with + for any job, node or number', () => {
    expect(topicFilter('modelMeta', 'j1')).toBe(topics.modelMeta('j1'));
    expect(topicFilter('model', 'j1')).toBe('fedmq/v2/j1/models/+');
    expect(topicFilter('modelChunk', 'j1', { version: 3 })).toBe('fedmq/v2/j1/models/3/chunks/+');
    expect(topicFilter('nodeStatus', 'j1')).toBe('fedmq/v2/j1/nodes/+/status');
    expect(topicFilter('nodeUpdate', 'j1', { nodeId: 'pi-7' })).toBe(topics.nodeUpdate('j1', 'pi-7'));
    expect(topicFilter('roundMetrics', '+')).toBe('fedmq/v2/+/rounds/+/metrics');
    expect(topicFilter('legacyNodeStatus', 'j1')).toBe('fedmq/v1/j1/nodes/+/status');
    expect(topicFilter('all', 'j1')).toBe('fedmq/v2/j1/#');
    expect(() => topicFilter('modelMeta', '#')).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_TOPIC' }));
    expect(() => topicFilter('nodeStatus', 'j1', { nodeId: 'a/b' })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_TOPIC' }));
  });
});
