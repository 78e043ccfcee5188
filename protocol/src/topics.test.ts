import { describe, expect, it } from 'vitest';
import { ErrorCodes } from './errors.ts';
import { parseTopic, topicFilter, topics } from './topics.ts';

describe('topics', () => {
  it('parses what it builds', () => {
    expect(parseTopic(topics.coordinatorStatus('j1'))).toEqual({ kind: 'coordinatorStatus', job: 'j1' });
    expect(parseTopic(topics.model('j1'))).toEqual({ kind: 'model', job: 'j1' });
    expect(parseTopic(topics.modelMeta('j1'))).toEqual({ kind: 'modelMeta', job: 'j1' });
    expect(parseTopic(topics.modelChunk('j1', 0))).toEqual({ kind: 'modelChunk', job: 'j1', index: 0 });
    expect(parseTopic(topics.modelChunk('j1', 12))).toEqual({ kind: 'modelChunk', job: 'j1', index: 12 });
    expect(parseTopic(topics.task('j1'))).toEqual({ kind: 'task', job: 'j1' });
    expect(parseTopic(topics.nodeStatus('j1', 'pi-7'))).toEqual({ kind: 'nodeStatus', job: 'j1', nodeId: 'pi-7' });
    expect(parseTopic(topics.nodeUpdate('j1', 'pi.7_a'))).toEqual({ kind: 'nodeUpdate', job: 'j1', nodeId: 'pi.7_a' });
    expect(parseTopic(topics.roundMetrics('j1', 12))).toEqual({ kind: 'roundMetrics', job: 'j1', round: 12 });
    expect(parseTopic(topics.latestMetrics('j1'))).toEqual({ kind: 'latestMetrics', job: 'j1' });
  });

  it('builds the documented strings', () => {
    expect(topics.nodeUpdate('mnist', 'n1')).toBe('fedmq/v1/mnist/nodes/n1/update');
    expect(topics.allNodeStatus('mnist')).toBe('fedmq/v1/mnist/nodes/+/status');
    expect(topics.all()).toBe('fedmq/v1/#');
  });

  it.each(['a/b', 'a+', '#', '', 'x'.repeat(65), 'é'])('refuses the id %j', (bad) => {
    expect(() => topics.nodeStatus('job', bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
    expect(() => topics.model(bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it.each([
    'fedmq/v2/j/model',
    'other/v1/j/model',
    'fedmq/v1/j/nodes/n/other',
    'fedmq/v1/j/rounds/0/metrics',
    'fedmq/v1/j/rounds/x/metrics',
    'fedmq/v1/j/nodes//status',
    'fedmq/v1/j/model/extra',
  ])('refuses the topic %s', (t) => {
    expect(() => parseTopic(t)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_TOPIC }));
  });

  it('builds subscription filters per kind, with + for any job or node', () => {
    expect(topicFilter('model', 'j1')).toBe(topics.model('j1'));
    expect(topicFilter('modelChunk', 'j1')).toBe(topics.allModelChunks('j1'));
    expect(topicFilter('nodeStatus', 'j1')).toBe(topics.allNodeStatus('j1'));
    expect(topicFilter('nodeUpdate', 'j1', 'pi-7')).toBe(topics.nodeUpdate('j1', 'pi-7'));
    expect(topicFilter('roundMetrics', '+')).toBe('fedmq/v1/+/rounds/+/metrics');
    expect(topicFilter('all', 'j1')).toBe(topics.all('j1'));
    expect(() => topicFilter('task', '#')).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_TOPIC' }));
    expect(() => topicFilter('nodeStatus', 'j1', 'a/b')).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_TOPIC' }));
  });
});
