import { describe, expect, it } from 'vitest';
import { isFedmqError } from '@fedmq/protocol';
import { DEFAULT_CHAOS, chaosFor, parseChaos, withChaos } from './chaos.ts';

describe('parseChaos', () => {
  it('reads default and key=value overrides', () => {
    expect(parseChaos('default')).toEqual(DEFAULT_CHAOS);
    expect(parseChaos('default,dropout=0')).toEqual({ ...DEFAULT_CHAOS, dropout: 0 });
    expect(parseChaos('upload-kill=0.5, broker-restart=3, straggler-ms=100')).toEqual({ uploadKill: 0.5, brokerRestartRound: 3, stragglerMs: 100 });
  });
  it('refuses unknown keys and out-of-range values with FEDMQ_BAD_CONFIG', () => {
    for (const bad of ['dropouts=0.1', 'dropout=1', 'dropout=-0.1', 'broker-restart=0', 'broker-restart=1.5', 'straggler-ms=-1', 'dropout', 'dropout=x']) {
      expect(() => parseChaos(bad), bad).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    }
  });
});

describe('chaos decisions', () => {
  it('are a function of (seed, node, round) with the configured rates', () => {
    expect(chaosFor(DEFAULT_CHAOS, 1, 'n1', 3)).toEqual(chaosFor(DEFAULT_CHAOS, 1, 'n1', 3));
    let dropouts = 0;
    let kills = 0;
    let stragglers = 0;
    for (let r = 1; r <= 2000; r++) {
      const d = chaosFor({ dropout: 0.1, uploadKill: 0.3, stragglers: 0.5, stragglerMs: 100 }, 7, `node-${r % 13}`, r);
      dropouts += Number(d.dropout);
      kills += Number(d.uploadKill);
      stragglers += Number(d.delayMs > 0);
      expect(d.delayMs).toBeLessThanOrEqual(100);
    }
    expect(dropouts / 2000).toBeCloseTo(0.1, 1);
    expect(kills / 2000).toBeCloseTo(0.3, 1);
    expect(stragglers / 2000).toBeCloseTo(0.5, 1);
  });

  it('a dropout cuts the link and fails the round; an upload kill cuts it after the delta is handed over', async () => {
    let cuts = 0;
    const node = { dropConnection: () => void cuts++ };
    const delta = [{ name: 'w', shape: [1], data: new Float32Array([1]) }];
    const dropRound = Array.from({ length: 200 }, (_, r) => r + 1).find((r) => chaosFor({ dropout: 0.5 }, 1, 'a', r).dropout)!;
    const err = await withChaos({ dropout: 0.5 }, 1, 'a', node)(delta, dropRound, { trainMs: 0 }).catch((e: unknown) => e);
    expect(isFedmqError(err, 'FEDMQ_TRAINING_FAILED')).toBe(true);
    expect(cuts).toBe(1);
    const killRound = Array.from({ length: 200 }, (_, r) => r + 1).find((r) => chaosFor({ uploadKill: 0.5 }, 1, 'a', r).uploadKill)!;
    const out = await withChaos({ uploadKill: 0.5 }, 1, 'a', node, (d) => d.map((t) => ({ ...t, data: t.data.map((x) => -x) })))(delta, killRound, { trainMs: 0 });
    expect(out[0].data[0]).toBe(-1);
    expect(cuts).toBe(1); // not yet: the cut comes once the node has published
    await new Promise<void>((resolve) => setImmediate(() => setTimeout(resolve, 0)));
    expect(cuts).toBe(2);
  });
});
