// The CLI's smaller holes of issue 12: a password in the broker URL, a job id that is a path, an
// --out folder that is not empty, the coordinator's /metrics interface. Each runs the `fedmq`
// command as a process against real brokers on port 0.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, startBroker, type RunningBroker } from '@fedmq/broker';
import { splitBrokerUrl, withUrlCredentials } from './broker-url.ts';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));
type Failure = { code: number; stdout: string; stderr: string };
const fails = (args: string[], cwd?: string) => run(process.execPath, [bin, ...args], { cwd }).then(
  (r) => { throw new Error(`fedmq ${args.join(' ')} succeeded: ${r.stdout}`); },
  (e: Failure) => e,
);

let dir: string;
const started: ChildProcess[] = [];
const brokers: RunningBroker[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedmq-cli-hard-'));
});
afterAll(async () => {
  for (const c of started) {
    if (c.exitCode === null && c.signalCode === null) {
      const exited = once(c, 'exit');
      c.kill('SIGKILL');
      await exited;
    }
  }
  for (const b of brokers) await b.close();
  await rm(dir, { recursive: true, force: true });
});

/** A `fedmq coordinator` process; `until(re)` resolves with the first stdout/stderr line matching `re`, `stop()` sends SIGTERM and resolves with everything it printed. */
function coordinator(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [bin, '--log-level', 'info', 'coordinator', '--no-test-data', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
  });
  started.push(child);
  let stdout = '';
  let stderr = '';
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const onLine = (line: string) => {
    for (const w of [...waiters]) if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
  };
  createInterface({ input: child.stdout! }).on('line', (l) => { stdout += `${l}\n`; onLine(l); });
  createInterface({ input: child.stderr! }).on('line', (l) => { stderr += `${l}\n`; onLine(l); });
  return {
    until: (re: RegExp) => Promise.race([
      new Promise<string>((resolve) => waiters.push({ re, resolve })),
      exited.then((code) => { throw new Error(`coordinator exited (${code}) before ${re}:\n${stdout}\n${stderr}`); }),
    ]),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      return { code, stdout, stderr };
    },
  };
}

/** GET `url`: the HTTP status, or the connection error's code. */
function get(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    request(url, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); }).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)).end();
  });
}

describe('broker URLs with credentials', () => {
  it('splitBrokerUrl: the URL without user and password, the printed one with ***, both decoded', () => {
    expect(splitBrokerUrl('mqtt://ops:p%40ss%3Aword@broker.lan:1883')).toEqual({ url: 'mqtt://broker.lan:1883', shown: 'mqtt://ops:***@broker.lan:1883', username: 'ops', password: 'p@ss:word' });
    expect(splitBrokerUrl('wss://u:pw@[::1]:8443/mqtt?x=1')).toMatchObject({ url: 'wss://[::1]:8443/mqtt?x=1', shown: 'wss://u:***@[::1]:8443/mqtt?x=1' });
    expect(splitBrokerUrl('mqtt://pi-1@host')).toEqual({ url: 'mqtt://host', shown: 'mqtt://pi-1@host', username: 'pi-1', password: undefined });
    expect(splitBrokerUrl('mqtt://host:1883')).toEqual({ url: 'mqtt://host:1883', shown: 'mqtt://host:1883' });
    // the URL's credentials win over the flags, as when mqtt.js read them from the URL
    expect(withUrlCredentials({ broker: 'mqtt://a:b@h:1', username: 'x', password: 'y' }).flags).toEqual({ broker: 'mqtt://h:1', username: 'a', password: 'b' });
    expect(withUrlCredentials({ broker: 'mqtt://h:1', password: 'y' }).flags).toEqual({ broker: 'mqtt://h:1', username: undefined, password: 'y' });
    expect(() => withUrlCredentials({ broker: 'user:secret@host:1883' })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG', message: expect.not.stringContaining('secret') }));
  });

  it('fedmq coordinator logs in with the password of mqtt://user:pw@host and writes it to none of config.json, stdout and stderr', async () => {
    const creds = join(dir, 'creds.json');
    const password = 'Pa55@w0rd:url';
    await addCredential(creds, { username: 'coordinator', role: 'coordinator', jobs: ['demo'], password });
    const broker = await startBroker({ port: 0, host: '127.0.0.1', auth: creds });
    brokers.push(broker);
    const port = new URL(broker.url).port;
    const out = join(dir, 'run-url');
    const c = coordinator(['--broker', `mqtt://coordinator:${encodeURIComponent(password)}@127.0.0.1:${port}`, '--job', 'demo', '--metrics-port', '0', '--out', out]);
    // logged in: with --auth the broker refuses a client without the right password
    await c.until(/coordinator connected/);
    const { stdout, stderr } = await c.stop();
    const config = await readFile(join(out, 'config.json'), 'utf8');
    expect(stdout).toContain(`coordinator for job demo on mqtt://coordinator:***@127.0.0.1:${port};`);
    expect(JSON.parse(config)).toMatchObject({ broker: `mqtt://127.0.0.1:${port}`, username: 'coordinator' });
    for (const [what, text] of Object.entries({ config, stdout, stderr })) {
      expect(text, what).not.toContain(password);
      expect(text, what).not.toContain(encodeURIComponent(password));
      expect(text, what).not.toContain('Pa55');
    }
  });
});

describe('fedmq monitor with credentials in the URL', () => {
  it('logs in as the URL\'s user with client id <username>-monitor-<random>; prints the URL without the password', async () => {
    const creds = join(dir, 'creds-monitor.json');
    const password = 'monitor pa55word';
    await addCredential(creds, { username: 'ops', role: 'monitor', jobs: ['demo'], password });
    const broker = await startBroker({ port: 0, host: '127.0.0.1', auth: creds });
    brokers.push(broker);
    const ids: string[] = [];
    broker.aedes.on('client', (c) => ids.push(c.id));
    const port = new URL(broker.url).port;
    const mon = spawn(process.execPath, [bin, 'monitor', '--broker', `mqtt://ops:${encodeURIComponent(password)}@127.0.0.1:${port}`, '--job', 'demo', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(mon);
    let stderr = '';
    mon.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: mon.stdout! }).once('line', resolve);
      mon.once('exit', (code) => reject(new Error(`fedmq monitor exited (${code}): ${stderr}`)));
    });
    const exited = once(mon, 'exit');
    mon.kill('SIGTERM');
    await exited;
    expect(JSON.parse(first)).toMatchObject({ event: 'connected', broker: `mqtt://127.0.0.1:${port}` });
    expect(ids).toEqual([expect.stringMatching(/^ops-monitor-[a-z0-9]+$/)]);
    expect(first + stderr).not.toContain('pa55word');
  });
});

describe('job ids and output folders', () => {
  it.each([
    [['coordinator', '--broker', 'mqtt://127.0.0.1:1', '--job', '../../escaped']],
    [['coordinator', '--broker', 'mqtt://127.0.0.1:1', '--job', '../../escaped', '--out', 'x']],
    [['simulate', '--job', '../../escaped', '--nodes', '2']],
  ])('%j is refused (FEDMQ_BAD_CONFIG) and writes nothing', async (args) => {
    const cwd = join(dir, `job-${Math.random().toString(36).slice(2)}`, 'a', 'b');
    await mkdir(cwd, { recursive: true });
    const err = await fails(args, cwd);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain('fedmq: FEDMQ_BAD_CONFIG: --job "../../escaped": a job id is 1-64 of A-Z a-z 0-9 _ . -');
    expect(await readdir(cwd)).toEqual([]);
    expect(await readdir(join(cwd, '..', '..'))).toEqual(['a']);
  });

  it('an --out folder that is not empty is refused, its files untouched; with --force the coordinator writes its run there', async () => {
    const broker = await startBroker({ port: 0, host: '127.0.0.1' });
    brokers.push(broker);
    const out = join(dir, 'taken');
    await mkdir(out);
    await writeFile(join(out, 'notes.txt'), 'mine');
    await writeFile(join(out, 'checkpoint.msgpack'), 'an older run');
    const err = await fails(['coordinator', '--broker', broker.url, '--job', 'demo', '--metrics-port', '0', '--no-test-data', '--out', out]);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain(`fedmq: FEDMQ_BAD_CONFIG: --out ${out} is not empty (checkpoint.msgpack, notes.txt): give --force to write into it anyway`);
    expect((await readdir(out)).sort()).toEqual(['checkpoint.msgpack', 'notes.txt']);

    const c = coordinator(['--broker', broker.url, '--job', 'demo', '--metrics-port', '0', '--out', out, '--force']);
    await c.until(/coordinator connected/);
    expect((await c.stop()).stdout).toContain(`run folder ${out}`);
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))).toMatchObject({ job: 'demo', broker: broker.url });
    expect(await readFile(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    expect(existsSync(join(out, 'checkpoint.msgpack'))).toBe(false); // not this run's: a later --resume must not continue it
    expect(JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))).not.toHaveProperty('force');
  });

  it('an empty --out folder is used as it is; stopped with SIGTERM, the run leaves its report and model, no temporary file', async () => {
    const broker = await startBroker({ port: 0, host: '127.0.0.1' });
    brokers.push(broker);
    const out = await mkdtemp(join(dir, 'empty-'));
    const c = coordinator(['--broker', broker.url, '--job', 'demo', '--metrics-port', '0', '--out', out]);
    await c.until(/coordinator connected/);
    expect(await readdir(out)).toEqual(['config.json']);
    // stopped: the run ends with what it has, nothing half-written
    expect((await c.stop()).code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model', 'report.html']);
  });

  it('simulate --out and data split --out: refused when not empty, data split proceeds with --force', async () => {
    const out = join(dir, 'split');
    await mkdir(out);
    await writeFile(join(out, 'keep.csv'), 'x');
    const sim = await fails(['simulate', '--nodes', '2', '--rounds', '1', '--out', out]);
    expect(sim.stderr).toContain(`fedmq: FEDMQ_BAD_CONFIG: --out ${out} is not empty (keep.csv)`);
    const split = await fails(['data', 'split', '--dataset', 'telosb', '--partition', 'natural', '--out', out]);
    expect(split.stderr).toContain(`fedmq: FEDMQ_BAD_CONFIG: --out ${out} is not empty (keep.csv)`);
    expect(await readdir(out)).toEqual(['keep.csv']);
    const { stdout } = await run(process.execPath, [bin, 'data', 'split', '--dataset', 'telosb', '--partition', 'natural', '--out', out, '--force']);
    expect(stdout).toContain(`${join(out, 'mote-1')}:`);
    expect((await readdir(out)).sort()).toEqual(['keep.csv', 'mote-1', 'mote-2', 'mote-3', 'mote-4']);
    expect(await readFile(join(out, 'keep.csv'), 'utf8')).toBe('x');
  });
});

describe('the coordinator\'s /metrics interface', () => {
  let broker: RunningBroker;
  beforeAll(async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    brokers.push(broker);
  });

  // 127.0.0.2 is this machine too (127.0.0.0/8 is loopback on Linux), but a socket bound to 127.0.0.1 only is not reachable through it
  it('listens on 127.0.0.1 only by default', async () => {
    const c = coordinator(['--broker', broker.url, '--job', 'm1', '--metrics-port', '0', '--out', await mkdtemp(join(dir, 'm-'))]);
    const url = /Prometheus metrics: (\S+)/.exec(await c.until(/^Prometheus metrics: /))![1];
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(await get(url)).toBe(200);
    expect(await get(url.replace('127.0.0.1', '127.0.0.2'))).toBe('ECONNREFUSED');
    await c.stop();
  });

  it('--metrics-host 0.0.0.0 listens on every interface', async () => {
    const c = coordinator(['--broker', broker.url, '--job', 'm2', '--metrics-port', '0', '--metrics-host', '0.0.0.0', '--out', await mkdtemp(join(dir, 'm-'))]);
    const url = /Prometheus metrics: (\S+)/.exec(await c.until(/^Prometheus metrics: /))![1];
    expect(url).toMatch(/^http:\/\/localhost:\d+\/metrics$/);
    const port = new URL(url).port;
    expect(await get(`http://127.0.0.1:${port}/metrics`)).toBe(200);
    expect(await get(`http://127.0.0.2:${port}/metrics`)).toBe(200);
    await c.stop();
  });
});
