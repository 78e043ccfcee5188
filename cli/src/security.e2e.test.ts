import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCredentials, makeDevCerts, type DevCerts } from '@fedmq/broker';
import { Command } from 'commander';
import { brokerSecurityOptions, clientMqttOptions, parseByteRate, parseConnectionRate, parseSize, simulatedNodeMqtt, withBrokerSecurityOptions, type BrokerSecurityFlags } from './security.ts';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/fedmq.js', import.meta.url));
const fedmq = (args: string[], env: NodeJS.ProcessEnv = {}) => run(process.execPath, [bin, ...args], { env: { ...process.env, ...env } });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedmq-cli-sec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('fedmq auth', () => {
  it('add prints a generated password once, stores only its hash (mode 0600); list and remove', async () => {
    const file = join(dir, 'creds.json');
    const one = await fedmq(['auth', 'add', 'pi-1', '--file', file, '--job', 'demo']);
    const password = one.stdout.trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(one.stderr).toContain('node pi-1 (jobs: demo) saved in');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain(password);
    expect(await (await loadCredentials(file)).authenticate('pi-1', password)).toEqual({ username: 'pi-1', role: 'node', jobs: ['demo'] });

    const two = await fedmq(['auth', 'add', 'coordinator', 'ops', '--file', file, '--role', 'monitor', '--job', 'demo', '--job', 'other']);
    const lines = two.stdout.trim().split('\n').map((l) => l.split('\t'));
    expect(lines.map((l) => l[0])).toEqual(['coordinator', 'ops']);
    expect(lines[0][1]).not.toBe(lines[1][1]);

    await fedmq(['auth', 'add', 'coordinator', '--file', file, '--role', 'coordinator', '--job', '*', '--password', 'a chosen password']);
    const list = await fedmq(['auth', 'list', '--file', file]);
    expect(list.stdout).toMatch(/^USER\s+ROLE\s+JOBS\s+CREATED$/m);
    expect(list.stdout).toMatch(/^pi-1\s+node\s+demo\s+\d{4}-/m);
    expect(list.stdout).toMatch(/^coordinator\s+coordinator\s+\*\s+/m);
    expect(list.stdout).toMatch(/^ops\s+monitor\s+demo,other\s+/m);
    expect(list.stdout).not.toContain('hash');

    expect((await fedmq(['auth', 'remove', 'ops', '--file', file])).stdout).toBe('removed ops\n');
    const missing = await fedmq(['auth', 'remove', 'ops', '--file', file]).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 1 });
    expect((missing as { stderr: string }).stderr).toContain('no user ops');
    expect((await loadCredentials(file)).list().map((u) => u.username)).toEqual(['pi-1', 'coordinator']);
  });

  it('refuses bad input with a coded message', async () => {
    const file = join(dir, 'bad.json');
    const err = await fedmq(['auth', 'add', 'a/b', '--file', file, '--job', 'demo']).catch((e: { code: number; stderr: string }) => e);
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain('FEDMQ_BAD_CONFIG: invalid username');
    const noJob = await fedmq(['auth', 'add', 'pi-1', '--file', file]).catch((e: { code: number; stderr: string }) => e);
    expect((noJob as { stderr: string }).stderr).toContain("required option '--job <id>' not specified");
  });
});

describe('fedmq certs', () => {
  it('writes a CA, a server certificate and client certificates', async () => {
    const out = join(dir, 'pki-cli');
    const { stdout } = await fedmq(['certs', '--out', out, '--host', 'broker.lan', '--node', 'pi-1', '--node', 'coordinator']);
    expect(stdout).toContain(`new CA: ${join(out, 'ca.pem')}`);
    expect(stdout).toContain('hosts: broker.lan, localhost, 127.0.0.1, ::1');
    expect(stdout).toContain(`client pi-1: ${join(out, 'clients', 'pi-1.pem')} ${join(out, 'clients', 'pi-1-key.pem')}`);
    for (const f of ['ca-key.pem', 'server-key.pem', 'clients/pi-1-key.pem', 'clients/coordinator-key.pem']) expect((await stat(join(out, f))).mode & 0o777).toBe(0o600);
    const again = await fedmq(['certs', '--out', out, '--node', 'pi-2']);
    expect(again.stdout).toContain('reused CA');
    expect(again.stdout).toContain('server: kept');
  });
});

describe('flag parsing', () => {
  it('connection rate', () => {
    expect(parseConnectionRate('50/10s')).toEqual({ max: 50, perMs: 10_000 });
    expect(parseConnectionRate('5/1500ms')).toEqual({ max: 5, perMs: 1500 });
    expect(parseConnectionRate('off')).toBe(false);
    for (const bad of ['50', '0/1s', '5/0s', 'x/1s']) expect(() => parseConnectionRate(bad)).toThrow('connection rate must be');
  });

  it('byte sizes and the byte rate', () => {
    expect([parseSize('65536'), parseSize('64KiB'), parseSize('16MiB'), parseSize('1GiB'), parseSize('5MB'), parseSize('0')]).toEqual([65536, 65536, 16 * 2 ** 20, 2 ** 30, 5e6, 0]);
    for (const bad of ['', 'x', '-1', '1TiB', '1.5']) expect(() => parseSize(bad)).toThrow('byte count');
    expect(parseByteRate('16MiB/s,64MiB')).toEqual({ bytesPerSecond: 16 * 2 ** 20, burstBytes: 64 * 2 ** 20 });
    expect(parseByteRate('1MiB/s')).toEqual({ bytesPerSecond: 2 ** 20, burstBytes: 4 * 2 ** 20 });
    expect(parseByteRate('off')).toBe(false);
    for (const bad of ['16MiB', '0/s', 'x/s,1']) expect(() => parseByteRate(bad)).toThrow();
  });

  it('fedmq broker limit flags become startBroker limits; --no-loopback-exempt turns the exemption off alone', () => {
    const parse = (argv: string[]) => {
      const cmd = withBrokerSecurityOptions(new Command('broker').exitOverride());
      cmd.parse(argv, { from: 'user' });
      return brokerSecurityOptions(cmd.opts<BrokerSecurityFlags>(), false).limits;
    };
    expect(parse([])).toBeUndefined();
    expect(parse(['--no-loopback-exempt'])).toEqual({ exemptLoopback: false });
    expect(parse(['--connection-rate', 'off', '--byte-rate', '1MiB/s,2MiB', '--max-connections-per-address', '10', '--max-connections', '500', '--handshake-timeout-ms', '5000',
      '--connect-timeout-ms', '20000', '--max-queued-messages', '1000', '--max-queued-bytes', '256MiB', '--max-subscriptions', '50'])).toEqual({
      connectionRate: false, byteRate: { bytesPerSecond: 2 ** 20, burstBytes: 2 * 2 ** 20 }, maxConnectionsPerAddress: 10, maxConnections: 500, handshakeTimeoutMs: 5000,
      connectTimeoutMs: 20000, maxQueuedMessages: 1000, maxQueuedBytes: 256 * 2 ** 20, maxSubscriptions: 50,
    });
    expect(() => parse(['--max-subscriptions', '-1'])).toThrow();
  });

  it('client options: the default username applies only with a password or certificate; --cert needs --key', async () => {
    const certs = await makeDevCerts(join(dir, 'pki-flags'), { hosts: [], nodes: ['n1'] });
    expect(clientMqttOptions({}, 'n1')).toEqual({});
    expect(clientMqttOptions({ password: 'p' }, 'n1')).toEqual({ username: 'n1', password: 'p' });
    expect(clientMqttOptions({ username: 'u', password: 'p', ca: certs.ca }, 'n1')).toMatchObject({ username: 'u', password: 'p', ca: expect.stringContaining('BEGIN CERTIFICATE') });
    expect(clientMqttOptions({ cert: certs.clients.n1.cert, key: certs.clients.n1.key }, 'n1')).toMatchObject({ username: 'n1', cert: expect.any(String), key: expect.stringContaining('PRIVATE KEY') });
    expect(() => clientMqttOptions({ cert: certs.clients.n1.cert })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(() => clientMqttOptions({ ca: join(dir, 'nope.pem') })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(simulatedNodeMqtt({})).toBeUndefined();
    expect(simulatedNodeMqtt({ password: 'p' })!('node-007')).toEqual({ username: 'node-007', password: 'p', ca: undefined, cert: undefined, key: undefined });
    expect(() => brokerSecurityOptions({ tlsCert: certs.server.cert }, false)).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(() => brokerSecurityOptions({ requireClientCert: true }, false)).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(brokerSecurityOptions({ tlsCert: certs.server.cert, tlsKey: certs.server.key, tlsPort: 0 }, false)).toMatchObject({ port: null, tlsPort: 0 });
    expect(brokerSecurityOptions({ tlsCert: certs.server.cert, tlsKey: certs.server.key, tlsPort: 0 }, true)).not.toHaveProperty('port');
  });
});

describe('fedmq broker --auth with TLS and mutual TLS, end to end', () => {
  let broker: ChildProcess | undefined;
  let url = '';
  let certs: DevCerts;
  const pem: Record<string, string> = {};
  const pw: Record<string, string> = {};

  beforeAll(async () => {
    certs = await makeDevCerts(join(dir, 'pki-e2e'), { hosts: [], nodes: ['pi-1', 'pi-2', 'ops'] });
    for (const [k, p] of Object.entries({ ca: certs.ca, pi1: certs.clients['pi-1'].cert, pi1Key: certs.clients['pi-1'].key, pi2: certs.clients['pi-2'].cert, pi2Key: certs.clients['pi-2'].key })) pem[k] = await readFile(p, 'utf8');
    const creds = join(dir, 'e2e-creds.json');
    pw['pi-1'] = (await fedmq(['auth', 'add', 'pi-1', '--file', creds, '--job', 'demo'])).stdout.trim();
    pw.ops = (await fedmq(['auth', 'add', 'ops', '--file', creds, '--role', 'monitor', '--job', 'demo'])).stdout.trim();
    broker = spawn(process.execPath, [
      bin, '--log-level', 'warn', 'broker', '--host', '127.0.0.1', '--auth', creds, '--tls-cert', certs.server.cert, '--tls-key', certs.server.key,
      '--tls-ca', certs.ca, '--require-client-cert', '--tls-port', '0',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    broker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = createInterface({ input: broker.stdout! });
    url = await new Promise<string>((resolve, reject) => {
      lines.on('line', (l) => {
        const m = /listening on (mqtts:\/\/127\.0\.0\.1:\d+)/.exec(l);
        if (m) resolve(m[1]);
      });
      broker!.once('exit', (code) => reject(new Error(`fedmq broker exited (${code}): ${stderr}`)));
    });
  });
  afterAll(async () => {
    if (broker && broker.exitCode === null && broker.signalCode === null) {
      const exited = once(broker, 'exit');
      broker.kill('SIGTERM');
      await exited;
    }
  });

  const attempt = (opts: mqtt.IClientOptions) => mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts }).then(
    async (c) => { await c.endAsync(); return 0; },
    (err: { code?: number | string; message: string }) => err.code ?? err.message,
  );

  it('serves mqtts only; a node with its certificate and password connects and publishes its status', async () => {
    expect(url).toMatch(/^mqtts:/);
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, clientId: 'fedmq:demo:node:pi-1', ...clientMqttOptions({ password: pw['pi-1'], ca: certs.ca, cert: certs.clients['pi-1'].cert, key: certs.clients['pi-1'].key }, 'pi-1') });
    await c.publishAsync('fedmq/v1/demo/nodes/pi-1/status', '{}', { qos: 1 });
    await c.endAsync();
  });

  it('a client without the CA cannot verify the broker', async () => {
    expect(await attempt({ clientId: 'fedmq:demo:node:pi-1', username: 'pi-1', password: pw['pi-1'], cert: pem.pi1, key: pem.pi1Key })).toMatch(/self-signed|SELF_SIGNED/);
  });

  it('a client certificate whose CN is not the username is refused (CONNACK 5)', async () => {
    expect(await attempt({ clientId: 'fedmq:demo:node:pi-1', username: 'pi-1', password: pw['pi-1'], ca: pem.ca, cert: pem.pi2, key: pem.pi2Key })).toBe(5);
  });

  it('fedmq monitor connects with --username, FEDMQ_PASSWORD, --ca, --cert and --key', async () => {
    const mon = spawn(process.execPath, [bin, 'monitor', '--broker', url, '--job', 'demo', '--json', '--username', 'ops', '--ca', certs.ca, '--cert', certs.clients.ops.cert, '--key', certs.clients.ops.key], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEDMQ_PASSWORD: pw.ops },
    });
    try {
      const first = await new Promise<{ event: string }>((resolve, reject) => {
        createInterface({ input: mon.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { event: string }));
        mon.once('exit', (code) => reject(new Error(`fedmq monitor exited (${code})`)));
      });
      expect(first).toMatchObject({ event: 'connected', topics: expect.arrayContaining(['fedmq/v2/demo/nodes/+/status', 'fedmq/v2/demo/coordinator/stage']) });
    } finally {
      const exited = once(mon, 'exit');
      mon.kill('SIGTERM');
      await exited;
    }
  });
});
