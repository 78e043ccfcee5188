import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { topics } from '@fedmq/protocol';
import mqtt, { type IClientOptions } from 'mqtt';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, loadCredentials, type Credentials, type ScryptParams } from './auth.ts';
import { makeDevCerts, type DevCerts } from './certs.ts';
import { startBroker, type RunningBroker } from './index.ts';
import { clientCertProblem, tlsServerOptions } from './tls.ts';

const FAST: ScryptParams = { N: 1024, r: 8, p: 1, keylen: 32 };
let dir: string;
let certs: DevCerts;
let foreign: DevCerts;
let credentials: Credentials;
const pw: Record<string, string> = {};
const pem: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedmq-tls-'));
  certs = await makeDevCerts(join(dir, 'pki'), { hosts: ['broker.example', '10.1.2.3'], nodes: ['A', 'B'] });
  foreign = await makeDevCerts(join(dir, 'other-pki'), { hosts: [], nodes: ['A'] });
  const file = join(dir, 'creds.json');
  pw.A = await addCredential(file, { username: 'A', role: 'node', jobs: ['j'] }, FAST);
  pw.B = await addCredential(file, { username: 'B', role: 'node', jobs: ['j'] }, FAST);
  credentials = await loadCredentials(file);
  for (const [k, path] of Object.entries({ ca: certs.ca, cert: certs.server.cert, key: certs.server.key, aCert: certs.clients.A.cert, aKey: certs.clients.A.key, bCert: certs.clients.B.cert, bKey: certs.clients.B.key, foreignCert: foreign.clients.A.cert, foreignKey: foreign.clients.A.key })) {
    pem[k] = await readFile(path, 'utf8');
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeDevCerts', () => {
  it('writes a CA, a server certificate for the hosts and localhost, and one client certificate per node; keys 0600', async () => {
    const ca = new X509Certificate(pem.ca);
    expect(ca.ca).toBe(true);
    const server = new X509Certificate(pem.cert);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkIssued(ca)).toBe(true);
    for (const san of ['DNS:broker.example', 'DNS:localhost', 'IP Address:10.1.2.3', 'IP Address:127.0.0.1']) expect(server.subjectAltName).toContain(san);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    const a = new X509Certificate(pem.aCert);
    expect(a.subject).toContain('CN=A');
    expect(a.verify(ca.publicKey)).toBe(true);
    expect(a.keyUsage).toContain('1.3.6.1.5.5.7.3.2'); // clientAuth
    expect(a.ca).toBe(false);
    for (const key of [certs.caKey, certs.server.key, certs.clients.A.key, certs.clients.B.key]) expect((await stat(key)).mode & 0o777).toBe(0o600);
    expect((await stat(certs.ca)).mode & 0o777).toBe(0o644);
    expect(new X509Certificate(pem.foreignCert).verify(ca.publicKey)).toBe(false);
  });

  it('reuses the CA of the folder to add clients later', async () => {
    const more = await makeDevCerts(join(dir, 'pki'), { hosts: [], nodes: ['C'] });
    expect([more.reusedCa, more.newServer]).toEqual([true, false]);
    expect(await readFile(more.ca, 'utf8')).toBe(pem.ca);
    expect(await readFile(more.server.cert, 'utf8')).toBe(pem.cert); // kept: no hosts given
    expect(new X509Certificate(await readFile(more.clients.C.cert, 'utf8')).verify(new X509Certificate(pem.ca).publicKey)).toBe(true);
  });

  it('refuses an id that is not a node id', async () => {
    await expect(makeDevCerts(join(dir, 'x'), { hosts: [], nodes: ['../etc'] })).rejects.toMatchObject({ code: 'FEDMQ_BAD_CONFIG' });
  });
});

describe('TLS options and client certificate rules', () => {
  it('needs a CA to ask for client certificates', () => {
    expect(() => tlsServerOptions({ cert: 'c', key: 'k', requireClientCert: true })).toThrow(expect.objectContaining({ code: 'FEDMQ_BAD_CONFIG' }));
    expect(tlsServerOptions({ cert: 'c', key: 'k', ca: 'a', requestClientCert: true })).toMatchObject({ requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' });
    expect(tlsServerOptions({ cert: 'c', key: 'k', ca: 'a', requireClientCert: true })).toMatchObject({ requestCert: true, rejectUnauthorized: true });
  });

  it.each([
    [undefined, 'A', undefined],
    [{ authorized: true, cn: 'A' }, 'A', undefined],
    [{ authorized: true, cn: 'B' }, 'A', 'client certificate CN "B" is not the username "A"'],
    [{ authorized: true, cn: 'A' }, undefined, 'client certificate CN "A" is not the username ""'],
    [{ authorized: false, cn: 'A', error: 'UNABLE_TO_GET_ISSUER_CERT' }, 'A', 'client certificate not verified (UNABLE_TO_GET_ISSUER_CERT)'],
    [{ authorized: true }, 'A', 'client certificate has no single subject CN'],
  ])('peer %j, username %s → %s', (peer, username, problem) => {
    expect(clientCertProblem(peer, username)).toBe(problem);
  });
});

describe('mqtts and wss with auth and mutual TLS', () => {
  const brokers: RunningBroker[] = [];
  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });
  const start = async (tls: { requestClientCert?: boolean; requireClientCert?: boolean }, httpPort?: number) => {
    const b = await startBroker({ host: '127.0.0.1', tlsPort: 0, httpPort, httpAssets: new Map(), auth: credentials, tls: { cert: pem.cert, key: pem.key, ca: pem.ca, ...tls } });
    brokers.push(b);
    return b;
  };
  /** 0 when it connected (then disconnects), the CONNACK code when refused, else the error's code or message. */
  // allowRetries false: a connection closed without an error rejects too (instead of waiting forever)
  const attempt = (url: string, opts: IClientOptions) => mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts }, false).then(
    async (c) => { await c.endAsync(); return 0; },
    (err: { code?: number | string; message: string }) => err.code ?? err.message,
  );
  const rejections = async (b: RunningBroker) => {
    const m = new Map<string, number>();
    for (const v of (await b.metrics.getSingleMetric('fedmq_broker_rejections_total')!.get()).values) m.set(String(v.labels.reason), v.value);
    return m;
  };
  const nodeA = { clientId: 'fedmq:j:node:A', username: 'A', password: pw.A };

  it('serves only mqtts when TLS is on; a node with its certificate and password connects and publishes', async () => {
    const b = await start({ requestClientCert: true });
    expect(b.url).toBe(b.tlsUrl);
    expect(b.url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const c = await mqtt.connectAsync(b.url, { reconnectPeriod: 0, ...nodeA, password: pw.A, ca: pem.ca, cert: pem.aCert, key: pem.aKey });
    await c.publishAsync(topics.nodeStatus('j', 'A'), '{}', { qos: 1 });
    await c.endAsync();
    // the certificate is optional with requestClientCert: the password alone is enough
    expect(await attempt(b.url, { ...nodeA, password: pw.A, ca: pem.ca })).toBe(0);
  });

  it('a client without the CA cannot verify the broker', async () => {
    const b = await start({ requestClientCert: true });
    expect(await attempt(b.url, { ...nodeA, password: pw.A })).toMatch(/SELF_SIGNED|UNABLE_TO|CERT/);
    // verifying against the wrong CA fails too
    expect(await attempt(b.url, { ...nodeA, password: pw.A, ca: await readFile(foreign.ca, 'utf8') })).toMatch(/SELF_SIGNED|UNABLE_TO|CERT/);
  });

  it('refuses a client certificate whose CN is not the username, or that the CA did not sign (CONNACK 5)', async () => {
    const b = await start({ requestClientCert: true });
    expect(await attempt(b.url, { ...nodeA, password: pw.A, ca: pem.ca, cert: pem.bCert, key: pem.bKey })).toBe(5);
    expect(await attempt(b.url, { ...nodeA, password: pw.A, ca: pem.ca, cert: pem.foreignCert, key: pem.foreignKey })).toBe(5);
    // the right certificate does not replace the password
    expect(await attempt(b.url, { ...nodeA, password: 'wrong password', ca: pem.ca, cert: pem.aCert, key: pem.aKey })).toBe(4);
    expect((await rejections(b)).get('client_cert')).toBe(2);
  });

  it('with requireClientCert, the handshake fails without a certificate', async () => {
    const b = await start({ requireClientCert: true });
    const result = await attempt(b.url, { ...nodeA, password: pw.A, ca: pem.ca });
    expect(result).not.toBe(0);
    expect(typeof result).toBe('string');
    expect((await rejections(b)).get('tls_handshake')).toBe(1);
    expect(await attempt(b.url, { ...nodeA, password: pw.A, ca: pem.ca, cert: pem.aCert, key: pem.aKey })).toBe(0);
  });

  it('serves wss on the HTTPS port, with the same rules', async () => {
    const b = await start({ requestClientCert: true }, 0);
    expect(b.wsUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    expect(b.httpUrl).toMatch(/^https:/);
    expect(await attempt(b.wsUrl!, { ...nodeA, password: pw.A, ca: pem.ca, cert: pem.aCert, key: pem.aKey })).toBe(0);
    expect(await attempt(b.wsUrl!, { ...nodeA, password: pw.A, ca: pem.ca, cert: pem.bCert, key: pem.bKey })).toBe(5);
    expect(await attempt(b.wsUrl!, { ...nodeA, password: pw.A })).not.toBe(0);
  });

  it('applies the connection rate to TLS (before the handshake) and WebSocket upgrades (429)', async () => {
    const b = await startBroker({
      host: '127.0.0.1', tlsPort: 0, httpPort: 0, httpAssets: new Map(), tls: { cert: pem.cert, key: pem.key },
      limits: { connectionRate: { max: 2, perMs: 60_000, exemptLoopback: false } },
    });
    brokers.push(b);
    const tlsClient = await mqtt.connectAsync(b.tlsUrl!, { reconnectPeriod: 0, ca: pem.ca });
    const wsClient = await mqtt.connectAsync(b.wsUrl!, { reconnectPeriod: 0, ca: pem.ca });
    expect(await attempt(b.tlsUrl!, { ca: pem.ca })).not.toBe(0);
    expect(await attempt(b.wsUrl!, { ca: pem.ca })).not.toBe(0);
    const upgrade = new WebSocket(b.wsUrl!, 'mqtt', { ca: pem.ca });
    upgrade.on('error', () => {}); // the aborted upgrade
    const [req, res] = (await once(upgrade, 'unexpected-response')) as [{ destroy(): void }, { statusCode: number }];
    expect(res.statusCode).toBe(429);
    req.destroy();
    const r = await rejections(b);
    expect(r.get('connection_rate')).toBe(3);
    expect(r.get('tls_handshake')).toBe(0); // refused before the handshake, not counted twice
    expect(b.aedes.connectedClients).toBe(2);
    await Promise.all([tlsClient.endAsync(), wsClient.endAsync()]);
  });

  it('closes a TCP connection to the TLS port that never starts the handshake (handshake timeout), and caps idle sockets per address before TLS', async () => {
    const b = await startBroker({
      host: '127.0.0.1', tlsPort: 0, httpPort: 0, httpAssets: new Map(), tls: { cert: pem.cert, key: pem.key },
      limits: { handshakeTimeoutMs: 200, maxConnectionsPerAddress: 2, exemptLoopback: false },
    });
    brokers.push(b);
    const plain = netConnect(b.tlsPort!, '127.0.0.1');
    plain.on('error', () => {});
    await once(plain, 'connect');
    await once(plain, 'close'); // sent nothing: closed after 200 ms
    const https = netConnect(b.httpPort!, '127.0.0.1');
    https.on('error', () => {});
    await once(https, 'connect');
    await once(https, 'close');
    let r = await rejections(b);
    expect([r.get('handshake_timeout'), r.get('tls_handshake')]).toEqual([2, 0]);
    // a real client completes its handshake in time
    const c = await mqtt.connectAsync(b.tlsUrl!, { reconnectPeriod: 0, ca: pem.ca });
    // two open from this address (c and an idle one): the third is destroyed before any TLS work
    const idle = netConnect(b.tlsPort!, '127.0.0.1');
    idle.on('error', () => {});
    await once(idle, 'connect');
    const third = netConnect(b.tlsPort!, '127.0.0.1');
    third.on('error', () => {});
    await once(third, 'close');
    r = await rejections(b);
    expect(r.get('connections_per_address')).toBe(1);
    idle.destroy();
    await c.endAsync();
  });

  it('can serve plain MQTT next to mqtts when a port is given explicitly', async () => {
    const b = await startBroker({ host: '127.0.0.1', port: 0, tlsPort: 0, tls: { cert: pem.cert, key: pem.key } });
    brokers.push(b);
    expect(b.url).toMatch(/^mqtt:\/\//);
    expect(await attempt(b.url, {})).toBe(0);
    expect(await attempt(b.tlsUrl!, { ca: pem.ca })).toBe(0);
  });
});
