import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@fedmq/protocol';
import { RdpAccountant, effectiveNoiseMultiplier, epsilonFor, gaussian, noiseMultiplierFor } from '@fedmq/privacy';
import { seededTestRandom } from './seeded.testutil.ts';
import { DEFAULT_DP_DELTA, PrivacyLedger } from './ledger.ts';
import type { DpOptions } from './options.ts';

const coded = (code: string) => expect.objectContaining({ code });
/** |a − b| ≤ rel·|b| (the accountant sums k per-round RDPs where compose(q, σ, k) multiplies one by k). */
const close = (a: number, b: number, rel = 1e-12) => expect(Math.abs(a - b)).toBeLessThanOrEqual(rel * Math.abs(b));

const plan = (fraction: number, rounds = 10, expectedCohort = 10) => ({ fraction, rounds, expectedCohort });

/** One released round: beginRound(N), then release with `unclipped` of `reported` updates within C. */
function releaseRound(l: PrivacyLedger, population: number, unclipped = 0, reported = 0): void {
  l.beginRound(population);
  l.release(unclipped, reported);
}

describe('PrivacyLedger: ε of the released rounds', () => {
  it('central: ε after k releases is the accountant of k Poisson-subsampled Gaussians (q, σ); 0 before any', () => {
    const q = 0.1;
    const sigma = 1.1;
    const l = new PrivacyLedger({ mode: 'central', noiseMultiplier: sigma, clipNorm: 1 }, plan(q), seededTestRandom('ledger-central'));
    expect(l.delta).toBe(DEFAULT_DP_DELTA);
    expect(l.steps).toBe(0);
    expect(l.epsilon()).toBe(0);
    expect(l.accountedNoiseMultiplier).toBe(sigma);
    for (let k = 1; k <= 6; k++) {
      close(l.epsilonAfterNextRound(), new RdpAccountant().compose(q, sigma, k).epsilon(1e-5));
      releaseRound(l, 100);
      expect(l.steps).toBe(k);
      close(l.epsilon(), new RdpAccountant().compose(q, sigma, k).epsilon(1e-5));
      const rec = l.record();
      expect(rec).toMatchObject({ mode: 'central', sampling: 'poisson', q, noiseMultiplier: sigma, accountedNoiseMultiplier: sigma, steps: k, delta: 1e-5, maxEpsilon: null, clipNorm: 1, nextClipNorm: 1, unclippedFraction: null });
      close(rec.epsilon!, l.epsilon());
    }
    // the ε grows with the rounds
    expect(new RdpAccountant().compose(q, sigma, 6).epsilon(1e-5)).toBeGreaterThan(new RdpAccountant().compose(q, sigma, 5).epsilon(1e-5));
  });

  it('local: each node\'s σ is composed as σ/2 with q = 1 (replacement of its data, no amplification)', () => {
    const sigma = 6;
    const delta = 1e-6;
    const l = new PrivacyLedger({ mode: 'local', noiseMultiplier: sigma, clipNorm: 2, delta }, plan(0.25), seededTestRandom('ledger-local'));
    expect(l.epsilon()).toBe(0);
    expect(l.accountedNoiseMultiplier).toBe(3);
    for (let k = 1; k <= 4; k++) {
      releaseRound(l, 40);
      close(l.epsilon(), new RdpAccountant().compose(1, sigma / 2, k).epsilon(delta));
    }
    // not the central account with q = 0.25 and σ (which would be far smaller)
    expect(l.epsilon()).toBeGreaterThan(new RdpAccountant().compose(0.25, sigma, 4).epsilon(delta) * 2);
    expect(l.fitDp()).toEqual({ mode: 'local', clipNorm: 2, noiseMultiplier: sigma, clipBit: undefined });
    expect(l.round().sumNoiseStd).toBe(0); // the nodes noised, the coordinator does not
  });
});

describe('PrivacyLedger: calibration from a target ε', () => {
  const delta = 1e-5;
  const E = 2.5;
  const R = 40;

  it('central: σ meets ε ≤ E after R rounds, and a σ 1% smaller does not', () => {
    const q = 0.05;
    const l = new PrivacyLedger({ mode: 'central', targetEpsilon: E, clipNorm: 1, delta }, plan(q, R), seededTestRandom('cal-c'));
    const sigma = l.noiseMultiplier;
    expect(epsilonFor({ q, rounds: R, delta, noiseMultiplier: sigma })).toBeLessThanOrEqual(E);
    expect(epsilonFor({ q, rounds: R, delta, noiseMultiplier: 0.99 * sigma })).toBeGreaterThan(E);
    // the ledger's own ε after the R planned rounds stays within the target
    for (let k = 0; k < R; k++) releaseRound(l, 200);
    expect(l.epsilon()).toBeLessThanOrEqual(E);
    expect(l.epsilon()).toBeGreaterThan(0.95 * E);
  });

  it('local: noiseMultiplier is twice the q = 1 calibration (sensitivity 2C)', () => {
    const l = new PrivacyLedger({ mode: 'local', targetEpsilon: E, clipNorm: 1, delta }, plan(0.05, R), seededTestRandom('cal-l'));
    const z = noiseMultiplierFor({ q: 1, rounds: R, delta, targetEpsilon: E });
    expect(l.noiseMultiplier).toBe(2 * z);
    expect(l.accountedNoiseMultiplier).toBe(z);
    expect(epsilonFor({ q: 1, rounds: R, delta, noiseMultiplier: l.noiseMultiplier / 2 })).toBeLessThanOrEqual(E);
    expect(epsilonFor({ q: 1, rounds: R, delta, noiseMultiplier: (0.99 * l.noiseMultiplier) / 2 })).toBeGreaterThan(E);
    for (let k = 0; k < R; k++) releaseRound(l, 200);
    expect(l.epsilon()).toBeLessThanOrEqual(E);
  });
});

describe('PrivacyLedger: adaptive clipping (Andrew et al. 2021)', () => {
  const adaptive = (o: Partial<Exclude<DpOptions['clipNorm'], number>> = {}): DpOptions => ({
    mode: 'central', noiseMultiplier: 1, clipNorm: { targetQuantile: 0.5, initialClipNorm: 0.5, learningRate: 0.2, countNoiseStd: 2, ...o },
  });

  it('splits z into z_Δ for the deltas and 2σ_b for the count: effectiveNoiseMultiplier(z_Δ, 2σ_b) = z', () => {
    for (const [z, sigmaB] of [[1, 2], [1.3, 0.7], [0.8, 5], [2, 1.01]] as const) {
      const l = new PrivacyLedger({ ...adaptive({ countNoiseStd: sigmaB }), noiseMultiplier: z }, plan(0.5), seededTestRandom('zd'));
      close(effectiveNoiseMultiplier(l.deltaNoiseMultiplier, 2 * sigmaB), z, 1e-12);
      expect(l.deltaNoiseMultiplier).toBeGreaterThan(z);
      expect(l.accountedNoiseMultiplier).toBe(z); // the accountant composes the combined z once per round
      l.beginRound(20);
      close(l.round().sumNoiseStd, l.deltaNoiseMultiplier * 0.5); // z_Δ·C₀
      expect(l.round()).toMatchObject({ mode: 'central', clipNorm: 0.5, expectedCohort: 10, clipBit: true });
    }
    // without adaptive clipping the deltas get all of z
    const fixed = new PrivacyLedger({ mode: 'central', noiseMultiplier: 1.7, clipNorm: 3 }, plan(0.5), seededTestRandom('zd'));
    expect(fixed.deltaNoiseMultiplier).toBe(1.7);
    fixed.beginRound(4);
    expect(fixed.round()).toMatchObject({ sumNoiseStd: 1.7 * 3, clipBit: false });
  });

  it('moves C by C·exp(−η(b̄ − γ)), b̄ = (Σ(b_k − ½) + N(0, σ_b²))/(qN) + ½ with the gaussian of the same stream', () => {
    const q = 0.5;
    const sigmaB = 2;
    const eta = 0.2;
    const gamma = 0.5;
    const l = new PrivacyLedger(adaptive(), plan(q), seededTestRandom('adaptive'));
    const twin = seededTestRandom('adaptive');
    let c = 0.5;
    expect(l.clipNorm).toBe(c);
    // [N, Σ b_k, reported]: the cohort of N·q expected, reports above and below it
    const rounds = [[40, 15, 18], [40, 3, 25], [60, 30, 30], [20, 0, 7]] as const;
    for (const [n, unclipped, reported] of rounds) {
      l.beginRound(n);
      expect(l.fitDp()).toEqual({ mode: 'central', clipNorm: c, noiseMultiplier: undefined, clipBit: true });
      l.release(unclipped, reported);
      const g = gaussian(twin);
      const bBar = (unclipped - reported / 2 + sigmaB * g) / (q * n) + 0.5;
      const next = c * Math.exp(-eta * (bBar - gamma));
      close(l.clipNorm, next, 1e-14);
      const rec = l.record();
      expect(rec.clipNorm).toBe(c);
      close(rec.nextClipNorm, next, 1e-14);
      close(rec.unclippedFraction!, bBar, 1e-14);
      c = l.clipNorm;
    }
  });

  it('one node more changes the noised count by at most ½ (the sensitivity the factor 2 of 2σ_b assumes)', () => {
    const n = 40;
    const sum = (unclipped: number, reported: number) => {
      const l = new PrivacyLedger(adaptive(), plan(0.5), seededTestRandom('sensitivity'));
      l.beginRound(n);
      l.release(unclipped, reported);
      return l.record().unclippedFraction! * l.round().expectedCohort; // same noise in every call
    };
    const base = sum(7, 16);
    expect(Math.abs(sum(8, 17) - base)).toBeCloseTo(0.5, 12); // an unclipped node added
    expect(Math.abs(sum(7, 17) - base)).toBeCloseTo(0.5, 12); // a clipped node added
    expect(Math.abs(sum(6, 15) - base)).toBeCloseTo(0.5, 12); // an unclipped node removed
  });

  it('all updates unclipped (b̄ > γ) shrink C; all clipped grow it', () => {
    const shrink = new PrivacyLedger(adaptive({ countNoiseStd: 1 }), plan(0.5), seededTestRandom('dir'));
    releaseRound(shrink, 200, 100, 100); // b̄ ≈ 1 ± 0.05
    expect(shrink.record().unclippedFraction!).toBeGreaterThan(0.5);
    expect(shrink.clipNorm).toBeLessThan(0.5);
    const grow = new PrivacyLedger(adaptive({ countNoiseStd: 1 }), plan(0.5), seededTestRandom('dir'));
    releaseRound(grow, 200, 0, 100); // b̄ ≈ 0 ± 0.05
    expect(grow.record().unclippedFraction!).toBeLessThan(0.5);
    expect(grow.clipNorm).toBeGreaterThan(0.5);
  });

  it('defaults: σ_b = expected cohort / 20, C₀ = 0.1, η = 0.2', () => {
    const l = new PrivacyLedger({ mode: 'central', noiseMultiplier: 1, clipNorm: { targetQuantile: 0.7 } }, plan(0.2, 10, 60), seededTestRandom('def'));
    expect(l.adaptive).toEqual({ targetQuantile: 0.7, learningRate: 0.2, countNoiseStd: 3 });
    expect(l.clipNorm).toBe(0.1);
    close(effectiveNoiseMultiplier(l.deltaNoiseMultiplier, 6), 1);
  });

  it('refuses 2σ_b ≤ z, local mode, γ ∉ (0, 1), bad C₀ or η (FEDMQ_BAD_CONFIG)', () => {
    const make = (opts: DpOptions, expectedCohort = 10) => () => new PrivacyLedger(opts, plan(0.5, 10, expectedCohort), seededTestRandom('bad'));
    // default σ_b = 10/20 = 0.5: 2σ_b = 1 = z is refused, a little more cohort is accepted
    const noStd: DpOptions = { mode: 'central', noiseMultiplier: 1, clipNorm: { targetQuantile: 0.5 } };
    expect(make(noStd, 10)).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make(noStd, 10.2)).not.toThrow();
    expect(make(adaptive({ countNoiseStd: 0.4 }))).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make({ ...adaptive(), mode: 'local' })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    for (const g of [0, 1, -0.1, 1.5, Number.NaN]) expect(make(adaptive({ targetQuantile: g }))).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make(adaptive({ initialClipNorm: 0 }))).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make(adaptive({ learningRate: -1 }))).toThrow(coded(ErrorCodes.BAD_CONFIG));
  });
});

describe('PrivacyLedger: the budget', () => {
  it('wouldExceedBudget flips exactly when epsilonAfterNextRound() > maxEpsilon', () => {
    const q = 0.2;
    const sigma = 0.9;
    const eps = (k: number) => new RdpAccountant().compose(q, sigma, k).epsilon(1e-5);
    const max = (eps(3) + eps(4)) / 2;
    const l = new PrivacyLedger({ mode: 'central', noiseMultiplier: sigma, clipNorm: 1, maxEpsilon: max }, plan(q), seededTestRandom('budget'));
    const flips: boolean[] = [];
    for (let k = 0; k < 6; k++) {
      expect(l.wouldExceedBudget()).toBe(l.epsilonAfterNextRound() > max);
      flips.push(l.wouldExceedBudget());
      releaseRound(l, 50);
    }
    expect(flips).toEqual([false, false, false, true, true, true]); // round 4 would spend ε(4) > max

    const at3 = new PrivacyLedger({ mode: 'central', noiseMultiplier: sigma, clipNorm: 1, maxEpsilon: max }, plan(q), seededTestRandom('budget'));
    for (let k = 0; k < 3; k++) releaseRound(at3, 50);
    const err = at3.budgetError(4);
    expect(err.code).toBe(ErrorCodes.PRIVACY_BUDGET);
    expect(err.details).toMatchObject({ round: 4, maxEpsilon: max, delta: 1e-5 });
    close(err.details.epsilon as number, eps(3));
    close(err.details.nextEpsilon as number, eps(4));
    expect(at3.record().maxEpsilon).toBe(max);
  });

  it('no budget: never exceeded', () => {
    const l = new PrivacyLedger({ mode: 'central', noiseMultiplier: 0.3, clipNorm: 1 }, plan(1), seededTestRandom('nobudget'));
    for (let k = 0; k < 20; k++) releaseRound(l, 5);
    expect(l.epsilon()).toBeGreaterThan(100);
    expect(l.wouldExceedBudget()).toBe(false);
  });
});

describe('PrivacyLedger: checkpoint state', () => {
  const opts: DpOptions = { mode: 'central', noiseMultiplier: 1.2, clipNorm: { targetQuantile: 0.4, initialClipNorm: 1, countNoiseStd: 3 }, delta: 1e-6 };

  it('getState → JSON → setState on a fresh ledger continues the same ε and C', () => {
    const a = new PrivacyLedger(opts, plan(0.3), seededTestRandom('state'));
    releaseRound(a, 50, 10, 14);
    releaseRound(a, 50, 2, 16);
    const state = JSON.parse(JSON.stringify(a.getState()));
    expect(state).toMatchObject({ mode: 'central', q: 0.3, noiseMultiplier: 1.2, delta: 1e-6, clipNorm: a.clipNorm });
    // the fresh ledger's stream stands where a's does (two count gaussians drawn)
    const rb = seededTestRandom('state');
    gaussian(rb);
    gaussian(rb);
    const b = new PrivacyLedger(opts, plan(0.3), rb);
    expect(b.epsilon()).toBe(0);
    b.setState(state);
    expect(b.steps).toBe(2);
    expect(b.epsilon()).toBe(a.epsilon());
    expect(b.clipNorm).toBe(a.clipNorm);
    releaseRound(a, 50, 9, 15);
    releaseRound(b, 50, 9, 15);
    expect(b.epsilon()).toBe(a.epsilon());
    expect(b.clipNorm).toBe(a.clipNorm);
    close(b.epsilon(), new RdpAccountant().compose(0.3, 1.2, 3).epsilon(1e-6));
    // getState is a copy
    const s = a.getState();
    s.clipNorm = 99;
    expect(a.clipNorm).not.toBe(99);
  });

  it('refuses the state of another mode, q, σ, δ or clipping, or a malformed one (FEDMQ_CHECKPOINT)', () => {
    const a = new PrivacyLedger(opts, plan(0.3), seededTestRandom('state2'));
    releaseRound(a, 50, 10, 14);
    const state = JSON.parse(JSON.stringify(a.getState()));
    const fresh = () => new PrivacyLedger(opts, plan(0.3), seededTestRandom('state2'));
    const bad = (s: unknown) => expect(() => fresh().setState(s as never)).toThrow(coded(ErrorCodes.CHECKPOINT));
    bad({ ...state, mode: 'local' });
    bad({ ...state, q: 0.31 });
    bad({ ...state, noiseMultiplier: 1.3 });
    bad({ ...state, delta: 1e-5 });
    bad({ ...state, clipping: 'fixed' }); // a fixed-C run's state into an adaptive run
    bad({ ...state, clipping: undefined });
    bad({ ...state, clipNorm: 0 });
    bad({ ...state, clipNorm: 'x' });
    bad(null);
    bad({ ...state, accountant: null });
    bad({ ...state, accountant: { ...state.accountant, version: 2 } });
    bad({ ...state, accountant: { ...state.accountant, rdp: state.accountant.rdp.slice(1) } });
    bad({ ...state, accountant: { ...state.accountant, rdp: state.accountant.rdp.map(() => 'x') } });
    bad({ ...state, accountant: { ...state.accountant, rdp: state.accountant.rdp.map(() => -1) } });
    bad({ ...state, accountant: { ...state.accountant, steps: -1 } });
    bad({ ...state, accountant: { ...state.accountant, orders: [2, 3], rdp: [0, 0] } });
    bad({ ...state, accountant: { ...state.accountant, neighboring: 'replace-one' } });
    // a local run's state into a central ledger
    const local = new PrivacyLedger({ mode: 'local', noiseMultiplier: 1.2, clipNorm: 1, delta: 1e-6 }, plan(0.3), seededTestRandom('l'));
    bad(local.getState());
    // a refused state leaves the ledger as it was
    const b = fresh();
    expect(() => b.setState({ ...state, q: 0.5 })).toThrow();
    expect(b.steps).toBe(0);
    expect(b.clipNorm).toBe(1);
  });
});

describe('PrivacyLedger: options', () => {
  const make = (o: Partial<DpOptions>, fraction = 0.5) => () => new PrivacyLedger({ mode: 'central', noiseMultiplier: 1, clipNorm: 1, ...o } as DpOptions, plan(fraction), seededTestRandom('opts'));

  it('refuses bad options with FEDMQ_BAD_CONFIG', () => {
    expect(make({ targetEpsilon: 3 })).toThrow(coded(ErrorCodes.BAD_CONFIG)); // both σ and target ε
    expect(make({ noiseMultiplier: undefined })).toThrow(coded(ErrorCodes.BAD_CONFIG)); // neither
    for (const delta of [0, 1, -1e-5, 2, Number.NaN]) expect(make({ delta })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    for (const clipNorm of [0, -1, Number.NaN, Infinity]) expect(make({ clipNorm })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    for (const maxEpsilon of [0, -1, Infinity, Number.NaN]) expect(make({ maxEpsilon })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    for (const noiseMultiplier of [0, -1, Infinity]) expect(make({ noiseMultiplier })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make({ noiseMultiplier: undefined, targetEpsilon: -1 })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    expect(make({ mode: 'secure' as never })).toThrow(coded(ErrorCodes.BAD_CONFIG));
    for (const q of [0, -0.1, 1.5]) expect(make({}, q)).toThrow(coded(ErrorCodes.BAD_CONFIG));
    // and accepts the edges of the valid ranges
    expect(make({ delta: 0.5, maxEpsilon: 1e-3 }, 1)).not.toThrow();
  });

  it('round() and release() before beginRound are bugs (plain Errors)', () => {
    const l = make({})();
    expect(() => l.round()).toThrow(/beginRound/);
    expect(() => l.release(0, 0)).toThrow(/beginRound/);
    expect(l.steps).toBe(0);
  });
});
