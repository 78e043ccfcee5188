import { ErrorCodes, isFedmqError } from '@fedmq/protocol';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RDP_ORDERS, computeLogAFrac, computeLogAInt, effectiveNoiseMultiplier, logAdd, rdpPoissonSubsampledGaussian, rdpSampledWithoutReplacementGaussian,
} from './rdp.ts';

// Reference values come from google/differential-privacy, python/dp_accounting/dp_accounting/rdp/
// rdp_privacy_accountant_test.py (read at commit b5b0286e313b64a692abfc8c528d54ef47d960a0), named
// by test below, from issue 13, or from an independent numerical integration of A_α (below).

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isFedmqError(err) ? err.code : 'not a FedmqError';
  }
  return undefined;
}

function expectClose(actual: readonly number[], expected: readonly number[], rtol: number): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((a, i) => {
    if (!Number.isFinite(expected[i])) expect(a).toBe(expected[i]);
    else expect(Math.abs(a - expected[i]), `index ${i}: ${a} vs ${expected[i]}`).toBeLessThanOrEqual(rtol * Math.abs(expected[i]));
  });
}

/**
 * log A_α by quadrature of its definition, A_α = E_{z∼N(0,σ²)}[((1 − q) + q·exp((2z − 1)/(2σ²)))^α]
 * (Mironov, Talwar, Zhang 2019, §3), with the trapezoid rule in log space on a grid of step σ/16
 * over [−40σ − 1, α + 40σ + 1] (the integrand is a mixture of Gaussians of width σ centred on
 * 0 … α). dp_accounting's test_compute_log_a_equals_mp does the same with mpmath.quad. It shares no
 * code with rdp.ts, and for fractional α gives the exact A_α where rdp.ts (like dp_accounting) gives
 * an upper bound.
 */
function logAByQuadrature(q: number, sigma: number, alpha: number): number {
  const h = sigma / 16;
  const lo = -40 * sigma - 1;
  const n = Math.ceil((alpha + 40 * sigma + 1 - lo) / h);
  const log1mq = Math.log1p(-q);
  const logq = Math.log(q);
  const logNorm = -Math.log(sigma * Math.sqrt(2 * Math.PI));
  let acc = -Infinity;
  for (let k = 0; k <= n; k++) {
    const z = lo + k * h;
    const logMix = logAdd(log1mq, logq + (2 * z - 1) / (2 * sigma ** 2));
    const w = k === 0 || k === n ? Math.log(0.5) : 0;
    acc = logAdd(acc, w + logNorm - (z * z) / (2 * sigma ** 2) + alpha * logMix);
  }
  return acc + Math.log(h);
}

describe('RDP of the Poisson-subsampled Gaussian', () => {
  it('q = 0.01, σ = 2.5, 50 steps: dp_accounting test_compute_rdp_poisson_subsampled_gaussian (rtol 1e-4)', () => {
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const rdp = rdpPoissonSubsampledGaussian(0.01, 2.5, orders).map((r) => 50 * r);
    expectClose(rdp, [6.70579741e-4, 1.0854871e-3, 2.18075656e-3, 2.38460375e-2, 1.67416308e2, Infinity], 1e-4);
  });

  it("the same, against issue 13's list: equal at orders 2.5 … ∞; at 1.5 the issue's 6.5007e-4 is the exact RDP, of which ours is an upper bound", () => {
    // Issue 13 lists [6.5007e-4, 1.0854e-3, 2.1808e-3, 2.3846e-2, 1.6742e+2, ∞]: the values of this
    // test before dp_accounting's commit 0b109e9 (April 2024, "Improve numerical stability of RDP
    // computation"), which made _compute_log_a_frac add every term with |C(α, i)| instead of
    // subtracting the negative ones. That changes only the fractional order 1.5 (integer orders use
    // _compute_log_a_int; 2.5 moves by < 1e-5 relative). We follow the current code.
    const orders = [1.5, 2.5, 5, 50, 100, Infinity];
    const rdp = rdpPoissonSubsampledGaussian(0.01, 2.5, orders).map((r) => 50 * r);
    expectClose(rdp.slice(1), [1.0854e-3, 2.1808e-3, 2.3846e-2, 1.6742e2, Infinity], 1e-4);
    const exact = (50 * logAByQuadrature(0.01, 2.5, 1.5)) / 0.5;
    expect(Math.abs(exact - 6.5007e-4)).toBeLessThan(1e-4 * 6.5007e-4); // the value is the exact one
    expect(rdp[0]).toBeGreaterThan(exact); // ours bounds it from above (by 3.2 %)
    expect(rdp[0] / exact).toBeLessThan(1.04);
  });

  // dp_accounting test_compute_log_a_equals_mp: the series against an expensive integration, at
  // rtol 1e-4, atol 1e-8 (their tolerances)
  it.each([
    { q: 1e-7, sigma: 0.1, order: 1.01 },
    { q: 1e-6, sigma: 0.1, order: 256 },
    { q: 1e-5, sigma: 0.1, order: 256.1 },
    { q: 1e-6, sigma: 1, order: 27 },
    { q: 1e-4, sigma: 1.0, order: 1.5 },
    { q: 1e-3, sigma: 1.0, order: 2 },
    { q: 0.01, sigma: 10, order: 20 },
    { q: 0.1, sigma: 100, order: 20.5 },
    { q: 0.99, sigma: 0.1, order: 256 },
    { q: 0.999, sigma: 100, order: 256.1 },
  ])('log A_α equals its integral: %o', ({ q, sigma, order }) => {
    const logA = Number.isInteger(order) ? computeLogAInt(q, sigma, order) : computeLogAFrac(q, sigma, order);
    const quad = logAByQuadrature(q, sigma, order);
    expect(Math.abs(logA - quad)).toBeLessThanOrEqual(1e-8 + 1e-4 * Math.abs(quad));
  });

  it('integer orders are exact: the series equals the integral to 1e-9 relative', () => {
    for (const [q, sigma, order] of [[0.01, 2.5, 5], [0.01, 2.5, 50], [0.1, 1.1, 8], [0.5, 3, 32]]) {
      const quad = logAByQuadrature(q, sigma, order);
      expect(Math.abs(computeLogAInt(q, sigma, order) - quad)).toBeLessThan(1e-9 * Math.abs(quad));
    }
  });

  it('fractional orders are an upper bound on the integral', () => {
    for (const [q, sigma, order] of [[0.01, 2.5, 1.5], [0.1, 1.1, 3.6], [0.05, 0.8, 7.3], [0.2, 5, 10.9]]) {
      expect(computeLogAFrac(q, sigma, order)).toBeGreaterThanOrEqual(logAByQuadrature(q, sigma, order) * (1 - 1e-9));
    }
  });

  it('q = 1 is the Gaussian mechanism α/(2σ²) (dp_accounting test_compute_rdp_gaussian)', () => {
    const [alpha, sigma] = [3.14159, 2.71828];
    expect(rdpPoissonSubsampledGaussian(1, sigma, [alpha])[0]).toBeCloseTo(alpha / (2 * sigma ** 2), 12);
    expect(rdpPoissonSubsampledGaussian(1, sigma, [1, Infinity])).toEqual([1 / (2 * sigma ** 2), Infinity]);
  });

  it('q = 0 → 0 at every order, also σ = 0 and order ∞; σ = 0 or order ∞ → ∞ otherwise (dp_accounting test_zero_poisson_sample, test_epsilon_non_private_gaussian)', () => {
    expect(rdpPoissonSubsampledGaussian(0, 1, [3.14159, Infinity])).toEqual([0, 0]);
    expect(rdpPoissonSubsampledGaussian(0, 0, [3.14159])).toEqual([0]);
    expect(rdpPoissonSubsampledGaussian(0.5, 0, [2, 3.5])).toEqual([Infinity, Infinity]);
    expect(rdpPoissonSubsampledGaussian(1, 0, [3.14159])).toEqual([Infinity]);
    expect(rdpPoissonSubsampledGaussian(0.01, 2.5, [Infinity])).toEqual([Infinity]);
  });

  it('log A of the fractional series stays positive where it formerly went negative (dp_accounting test_log_a_frac_positive)', () => {
    for (let k = 0; k <= 20; k++) expect(computeLogAFrac(0.4, 12, 58.5 + k / 20)).toBeGreaterThan(0);
  });

  it('a fractional order whose series does not converge gives ∞ (dp_accounting test_log_a_frac_early_termination: q = 0.1, σ = 1, default orders)', () => {
    const rdp = rdpPoissonSubsampledGaussian(0.1, 1, DEFAULT_RDP_ORDERS);
    expect(rdp).toContain(Infinity);
    // only fractional orders can fail; the integer ones are finite
    DEFAULT_RDP_ORDERS.forEach((a, i) => {
      if (Number.isInteger(a)) expect(Number.isFinite(rdp[i])).toBe(true);
    });
  });

  it('refuses q ∉ [0, 1], σ < 0, orders < 1, and order 1 with 0 < q < 1 (dp_accounting test_raises_on_invalid_sampling_rate / _noise_multiplier)', () => {
    expect(code(() => rdpPoissonSubsampledGaussian(-0.1, 1, [2]))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rdpPoissonSubsampledGaussian(1.1, 1, [2]))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rdpPoissonSubsampledGaussian(NaN, 1, [2]))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rdpPoissonSubsampledGaussian(0.1, -1, [2]))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rdpPoissonSubsampledGaussian(0.1, 1, [0.5]))).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => rdpPoissonSubsampledGaussian(0.1, 1, [1]))).toBe(ErrorCodes.BAD_CONFIG);
  });
});

describe('dp_accounting default orders', () => {
  it('are 1 + x/10 for x = 1…99, 11…63, 128, 256, 512, 1024 (rdp_privacy_accountant.py DEFAULT_RDP_ORDERS)', () => {
    expect(DEFAULT_RDP_ORDERS.length).toBe(99 + 53 + 4);
    expect(DEFAULT_RDP_ORDERS.slice(0, 3)).toEqual([1.1, 1.2, 1 + 3 / 10]);
    expect(DEFAULT_RDP_ORDERS[98]).toBe(1 + 99 / 10);
    expect(DEFAULT_RDP_ORDERS.slice(99, 101)).toEqual([11, 12]);
    expect(DEFAULT_RDP_ORDERS.slice(-5)).toEqual([63, 128, 256, 512, 1024]);
  });
});

describe('several Gaussian queries on one cohort', () => {
  it('is one Gaussian with σ_eff = (Σσᵢ⁻²)^(−1/2) (dp_accounting test_compute_rdp_multi_gaussian, test_effective_gaussian_noise_multiplier_composed)', () => {
    const alpha = 3.14159;
    const [s1, s2] = [2.71828, 6.28319];
    const rdp = rdpPoissonSubsampledGaussian(1, effectiveNoiseMultiplier(s1, s2), [alpha])[0];
    expect(rdp).toBeCloseTo(alpha / (2 * s1 ** 2) + alpha / (2 * s2 ** 2), 12);
    expect(effectiveNoiseMultiplier(0.3, 0.5, 0.5, 0.5, 0.7)).toBeCloseTo([0.3, 0.5, 0.5, 0.5, 0.7].reduce((s, x) => s + x ** -2, 0) ** -0.5, 14);
    expect(effectiveNoiseMultiplier(1, 0)).toBe(0);
    expect(code(() => effectiveNoiseMultiplier())).toBe(ErrorCodes.BAD_CONFIG);
    expect(code(() => effectiveNoiseMultiplier(1, -1))).toBe(ErrorCodes.BAD_CONFIG);
  });

  it("adaptive clipping (Andrew et al. 2021 §3.1): z_Δ and the bits' σ_b give z = (z_Δ⁻² + (2σ_b)⁻²)^(−1/2); subsampled, that is more than the two RDPs added", () => {
    const [zDelta, sigmaB] = [1.2, 5];
    const z = effectiveNoiseMultiplier(zDelta, 2 * sigmaB);
    expect(z).toBeCloseTo((zDelta ** -2 + (2 * sigmaB) ** -2) ** -0.5, 14);
    // q = 1: the same either way; q < 1: one shared sample is worse than two independent ones
    const orders = [2, 8, 32];
    expectClose(rdpPoissonSubsampledGaussian(1, z, orders), orders.map((a) => a / (2 * zDelta ** 2) + a / (2 * (2 * sigmaB) ** 2)), 1e-12);
    const joint = rdpPoissonSubsampledGaussian(0.1, z, orders);
    const separate = rdpPoissonSubsampledGaussian(0.1, zDelta, orders).map((r, i) => r + rdpPoissonSubsampledGaussian(0.1, 2 * sigmaB, orders)[i]);
    joint.forEach((r, i) => expect(r).toBeGreaterThan(separate[i]));
  });
});

describe('RDP of the Gaussian on a sample without replacement (fixed-size cohorts)', () => {
  it('q = 0.01, σ = 2.5: the values of dp_accounting _compute_rdp_sample_wor_gaussian (rtol 1e-4)', () => {
    // dp_accounting's test file has no reference values for this function; these are its output,
    // computed by running rdp_privacy_accountant.py at commit b5b0286 with numpy 2.4 / scipy 1.17:
    //   _compute_rdp_sample_wor_gaussian(0.01, 2.5, [1.5, 2.5, 5, 50, 100, 300, inf])
    const orders = [1.5, 2.5, 5, 50, 100, 300, Infinity];
    expectClose(rdpSampledWithoutReplacementGaussian(0.01, 2.5, orders), [6.940194e-5, 9.277216e-5, 1.7526721e-4, 1.96948301e-3, 3.35532777, 1.93817461e1, Infinity], 1e-4);
  });

  it('q = 1 is the Gaussian α/(2σ²), q = 0 is 0 (dp_accounting test_zero_fixed_batch_sample)', () => {
    expect(rdpSampledWithoutReplacementGaussian(1, 2, [3, 7.5])).toEqual([3 / 8, 7.5 / 8]);
    expect(rdpSampledWithoutReplacementGaussian(0, 1, [3.14159, Infinity])).toEqual([0, 0]);
  });

  it('increases with the order and with q (a sanity check; the reference values are above)', () => {
    const orders = [2, 3, 4.5, 10, 20];
    for (const q of [0.001, 0.01, 0.1]) {
      const r = rdpSampledWithoutReplacementGaussian(q, 1.5, orders);
      for (let i = 1; i < r.length; i++) expect(r[i]).toBeGreaterThanOrEqual(r[i - 1]);
      const r2 = rdpSampledWithoutReplacementGaussian(2 * q, 1.5, orders);
      r2.forEach((x, i) => expect(x).toBeGreaterThan(r[i]));
    }
  });
});
