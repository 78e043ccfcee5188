// How `fedmq node` stops on a signal, started as the README says (issue 12, item 13).
//
// bin/fedmq.js runs in the process it was started in (tsx registered in-process, no re-spawn), so
// the node's own process receives what is sent to it. `npx fedmq node` adds two processes of
// npm's in between: `npm exec` → `sh -c fedmq …` → the node. A terminal's Ctrl-C signals the whole
// foreground process group, the node included: that works. A signal sent to the npx process alone
// does not reach the node (npm passes it to `sh`, which waits for its child); SIGTERM to it even
// leaves the node running without a parent. For process managers and scripts the README names the
// binary itself, node_modules/.bin/fedmq, which is the node's process.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));
const direct = join(repo, 'node_modules', '.bin', 'fedmq');
const JOB = 'signals';

let dir: string;
let broker: RunningBroker;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedmq-signals-'));
  await promisify(execFile)(process.execPath, [bin, 'data', 'split', '--dataset', 'telosb', '--partition', 'natural', '--out', join(dir, 'data')]);
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  for (const c of started) {
    if (c.exitCode === null && c.signalCode === null) {
      const exited = once(c, 'exit');
      try {
        process.kill(-c.pid!, 'SIGKILL'); // a detached child leads its own group
      } catch {
        c.kill('SIGKILL');
      }
      await exited;
    }
  }
  await broker?.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Starts `command … node` for node `id` and resolves once it printed its "connected" line, with a
 * promise of its exit and one of the node's MQTT disconnect as the broker sees it.
 */
async function startNode(command: string, prefix: string[], id: string, detached: boolean) {
  const child = spawn(command, [...prefix, '--log-level', 'warn', 'node', '--broker', broker.url, '--job', JOB, '--id', id, '--data', join(dir, 'data', id)], {
    cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], detached,
  });
  started.push(child);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const clientId = `fedmq:${JOB}:node:${id}`;
  const disconnected = new Promise<void>((resolve) => {
    const on = (client: { id: string }) => {
      if (client.id !== clientId) return;
      broker.aedes.off('clientDisconnect', on);
      resolve();
    };
    broker.aedes.on('clientDisconnect', on);
  });
  await Promise.race([
    new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on('line', (l) => { if (l.startsWith(`node ${id} connected to`)) resolve(); })),
    exited.then((e) => { throw new Error(`fedmq node exited (${e.code ?? e.signal}) before connecting: ${stderr}`); }),
  ]);
  return { child, exited, disconnected, stderr: () => stderr };
}

/** True while some process of process group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('stopping fedmq node', () => {
  it('npx fedmq node: Ctrl-C (SIGINT to the process group, as a terminal sends it) stops the node, and every process of the group exits', async () => {
    const n = await startNode('npx', ['fedmq'], 'mote-1', true);
    process.kill(-n.child.pid!, 'SIGINT');
    await n.disconnected;
    // npm, which got the SIGINT too, ends with it once its child is gone (or with the child's 0)
    const exit = await n.exited;
    expect(exit.code === 0 || exit.signal === 'SIGINT', JSON.stringify(exit)).toBe(true);
    expect(n.stderr()).toContain('SIGINT: stopping…');
    expect(groupAlive(n.child.pid!)).toBe(false);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('node_modules/.bin/fedmq node: %s to its pid stops it (exit 0)', async (signal) => {
    const n = await startNode(direct, [], signal === 'SIGINT' ? 'mote-2' : 'mote-3', false);
    n.child.kill(signal);
    await n.disconnected;
    expect(await n.exited).toEqual({ code: 0, signal: null });
    expect(n.stderr()).toContain(`${signal}: stopping…`);
  });
});
