import { describe, expect, it } from 'vitest';
import { ErrorCodes, type NamedTensor } from '@fedmq/protocol';
import type { Strategy } from '../strategy.ts';
import { AdamOptimizer } from './adam.ts';
import { MomentumOptimizer } from './momentum.ts';
import { ProximalContributor } from './proximal.ts';
import {
  AGGREGATORS, AGGREGATOR_NAMES, DESCRIPTORS, FIT_CONFIG_CONTRIBUTORS, OPTIMIZERS, OPTIMIZER_NAMES, PRESETS, STRATEGY_NAMES,
  createStrategy, flagAttributeName, strategyCliOptions,
} from './index.ts';
import { fitResultOf, seededRng, suiteGlobal, suiteUpdates } from './strategy-suite.ts';
import { createComponent } from './descriptor.ts';
import { ComposedStrategy } from './compose.ts';

const fitConfig = { epochs: 1, batchSize: 32, learningRate: 0.1 };
const base = { fraction: 1, minFitNodes: 5, fitConfig };
/** The required parameters (Krum's f, norm bounding's M). */
const required = { krumF: 1, maxNorm: 1 };
const badConfig = (message?: string) => expect.objectContaining({ code: ErrorCodes.BAD_CONFIG, ...(message ? { message: expect.stringContaining(message) } : {}) });

/** Selects, then runs `rounds` rounds of 7 suite updates through the composed strategy. */
function run(s: Strategy, rounds: number, global: NamedTensor[] = suiteGlobal()): NamedTensor[] {
  let g = global;
  for (let r = 1; r <= rounds; r++) {
    expect(s.selector.select(r, ['a', 'b', 'c', 'd', 'e', 'f', 'g'], seededRng(r))).toHaveLength(7);
    const agg = s.aggregator.begin(r, g);
    for (const u of suiteUpdates(g, 7, 10 + r)) agg.add(fitResultOf(u));
    const step = s.aggregator.finish(r, g, agg, []);
    expect(step).not.toBeNull();
    g = s.optimizer.step(g, step!);
  }
  return g;
}

describe('createStrategy', () => {
  it('builds every preset under its own name, from its parts', () => {
    expect(STRATEGY_NAMES).toEqual(['fedavg', 'fedavgm', 'fedprox', 'fedadam', 'fedyogi', 'fedadagrad', 'median', 'trimmed-mean', 'krum', 'multi-krum', 'norm-bounding']);
    const parts: Record<string, [string, string, string[]]> = {
      fedavg: ['mean', 'sgd', []], fedavgm: ['mean', 'momentum', []], fedprox: ['mean', 'sgd', ['proximal']], fedadam: ['mean', 'adam', []],
      fedyogi: ['mean', 'yogi', []], fedadagrad: ['mean', 'adagrad', []], median: ['median', 'sgd', []], 'trimmed-mean': ['trimmed-mean', 'sgd', []],
      krum: ['krum', 'sgd', []], 'multi-krum': ['multi-krum', 'sgd', []], 'norm-bounding': ['norm-bounding', 'sgd', []],
    };
    for (const name of STRATEGY_NAMES) {
      const s = createStrategy({ ...base, strategy: name, params: required });
      expect(s).toBeInstanceOf(ComposedStrategy);
      expect(s.name).toBe(name);
      expect([s.aggregator.name, s.optimizer.name, (s as ComposedStrategy).contributors.map((c) => c.name)]).toEqual(parts[name]);
    }
    expect(createStrategy(base).name).toBe('fedavg'); // the default preset
  });

  it('composes every preset into a working strategy (two rounds, fit config, state through JSON)', () => {
    for (const name of STRATEGY_NAMES) {
      const s = createStrategy({ ...base, strategy: name, params: required });
      const x = run(s, 2);
      expect(x.map((t) => t.name)).toEqual(suiteGlobal().map((t) => t.name));
      for (const t of x) expect(Array.from(t.data).every(Number.isFinite)).toBe(true);
      expect(s.fitConfig(1)).toEqual(name === 'fedprox' ? { ...fitConfig, proximalMu: 0.01 } : fitConfig);
      const state = s.getState();
      if (state === null) {
        expect(s.optimizer.getState).toBeUndefined();
        expect(() => s.setState({ strategy: 'momentum', momentum: null })).toThrow(TypeError);
      } else {
        const fresh = createStrategy({ ...base, strategy: name, params: required });
        fresh.setState(JSON.parse(JSON.stringify(state)));
        expect(JSON.stringify(fresh.getState())).toBe(JSON.stringify(state));
      }
    }
  });

  it('lets any aggregator work with any server optimizer (--aggregator × --server-optimizer)', () => {
    for (const aggregator of AGGREGATOR_NAMES) {
      for (const serverOptimizer of OPTIMIZER_NAMES) {
        const s = createStrategy({ ...base, aggregator, serverOptimizer, params: required });
        expect(s.name).toBe(aggregator === 'mean' && serverOptimizer === 'sgd' ? 'fedavg' : `${aggregator}+${serverOptimizer}`);
        expect([s.aggregator.name, s.optimizer.name]).toEqual([aggregator, serverOptimizer]);
        const a = run(s, 3);
        for (const t of a) expect(Array.from(t.data).every(Number.isFinite), `${s.name}`).toBe(true);
        // the state (when any) carries a resumed run to the same model bit for bit
        const b = createStrategy({ ...base, aggregator, serverOptimizer, params: required });
        const x1 = run(b, 1);
        const c = createStrategy({ ...base, aggregator, serverOptimizer, params: required });
        const st = b.getState();
        if (st !== null) c.setState(JSON.parse(JSON.stringify(st)));
        let g = x1;
        for (let r = 2; r <= 3; r++) {
          const agg = c.aggregator.begin(r, g);
          for (const u of suiteUpdates(g, 7, 10 + r)) agg.add(fitResultOf(u));
          g = c.optimizer.step(g, c.aggregator.finish(r, g, agg, [])!);
        }
        expect(g.map((t) => Array.from(t.data)), `${s.name} resumed`).toEqual(a.map((t) => Array.from(t.data)));
      }
    }
  });

  it('names an overridden strategy aggregator+optimizer(+contributors), and keeps the preset name when nothing changed', () => {
    const s = createStrategy({ ...base, strategy: 'fedavg', aggregator: 'median', serverOptimizer: 'adam' });
    expect(s.name).toBe('median+adam');
    expect(s.aggregator.name).toBe('median');
    expect(s.optimizer).toBeInstanceOf(AdamOptimizer);
    expect(createStrategy({ ...base, strategy: 'fedavg', aggregator: 'mean', serverOptimizer: 'sgd' }).name).toBe('fedavg');
    expect(createStrategy({ ...base, strategy: 'fedadam', aggregator: 'trimmed-mean' }).name).toBe('trimmed-mean+adam');
    expect(createStrategy({ ...base, aggregator: 'median' }).name).toBe('median+sgd'); // from the default preset fedavg
    const prox = createStrategy({ ...base, strategy: 'fedprox', serverOptimizer: 'adam', params: { proximalMu: 0.2 } });
    expect(prox.name).toBe('mean+adam+proximal');
    expect(prox.fitConfig(1)).toEqual({ ...fitConfig, proximalMu: 0.2 });
  });

  it('passes each component its own parameters from the one flat namespace', () => {
    const prox = createStrategy({ ...base, strategy: 'fedprox', params: { proximalMu: 0.3, serverMomentum: 0.1 } });
    expect(prox.fitConfig(1)).toMatchObject({ proximalMu: 0.3 });
    expect((prox as ComposedStrategy).contributors[0]).toBeInstanceOf(ProximalContributor);
    const adam = createStrategy({ ...base, strategy: 'fedadam', params: { serverLr: 0.05, tau: 1e-3, trimBeta: 0.2 } });
    expect(adam.optimizer).toMatchObject({ serverLr: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    // --server-lr is one flag for every optimizer, each with its own default when absent
    expect(createStrategy({ ...base, strategy: 'fedavgm', params: { serverLr: 0.7 } }).optimizer).toMatchObject({ serverLr: 0.7, serverMomentum: 0.9 });
    expect(createStrategy({ ...base, strategy: 'fedavgm' }).optimizer).toBeInstanceOf(MomentumOptimizer);
    expect(createStrategy({ ...base, strategy: 'fedavgm' }).optimizer).toMatchObject({ serverLr: 1 });
    expect(createStrategy({ ...base, strategy: 'fedyogi' }).optimizer).toMatchObject({ serverLr: 0.03 });
    expect(createStrategy({ ...base, strategy: 'fedadagrad' }).optimizer).toMatchObject({ serverLr: 0.03, beta1: 0 });
    expect(createStrategy({ ...base, strategy: 'fedavg', params: { serverLr: 0.5 } }).optimizer).toMatchObject({ serverLr: 0.5 });
    // undefined values are absent values
    expect(createStrategy({ ...base, strategy: 'fedadam', params: { serverLr: undefined } }).optimizer).toMatchObject({ serverLr: 0.01 });
    expect(createStrategy({ ...base, strategy: 'trimmed-mean', params: { trimBeta: 0.3 } }).aggregator).toMatchObject({ trimBeta: 0.3 });
  });

  it('refuses unknown names, listing the valid ones, with FEDMQ_BAD_CONFIG', () => {
    expect(() => createStrategy({ ...base, strategy: 'fedsgd' })).toThrow(badConfig(STRATEGY_NAMES.join(', ')));
    expect(() => createStrategy({ ...base, aggregator: 'mode' })).toThrow(badConfig(AGGREGATOR_NAMES.join(', ')));
    expect(() => createStrategy({ ...base, serverOptimizer: 'lion' })).toThrow(badConfig(OPTIMIZER_NAMES.join(', ')));
  });

  it('refuses missing required parameters and refused values naming the flag, with FEDMQ_BAD_CONFIG', () => {
    expect(() => createStrategy({ ...base, strategy: 'krum' })).toThrow(badConfig('--krum-f'));
    expect(() => createStrategy({ ...base, strategy: 'multi-krum' })).toThrow(badConfig('--krum-f'));
    expect(() => createStrategy({ ...base, strategy: 'norm-bounding' })).toThrow(badConfig('--max-norm'));
    expect(() => createStrategy({ ...base, strategy: 'krum', params: { krumF: 2 } })).toThrow(badConfig('2f + 3')); // 5 < 2·2 + 3
    expect(() => createStrategy({ ...base, strategy: 'trimmed-mean', params: { trimBeta: 0.5 } })).toThrow(badConfig('--trim-beta'));
    expect(() => createStrategy({ ...base, strategy: 'fedadam', params: { serverLr: -1 } })).toThrow(badConfig('--server-lr'));
    expect(() => createStrategy({ ...base, strategy: 'fedadam', params: { beta2: '0.9' } })).toThrow(badConfig('--beta2'));
    expect(() => createStrategy({ ...base, strategy: 'fedavgm', params: { serverMomentum: 1 } })).toThrow(badConfig('--server-momentum'));
    expect(() => createStrategy({ ...base, strategy: 'fedprox', params: { proximalMu: -0.1 } })).toThrow(badConfig('--proximal-mu'));
    expect(() => createStrategy({ ...base, strategy: 'multi-krum', params: { krumF: 1, multiKrumM: 0 } })).toThrow(badConfig('--multi-krum-m'));
  });

  it('refuses a bad fraction or minFitNodes, and parameter keys no component knows (the retired eta, byzantine)', () => {
    for (const fraction of [0, -0.5, 1.5, NaN]) expect(() => createStrategy({ ...base, fraction })).toThrow(badConfig('fraction'));
    for (const minFitNodes of [0, -1, 1.5, NaN]) expect(() => createStrategy({ ...base, minFitNodes })).toThrow(badConfig('minFitNodes'));
    expect(() => createStrategy({ ...base, strategy: 'fedadam', params: { eta: 0.1 } })).toThrow(badConfig('"eta"'));
    expect(() => createStrategy({ ...base, strategy: 'krum', params: { byzantine: 1 } })).toThrow(badConfig('"byzantine"'));
    expect(() => createStrategy({ ...base, params: { eta: undefined } })).not.toThrow();
  });
});

describe('descriptors', () => {
  it('are listed once each, with a kind, a title, a paper, and names the registry exports', () => {
    expect(DESCRIPTORS).toEqual([...AGGREGATORS, ...OPTIMIZERS, ...FIT_CONFIG_CONTRIBUTORS]);
    expect(AGGREGATOR_NAMES).toEqual(['mean', 'norm-bounding', 'median', 'trimmed-mean', 'krum', 'multi-krum']);
    expect(OPTIMIZER_NAMES).toEqual(['sgd', 'momentum', 'adam', 'yogi', 'adagrad']);
    expect(FIT_CONFIG_CONTRIBUTORS.map((d) => d.name)).toEqual(['proximal']);
    for (const d of DESCRIPTORS) {
      expect(d.name).toMatch(/^[a-z][a-z0-9-]*$/);
      expect(d.title.length).toBeGreaterThan(3);
      expect(d.paper).toMatch(/\d{4}/);
      expect(Object.keys(d.params.shape).sort()).toEqual(d.flags.map((f) => f.key).sort());
    }
    for (const p of PRESETS) expect(STRATEGY_NAMES).toContain(p.name);
  });

  it('say truthfully whether the component streams or keeps state', () => {
    for (const d of AGGREGATORS) {
      const a = createComponent(d, required, { minFitNodes: 5 });
      expect(a.name).toBe(d.name);
      expect(a.streaming).toBe(d.streaming);
    }
    for (const d of OPTIMIZERS) {
      const o = createComponent(d, {}, {});
      expect(o.name).toBe(d.name);
      expect(typeof o.getState === 'function' && typeof o.setState === 'function').toBe(d.stateful);
    }
    for (const d of FIT_CONFIG_CONTRIBUTORS) expect(createComponent(d, {}, {}).name).toBe(d.name);
  });
});

describe('strategyCliOptions', () => {
  const options = strategyCliOptions();
  const byFlag = (name: string) => {
    const o = options.find((x) => x.flag.split(' ')[0] === name);
    if (!o) throw new Error(`no ${name}`);
    return o;
  };

  it('lists every strategy flag once, with commander-compatible keys, and no --eta', () => {
    expect(options.map((o) => [o.flag.split(' ')[0], o.key]).sort()).toEqual([
      ['--beta1', 'beta1'], ['--beta2', 'beta2'], ['--krum-f', 'krumF'], ['--max-norm', 'maxNorm'], ['--multi-krum-m', 'multiKrumM'],
      ['--proximal-mu', 'proximalMu'], ['--server-lr', 'serverLr'], ['--server-momentum', 'serverMomentum'], ['--tau', 'tau'], ['--trim-beta', 'trimBeta'],
    ]);
    for (const o of options) {
      expect(o.flag).toMatch(/^--[a-z0-9-]+ <[a-z]+>$/);
      expect(flagAttributeName(o.flag)).toBe(o.key);
    }
    expect(strategyCliOptions()).not.toBe(options);
  });

  it('says each component\'s default in the help', () => {
    expect(byFlag('--server-lr').help).toContain('default: sgd 1, momentum 1, adam 0.01, yogi 0.03, adagrad 0.03');
    expect(byFlag('--beta1').help).toContain('adam 0.9, yogi 0.9, adagrad 0');
    expect(byFlag('--tau').help).toContain('adam 1e-9, yogi 0.001, adagrad 1e-9');
    expect(byFlag('--beta2').help).toContain('default 0.99');
    expect(byFlag('--server-momentum').help).toContain('default 0.9');
    expect(byFlag('--proximal-mu').help).toContain('default 0.01');
    expect(byFlag('--trim-beta').help).toContain('default 0.1');
    expect(byFlag('--krum-f').help).toContain('required by krum, multi-krum');
    expect(byFlag('--max-norm').help).toContain('required');
    expect(byFlag('--multi-krum-m').help).toContain('n − f');
  });

  it('parses numbers and refuses what the components refuse, with messages naming the flag', () => {
    expect(byFlag('--server-lr').parse('0.05')).toBe(0.05);
    expect(byFlag('--tau').parse('1e-3')).toBe(1e-3);
    expect(byFlag('--krum-f').parse('2')).toBe(2);
    expect(byFlag('--beta1').parse(' 0 ')).toBe(0);
    for (const [flag, value] of [['--server-lr', 'abc'], ['--server-lr', ''], ['--server-lr', '0'], ['--server-lr', 'Infinity'], ['--trim-beta', '0.5'], ['--krum-f', '1.5'],
      ['--krum-f', '-1'], ['--multi-krum-m', '0'], ['--beta1', '1'], ['--server-momentum', '-0.1'], ['--proximal-mu', '-1'], ['--max-norm', '0'], ['--tau', 'NaN']] as const) {
      expect(() => byFlag(flag).parse(value), `${flag} ${value}`).toThrow(flag);
    }
  });
});
