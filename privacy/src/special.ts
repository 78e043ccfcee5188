/**
 * Special functions the privacy accountant needs and JavaScript does not have: the complementary
 * error function erfc, its scaled form erfcx(x) = exp(x²)·erfc(x), and log(erfc(x)) without
 * underflow (rdp.ts uses it for fractional RDP orders, as dp_accounting's `_log_erfc`).
 *
 * Source: W. J. Cody, "Rational Chebyshev approximations for the error function", Mathematics of
 * Computation 23 (1969), 631–637, as implemented in his SPECFUN routine CALERF
 * (netlib.org/specfun/erf); the coefficient tables are CALERF's, at their published precision.
 * CALERF's three intervals are [0, 0.46875] (erf), (0.46875, 4] (exp(x²)·erfc) and (4, ∞)
 * (exp(x²)·erfc as x⁻¹·(1/√π − R(1/x²))); relative accuracy is about 1e-16 (tested in
 * special.test.ts against values from the Digital Library of Mathematical Functions / mpmath).
 */

const SQRPI = 5.6418958354775628695e-1; // 1/√π
const THRESH = 0.46875;
const XSMALL = 1.11e-16;

// erf on [0, 0.46875]
const A = [3.16112374387056560e0, 1.13864154151050156e2, 3.77485237685302021e2, 3.20937758913846947e3, 1.85777706184603153e-1];
const B = [2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3, 2.84423683343917062e3];
// exp(x²)·erfc(x) on (0.46875, 4]
const C = [
  5.64188496988670089e-1, 8.88314979438837594e0, 6.61191906371416295e1, 2.98635138197400131e2, 8.81952221241769090e2,
  1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3, 2.15311535474403846e-8,
];
const D = [
  1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2, 1.62138957456669019e3, 3.29079923573345963e3,
  4.36261909014324716e3, 3.43936767414372164e3, 1.23033935480374942e3,
];
// exp(x²)·erfc(x) on (4, ∞), in 1/x²
const P = [3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2];
const Q = [2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3];

/** erf(y) for |y| ≤ 0.46875 (CALERF's first interval). */
function erfSmall(y: number): number {
  const ysq = Math.abs(y) > XSMALL ? y * y : 0;
  let xnum = A[4] * ysq;
  let xden = ysq;
  for (let i = 0; i < 3; i++) {
    xnum = (xnum + A[i]) * ysq;
    xden = (xden + B[i]) * ysq;
  }
  return (y * (xnum + A[3])) / (xden + B[3]);
}

/** exp(y²)·erfc(y) for y > 0.46875 (CALERF's second and third intervals). */
function erfcxLarge(y: number): number {
  if (y <= 4) {
    let xnum = C[8] * y;
    let xden = y;
    for (let i = 0; i < 7; i++) {
      xnum = (xnum + C[i]) * y;
      xden = (xden + D[i]) * y;
    }
    return (xnum + C[7]) / (xden + D[7]);
  }
  const ysq = 1 / (y * y);
  let xnum = P[5] * ysq;
  let xden = ysq;
  for (let i = 0; i < 4; i++) {
    xnum = (xnum + P[i]) * ysq;
    xden = (xden + Q[i]) * ysq;
  }
  return (SQRPI - (ysq * (xnum + P[4])) / (xden + Q[4])) / y;
}

/**
 * exp(−y²) for y ≥ 0, with CALERF's split y² = s² + (y − s)(y + s), s = ⌊16y⌋/16, so that the
 * rounding error of y² is not amplified by the exponential.
 */
function expMinusSquare(y: number): number {
  const s = Math.trunc(16 * y) / 16;
  const del = (y - s) * (y + s);
  return Math.exp(-s * s) * Math.exp(-del);
}

/**
 * The complementary error function erfc(x) = (2/√π)∫ₓ^∞ exp(−t²) dt, for any real x (NaN → NaN).
 * Relative error about 1e-16 where the result is a normal double; 0 for x ≳ 26.6 (underflow —
 * use {@link logErfc} there). Source: Cody 1969 / SPECFUN CALERF.
 */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const y = Math.abs(x);
  if (y <= THRESH) return 1 - erfSmall(x);
  const r = y >= 27 ? 0 : expMinusSquare(y) * erfcxLarge(y);
  return x < 0 ? 2 - r : r;
}

/** The error function erf(x) = 1 − erfc(x), accurate near 0 (CALERF's first interval). */
export function erf(x: number): number {
  if (Math.abs(x) <= THRESH) return erfSmall(x);
  return x < 0 ? erfc(-x) - 1 : 1 - erfc(x);
}

/**
 * The scaled complementary error function erfcx(x) = exp(x²)·erfc(x), for x ≥ −26 (it overflows
 * below); ~1/(x√π) for large x, never underflowing. Source: Cody 1969 / SPECFUN CALERF (jint = 2).
 */
export function erfcx(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const y = Math.abs(x);
  if (x >= 0) return y <= THRESH ? Math.exp(x * x) * (1 - erfSmall(x)) : erfcxLarge(y);
  // erfcx(−y) = 2·exp(y²) − erfcx(y)
  return 2 * Math.exp(y * y) - (y <= THRESH ? Math.exp(y * y) * (1 - erfSmall(y)) : erfcxLarge(y));
}

/**
 * log(erfc(x)) for any real x, accurate (≈1e-15 relative, or absolute where the value is near 0)
 * also where erfc(x) underflows: for x > 0.46875 it is log(erfcx(x)) − x², the rational
 * approximation of CALERF's last intervals being the asymptotic expansion of erfc made exact to
 * double precision; +∞ → −∞, −∞ → log 2.
 *
 * dp_accounting's `_log_erfc` (rdp/rdp_privacy_accountant.py) computes the same function as
 * log(2) + scipy.special.log_ndtr(−x√2), and falls back to the Laurent series at infinity
 * log erfc(x) ≈ −log(π)/2 − log(x) − x² − x⁻²/2 + 5x⁻⁴/8 − 37x⁻⁶/24 + 353x⁻⁸/64 when erfc
 * underflows; special.test.ts checks that this function agrees with that series for large x.
 */
export function logErfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x === Infinity) return -Infinity;
  if (Math.abs(x) <= THRESH) return Math.log1p(-erfSmall(x));
  if (x < 0) return Math.log(erfc(x));
  return Math.log(erfcxLarge(x)) - x * x;
}
