import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));

describe('the fedmq command', () => {
  it('lists broker, coordinator, node, simulate and monitor', async () => {
    const { stdout } = await run(process.execPath, [bin, '--help']);
    for (const cmd of ['broker', 'coordinator', 'node', 'simulate', 'monitor', 'data', 'demo']) expect(stdout).toMatch(new RegExp(`^  ${cmd}\\b`, 'm'));
  });

  it.each([
    ['broker', '--http-port'], ['broker', '--persistence'], ['coordinator', '--strategy'], ['coordinator', '--resume'], ['node', '--data'],
    ['simulate', '--attack'], ['simulate', '--chaos'], ['monitor', '--json'], ['data', 'split'],
  ])('%s --help loads every option (no two options share a flag)', async (cmd, flag) => {
    const { stdout } = await run(process.execPath, [bin, cmd, '--help']);
    expect(stdout).toContain(flag);
  });

  it('rejects a bad flag value with a message, not a stack trace', async () => {
    const err = await run(process.execPath, [bin, 'simulate', '--byzantine', '2']).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).not.toBe(0);
    expect((err as { stderr: string }).stderr).toContain('byzantine must be in [0, 1)');
  });

  it.each([
    [['simulate', '--broker', 'mqtt://127.0.0.1:1', '--rounds', '3'], '--rounds: the coordinator decides this'],
    [['simulate', '--broker', 'mqtt://127.0.0.1:1', '--fraction', '0.1', '--min-nodes', '5'], '--fraction, --min-nodes: the coordinator decides this'],
    [['simulate', '--shard', '1/3'], '--shard: shards join a fleet on a shared broker'],
    [['simulate', '--broker', 'mqtt://127.0.0.1:1', '--shard', '4/3'], 'shard must be I/N with 1 ≤ I ≤ N'],
  ])('simulate %j is refused before anything starts', async (args, message) => {
    const err = await run(process.execPath, [bin, ...args]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).not.toBe(0);
    expect((err as { stderr: string }).stderr).toContain(message);
  });
});
