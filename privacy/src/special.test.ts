import { describe, expect, it } from 'vitest';
import { erf, erfc, erfcx, logErfc } from './special.ts';

// Reference values: erfc(x) and log(erfc(x)) from mpmath 1.3.0 (mpmath.erfc with mp.dps = 40, an
// arbitrary-precision implementation independent of Cody's approximations), rounded to 20 digits.
// erfc(1) = 0.157299207050285130658… also in DLMF §7.
const REF: [number, number, number][] = [
  [-3, 1.9999779095030014146, 0.69313613525044681032],
  [-1, 1.8427007929497148693, 0.61123231767807049464],
  [-0.3, 1.3286267594591274276, 0.28414589714140825864],
  [0, 1, 0],
  [1e-10, 0.99999999988716208329, -1.1283791671591745511e-10],
  [0.1, 0.8875370839817151078, -0.11930497373739559833],
  [0.46875, 0.50738652678206200841, -0.67848218561439609899],
  [0.5, 0.47950012218695346232, -0.73501112983708440303],
  [1, 0.15729920705028513066, -1.8496055099332482486],
  [2, 0.0046777349810472658379, -5.3649412646166375745],
  [3.9, 3.4792248597231742278e-8, -17.173871216435403526],
  [4, 1.5417257900280018852e-8, -17.987778312103006503],
  [4.5, 1.9661604415428874763e-10, -22.349768303435940757],
  [6, 2.1519736712498913117e-17, -38.377561173223388366],
  [10, 2.088487583762544757e-45, -102.87988902484488857],
  [26, 5.6631924088561428465e-296, -679.83119976319423026],
];
// where erfc underflows double precision: log(erfc(x)) only
const REF_LOG_ONLY: [number, number][] = [
  [27, -732.86888650789741098],
  [30, -903.97411711064387808],
  [100, -10005.177585122664333],
  [1000, -1000007.4801207219062],
];

const rel = (a: number, b: number) => (b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b));

describe('erfc (Cody 1969, SPECFUN CALERF)', () => {
  it.each(REF)('erfc(%s) to 1e-14 relative', (x, value) => {
    expect(rel(erfc(x), value)).toBeLessThan(1e-14);
  });

  it('erf = 1 − erfc, odd, and accurate near 0', () => {
    expect(rel(erf(1e-10), 1.1283791670955125739e-10)).toBeLessThan(1e-14); // 2x/√π, mpmath
    for (const x of [0.2, 0.46875, 0.7, 3, 7]) {
      expect(erf(-x)).toBe(-erf(x));
      expect(Math.abs(erf(x) - (1 - erfc(x)))).toBeLessThan(2e-16);
    }
  });

  it('erfcx(x) = exp(x²)·erfc(x), ~1/(x√π) at large x', () => {
    for (const [x, value] of REF) if (x >= 0 && x <= 20) expect(rel(erfcx(x), Math.exp(x * x) * value)).toBeLessThan(2e-14);
    expect(rel(erfcx(1e8), 1 / (1e8 * Math.sqrt(Math.PI)))).toBeLessThan(1e-15);
    expect(rel(erfcx(-1), Math.exp(1) * 1.8427007929497148693)).toBeLessThan(1e-14);
  });

  it('NaN in, NaN out; the tails', () => {
    expect(erfc(NaN)).toBeNaN();
    expect(logErfc(NaN)).toBeNaN();
    expect(erfc(Infinity)).toBe(0);
    expect(erfc(-Infinity)).toBe(2);
    expect(logErfc(Infinity)).toBe(-Infinity);
    expect(logErfc(-Infinity)).toBe(Math.log(2));
  });
});

describe('logErfc', () => {
  it.each(REF)('log(erfc(%s)) to 1e-14 relative', (x, _value, log) => {
    if (log === 0) expect(Math.abs(logErfc(x))).toBe(0);
    else expect(rel(logErfc(x), log)).toBeLessThan(1e-14);
  });

  it.each(REF_LOG_ONLY)('log(erfc(%s)) where erfc underflows, to 1e-15 relative', (x, log) => {
    expect(rel(logErfc(x), log)).toBeLessThan(1e-15);
  });

  it("agrees with dp_accounting's Laurent series for large x (rdp_privacy_accountant.py, _log_erfc fallback)", () => {
    const series = (x: number) => -Math.log(Math.PI) / 2 - Math.log(x) - x ** 2 - 0.5 * x ** -2 + 0.625 * x ** -4 - (37 / 24) * x ** -6 + (353 / 64) * x ** -8;
    // the series' next term is O(x⁻¹⁰): below 1e-12 absolute from x = 20
    for (const x of [20, 26.7, 30, 50, 300, 1e4]) expect(Math.abs(logErfc(x) - series(x))).toBeLessThan(1e-12 * Math.max(1, x * x));
  });
});
