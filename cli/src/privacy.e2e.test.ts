import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { epsilonFor, noiseMultiplierFor } from '@fedmq/privacy';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));

async function fails(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const err = await run(process.execPath, [bin, ...args]).then(
    () => { throw new Error(`fedmq ${args.join(' ')} succeeded`); },
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  return err;
}

describe('fedmq privacy', () => {
  it('epsilon prints ε, one number and nothing else, the library\'s to the last digit', async () => {
    const { stdout } = await run(process.execPath, [bin, 'privacy', 'epsilon', '--q', '0.1', '--noise-multiplier', '1.1', '--rounds', '100', '--delta', '1e-5']);
    expect(stdout).toMatch(/^[0-9.e+-]+\n$/);
    expect(Number(stdout)).toBe(epsilonFor({ q: 0.1, noiseMultiplier: 1.1, rounds: 100, delta: 1e-5 }));
    // dp_accounting's RdpAccountant (default orders) gives 6.62076948219146 for this run (accountant.test.ts)
    expect(Math.abs(Number(stdout) - 6.62076948219146)).toBeLessThan(1e-4 * 6.62076948219146);
  });

  it('noise prints σ, one number, that meets the target', async () => {
    const { stdout } = await run(process.execPath, [bin, 'privacy', 'noise', '--q', '0.1', '--rounds', '100', '--target-epsilon', '8', '--delta', '1e-5']);
    expect(stdout).toMatch(/^[0-9.e+-]+\n$/);
    const sigma = Number(stdout);
    expect(sigma).toBe(noiseMultiplierFor({ q: 0.1, rounds: 100, targetEpsilon: 8, delta: 1e-5 }));
    expect(epsilonFor({ q: 0.1, noiseMultiplier: sigma, rounds: 100, delta: 1e-5 })).toBeLessThanOrEqual(8);
    expect(epsilonFor({ q: 0.1, noiseMultiplier: sigma * (1 - 1e-3), rounds: 100, delta: 1e-5 })).toBeGreaterThan(8);
  });

  it.each([
    [['epsilon', '--q', '0', '--noise-multiplier', '1', '--rounds', '10', '--delta', '1e-5'], 'FEDMQ_BAD_CONFIG: q must be in (0, 1]'],
    [['epsilon', '--q', 'abc', '--noise-multiplier', '1', '--rounds', '10', '--delta', '1e-5'], "FEDMQ_BAD_CONFIG: --q must be a number, got 'abc'"],
    [['epsilon', '--q', '0.1', '--noise-multiplier', '-1', '--rounds', '10', '--delta', '1e-5'], 'FEDMQ_BAD_CONFIG: noise multiplier must be'],
    [['epsilon', '--q', '0.1', '--noise-multiplier', '1', '--rounds', '2.5', '--delta', '1e-5'], 'FEDMQ_BAD_CONFIG: rounds must be an integer'],
    [['noise', '--q', '0.1', '--rounds', '10', '--target-epsilon', '0', '--delta', '1e-5'], 'FEDMQ_BAD_CONFIG: target epsilon must be'],
    [['noise', '--q', '0.1', '--rounds', '10', '--target-epsilon', '1', '--delta', '1'], 'FEDMQ_BAD_CONFIG: delta must be in (0, 1)'],
    [['noise', '--q', '0.1', '--rounds', '10', '--delta', '1e-5'], "required option '--target-epsilon <ε>' not specified"],
  ])('privacy %j exits non-zero with the coded error on stderr, nothing on stdout', async (args, message) => {
    const err = await fails(['privacy', ...args]);
    expect(err.code).not.toBe(0);
    expect(err.stdout).toBe('');
    expect(err.stderr).toContain(message);
  });
});
