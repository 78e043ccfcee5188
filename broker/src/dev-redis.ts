import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const REDIS = '/usr/bin/redis-server';
const REDIS_CLI = '/usr/bin/redis-cli';
const run = promisify(execFile);

/**
 * A TCP port that was free on 127.0.0.1 a moment ago (bound to port 0, then released), for a
 * server started in another process (redis-server, mosquitto). Another process may take it in
 * between: {@link startRedisServer} retries on a fresh one.
 */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A private redis-server started by {@link startRedisServer}. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT`, as `fedmq broker --cluster` and `--persistence` take it. */
  url: string;
  port: number;
  /** Its log lines so far (stdout). */
  log: string[];
  /** Resolves with the first log line (already logged or to come) matching `re`. */
  logged(re: RegExp): Promise<string>;
  /** Runs Debian's redis-cli against it; resolves with its stdout. */
  cli(...args: string[]): Promise<string>;
  /** Stops it (SIGTERM, waits for the exit) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts Debian's redis-server (/usr/bin/redis-server) on a free TCP port of 127.0.0.1, without
 * persistence (`--save '' --appendonly no`) in a temp folder, with `args` appended: for tests,
 * benchmarks, and trying a broker cluster (docs/scale.md). Resolves once it logs "Ready to accept
 * connections"; picks another port when the chosen one was taken meanwhile (5 attempts).
 * @throws Error when redis-server or redis-cli is not installed (with the apt-get line), or redis-server exits at start.
 */
export async function startRedisServer(args: string[] = []): Promise<RedisServer> {
  if (!existsSync(REDIS) || !existsSync(REDIS_CLI)) throw new Error(`${REDIS} or ${REDIS_CLI} not found: this needs Debian's redis-server (apt-get install redis-server; npm test installs it when run as root)`);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'fedmq-redis-'));
    const proc: ChildProcess = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const log: string[] = [];
    const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
    const onLine = (line: string) => {
      log.push(line);
      for (const w of waiters.splice(0)) (w.re.test(line) ? w.resolve(line) : waiters.push(w));
    };
    let rest = '';
    proc.stdout!.on('data', (b: Buffer) => {
      const lines = (rest + b.toString()).split('\n');
      rest = lines.pop()!;
      lines.forEach(onLine);
    });
    const logged = (re: RegExp) => new Promise<string>((resolve) => {
      const hit = log.find((l) => re.test(l));
      if (hit) resolve(hit);
      else waiters.push({ re, resolve });
    });
    const exited = once(proc, 'exit');
    const up = await Promise.race([logged(/ready to accept connections/i).then(() => true), exited.then(() => false)]);
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill();
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    };
    if (!up) {
      await stop();
      if (attempt < 5 && log.some((l) => /address already in use/i.test(l))) continue;
      throw new Error(`redis-server exited: ${log.join('\n')}`);
    }
    const cli = async (...a: string[]) => (await run(REDIS_CLI, ['-p', String(port), ...a])).stdout;
    return { url: `redis://127.0.0.1:${port}`, port, log, logged, cli, stop };
  }
}
