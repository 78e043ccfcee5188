/**
 * Statistics for the tests of the samplers (test helper, not part of the package API): the
 * chi-square upper tail, the standard normal CDF, the Kolmogorov–Smirnov statistic and its
 * asymptotic critical value. Textbook formulas (Numerical Recipes §6.1–6.2, §14.3).
 */

/** ln Γ(z) for z > 0 (Lanczos, g = 7, 9 coefficients; relative error ~1e-15). */
export function lnGamma(z: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - lnGamma(1 - z);
  const x = z - 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The regularized upper incomplete gamma function Q(a, x) = Γ(a, x)/Γ(a), a > 0, x ≥ 0. */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lnPrefix = -x + a * Math.log(x) - lnGamma(a);
  if (x < a + 1) {
    // Series for P(a, x).
    let ap = a;
    let del = 1 / a;
    let sum = del;
    for (let n = 0; n < 10_000; n++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-17) break;
    }
    return 1 - sum * Math.exp(lnPrefix);
  }
  // Continued fraction for Q(a, x) (modified Lentz).
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 10_000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-17) break;
  }
  return Math.exp(lnPrefix) * h;
}

/** Pr[χ²_df ≥ x]: the p-value of a chi-square statistic x with df degrees of freedom. */
export function chiSquarePValue(x: number, df: number): number {
  return gammaQ(df / 2, x / 2);
}

/** Φ(x), the standard normal CDF, via erfc(y) = Q(1/2, y²) (accurate to ~1e-15 absolute). */
export function normalCdf(x: number): number {
  const y = Math.abs(x) / Math.SQRT2;
  const erfcY = gammaQ(0.5, y * y);
  return x >= 0 ? 1 - erfcY / 2 : erfcY / 2;
}

/**
 * Pearson's chi-square statistic of observed counts against expected probabilities (which must
 * sum to 1 over the bins, tails included). Returns the statistic and its p-value with
 * bins − 1 degrees of freedom.
 */
export function chiSquare(observed: ArrayLike<number>, probs: ArrayLike<number>): { stat: number; df: number; p: number } {
  let total = 0;
  for (let i = 0; i < observed.length; i++) total += observed[i];
  let stat = 0;
  for (let i = 0; i < observed.length; i++) {
    const e = total * probs[i];
    stat += ((observed[i] - e) * (observed[i] - e)) / e;
  }
  const df = observed.length - 1;
  return { stat, df, p: chiSquarePValue(stat, df) };
}

/** The one-sample Kolmogorov–Smirnov statistic D = sup |F_n − F| of `samples` against `cdf`. */
export function ksStatistic(samples: Float64Array, cdf: (x: number) => number): number {
  const s = Float64Array.from(samples).sort();
  const n = s.length;
  let d = 0;
  for (let i = 0; i < n; i++) {
    const f = cdf(s[i]);
    d = Math.max(d, f - i / n, (i + 1) / n - f);
  }
  return d;
}

/**
 * The critical value of D at significance α for n samples, from Kolmogorov's limit
 * Pr[√n·D > λ] → 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²} ≈ 2e^{−2λ²} (the other terms are < 1e-20 for
 * small α): λ = √(ln(2/α)/2).
 */
export function ksCritical(n: number, alpha: number): number {
  return Math.sqrt(Math.log(2 / alpha) / 2) / Math.sqrt(n);
}
