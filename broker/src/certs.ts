import { generateKeyPair as generateKeyPairCb, randomBytes } from 'node:crypto';
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCodes, FedmqError, ID_PATTERN } from '@fedmq/protocol';
import forge from 'node-forge';

const generateKeyPair = promisify(generateKeyPairCb);

/**
 * Development certificates for fedmq (docs/security.md, "TLS"): a CA, a server certificate and one
 * client certificate per node — enough for `mqtts://` with mutual TLS on a lab network. For
 * production use your organisation's PKI.
 */

/** Options of {@link makeDevCerts}. */
export interface DevCertsOptions {
  /**
   * Broker host names and IP addresses for the server certificate's SANs; `localhost`, `127.0.0.1`
   * and `::1` are always added. When empty and `DIR/server.pem` exists, the server certificate is
   * kept (so adding a client later does not replace it).
   */
  hosts: string[];
  /** Client ids (node ids, and e.g. the coordinator's username): one client certificate each, CN = the id. */
  nodes: string[];
  /** Validity in days. Default 825 (the longest Apple platforms accept for a server certificate). */
  days?: number;
  /** RSA key size in bits. Default 2048. */
  keyBits?: number;
}

/** Paths of the files {@link makeDevCerts} wrote. */
export interface DevCerts {
  /** `DIR/ca.pem`: the CA certificate clients and broker verify against. */
  ca: string;
  /** `DIR/ca-key.pem` (0600): the CA key — keep it off the devices. */
  caKey: string;
  /** `DIR/server.pem` and `DIR/server-key.pem` (0600). */
  server: { cert: string; key: string };
  /** Per id: `DIR/clients/{id}.pem` and `DIR/clients/{id}-key.pem` (0600). */
  clients: Record<string, { cert: string; key: string }>;
  /** True when an existing CA in `DIR` was reused. */
  reusedCa: boolean;
  /** True when the server certificate was (re)issued, false when an existing one was kept. */
  newServer: boolean;
}

interface KeyPair {
  privateKey: forge.pki.rsa.PrivateKey;
  publicKey: forge.pki.rsa.PublicKey;
  pem: string;
}

/** An RSA key pair made by node:crypto (OpenSSL; much faster than forge's JavaScript). */
async function newKeyPair(bits: number): Promise<KeyPair> {
  const { privateKey, publicKey } = await generateKeyPair('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { privateKey: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, publicKey: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey, pem: privateKey };
}

/** A positive, minimal-DER 128-bit serial number (hex). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x40;
  return b.toString('hex');
}

function newCert(subjectCn: string, publicKey: forge.pki.PublicKey, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60 * 60 * 1000); // an hour of clock skew
  cert.validity.notAfter = new Date(now + days * 24 * 60 * 60 * 1000);
  cert.setSubject([{ name: 'commonName', value: subjectCn }, { name: 'organizationName', value: 'fedmq development' }]);
  return cert;
}

async function writeSecret(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o600 });
  await chmod(path, 0o600); // writeFile's mode applies only to a new file
}

async function writePublic(path: string, pem: string): Promise<void> {
  await writeFile(path, pem, { mode: 0o644 });
  await chmod(path, 0o644);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

/**
 * Writes development certificates into `dir` (created if needed):
 *
 * - `ca.pem`, `ca-key.pem`: a self-signed CA (basicConstraints CA:true, keyCertSign). An existing
 *   pair in `dir` is reused, so running it again adds clients under the same CA;
 * - `server.pem`, `server-key.pem`: the broker's certificate (serverAuth), SANs = `hosts` plus
 *   localhost, 127.0.0.1, ::1 (DNS names as dNSName, addresses as iPAddress) — issued when
 *   `hosts` is not empty or there is no `server.pem` yet;
 * - `clients/{id}.pem`, `clients/{id}-key.pem` for each of `nodes` (clientAuth, CN = id).
 *
 * RSA keys (node:crypto), SHA-256 signatures (node-forge); keys are written with mode 0600.
 * @throws FedmqError FEDMQ_BAD_CONFIG when an id is not a valid node id or a host is empty.
 */
export async function makeDevCerts(dir: string, opts: DevCertsOptions): Promise<DevCerts> {
  const days = opts.days ?? 825;
  const bits = opts.keyBits ?? 2048;
  for (const id of opts.nodes) {
    if (!ID_PATTERN.test(id)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `invalid id ${JSON.stringify(id)}: expected 1-64 of [A-Za-z0-9_.-]`, { id });
  }
  for (const h of opts.hosts) {
    if (!h || /[\s/]/.test(h)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `invalid host ${JSON.stringify(h)}`, { host: h });
  }
  await mkdir(join(dir, 'clients'), { recursive: true });
  const out: DevCerts = {
    ca: join(dir, 'ca.pem'), caKey: join(dir, 'ca-key.pem'),
    server: { cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') },
    clients: {}, reusedCa: false, newServer: false,
  };

  let caCert: forge.pki.Certificate;
  let caKey: forge.pki.rsa.PrivateKey;
  if ((await exists(out.ca)) && (await exists(out.caKey))) {
    caCert = forge.pki.certificateFromPem(await readFile(out.ca, 'utf8'));
    caKey = forge.pki.privateKeyFromPem(await readFile(out.caKey, 'utf8')) as forge.pki.rsa.PrivateKey;
    out.reusedCa = true;
  } else {
    const kp = await newKeyPair(bits);
    caCert = newCert('fedmq development CA', kp.publicKey, days);
    caCert.setIssuer(caCert.subject.attributes);
    caCert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    caCert.sign(kp.privateKey, forge.md.sha256.create());
    caKey = kp.privateKey;
    await writeSecret(out.caKey, kp.pem);
    await writePublic(out.ca, forge.pki.certificateToPem(caCert));
  }
  const authorityKeyId = caCert.generateSubjectKeyIdentifier().getBytes();

  const issue = async (cn: string, extra: object[], certPath: string, keyPath: string) => {
    const kp = await newKeyPair(bits);
    const cert = newCert(cn, kp.publicKey, days);
    cert.setIssuer(caCert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'subjectKeyIdentifier' },
      { name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId },
      ...extra,
    ]);
    cert.sign(caKey, forge.md.sha256.create());
    await writeSecret(keyPath, kp.pem);
    await writePublic(certPath, forge.pki.certificateToPem(cert));
  };

  const hosts = [...new Set([...opts.hosts, 'localhost', '127.0.0.1', '::1'])];
  const altNames = hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h }));
  const serverCn = hosts[0];
  const jobs: Promise<void>[] = [];
  if (opts.hosts.length > 0 || !(await exists(out.server.cert)) || !(await exists(out.server.key))) {
    out.newServer = true;
    jobs.push(issue(serverCn, [{ name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames }], out.server.cert, out.server.key));
  }
  for (const id of new Set(opts.nodes)) {
    const paths = { cert: join(dir, 'clients', `${id}.pem`), key: join(dir, 'clients', `${id}-key.pem`) };
    out.clients[id] = paths;
    jobs.push(issue(id, [{ name: 'extKeyUsage', clientAuth: true }], paths.cert, paths.key));
  }
  await Promise.all(jobs);
  return out;
}
