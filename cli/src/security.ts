import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ROLES, addCredential, loadCredentials, makeDevCerts, removeCredential, type BrokerLimits, type BrokerOptions, type ByteRate, type ConnectionRate, type Role } from '@fedmq/broker';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { PASSWORD_ENV, readPem } from './client-security.ts';

/**
 * The security side of the `fedmq` command (docs/security.md): `fedmq auth …`, `fedmq certs`, the
 * broker's `--auth/--tls-*` flags, and (re-exported from client-security.ts) the clients'
 * `--username/--password/--ca/--cert/--key`.
 */

const collect = (v: string, prev: string[] = []) => [...prev, v];

/**
 * Adds `fedmq auth add|list|remove` to `program`: manage the broker's credentials file (JSON,
 * mode 0600; format in docs/security.md).
 *
 * - `auth add USER… --file F --job J… [--role node|coordinator|monitor] [--password P]` adds or
 *   replaces users and prints each password once (stdout: the password alone for one user, else
 *   `USER<TAB>PASSWORD` lines; what happened goes to stderr);
 * - `auth list --file F` prints `USER ROLE JOBS CREATED`, never hashes;
 * - `auth remove USER… --file F`.
 */
export function registerAuthCommand(program: Command): void {
  const auth = program.command('auth').description('manage the broker\'s users (credentials file for `fedmq broker --auth`)');
  auth
    .command('add')
    .description('add users (or give them a new password); prints each password once')
    .argument('<username...>', 'user names; for role node, the node ids')
    .requiredOption('--file <path>', 'credentials file (created if missing, mode 0600)')
    .addOption(new Option('--role <role>', 'what the users may do (docs/security.md)').choices([...ROLES]).default('node'))
    .requiredOption('--job <id>', 'job the users take part in; repeat for several, "*" for every job', collect)
    .option('--password <password>', 'the password (at least 8 characters); default: a random one per user')
    .action(async (usernames: string[], o: { file: string; role: Role; job: string[]; password?: string }) => {
      const jobs = o.job.includes('*') ? '*' : o.job;
      const lines: string[] = [];
      for (const username of usernames) {
        const password = await addCredential(o.file, { username, role: o.role, jobs, password: o.password });
        process.stderr.write(`${o.role} ${username} (jobs: ${jobs === '*' ? '*' : jobs.join(', ')}) saved in ${o.file}${o.password ? '' : '; its password is shown once below'}\n`);
        lines.push(usernames.length === 1 ? password : `${username}\t${password}`);
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });
  auth
    .command('list')
    .description('list the users of a credentials file')
    .requiredOption('--file <path>', 'credentials file')
    .action(async (o: { file: string }) => {
      const users = (await loadCredentials(o.file)).list();
      const rows = [['USER', 'ROLE', 'JOBS', 'CREATED'], ...users.map((u) => [u.username, u.role, u.jobs === '*' ? '*' : u.jobs.join(','), u.created ?? '-'])];
      const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
      process.stdout.write(rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n');
    });
  auth
    .command('remove')
    .description('remove users from a credentials file (restart the broker to apply)')
    .argument('<username...>', 'user names')
    .requiredOption('--file <path>', 'credentials file')
    .action(async (usernames: string[], o: { file: string }) => {
      let missing = 0;
      for (const username of usernames) {
        if (await removeCredential(o.file, username)) process.stdout.write(`removed ${username}\n`);
        else {
          missing++;
          process.stderr.write(`fedmq: no user ${username} in ${o.file}\n`);
        }
      }
      if (missing > 0) process.exitCode = 1;
    });
}

/**
 * Adds `fedmq certs --out DIR [--host NAME…] [--node ID…] [--days N]` to `program`: development
 * certificates (a CA, a server certificate, a client certificate per id) with `makeDevCerts`.
 */
export function registerCertsCommand(program: Command): void {
  program
    .command('certs')
    .description('make development TLS certificates: a CA, the broker\'s server certificate and one client certificate per node (reuses an existing CA in --out)')
    .requiredOption('--out <dir>', 'folder for ca.pem, server.pem, clients/ID.pem and their keys')
    .option('--host <name>', 'broker host name or IP address for the server certificate (repeat; localhost and 127.0.0.1 are always included; without --host an existing server certificate is kept)', collect, [])
    .option('--node <id>', 'client certificate with CN = id: a node id, or the coordinator\'s or a monitor\'s username (repeat)', collect, [])
    .option('--days <n>', 'validity in days', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('days must be an integer ≥ 1');
      return n;
    }, 825)
    .action(async (o: { out: string; host: string[]; node: string[]; days: number }) => {
      const out = await makeDevCerts(resolve(o.out), { hosts: o.host, nodes: o.node, days: o.days });
      process.stdout.write(`${out.reusedCa ? 'reused' : 'new'} CA: ${out.ca} (key ${out.caKey}: keep it off the devices)\n`);
      if (out.newServer) process.stdout.write(`server: ${out.server.cert} ${out.server.key} (hosts: ${[...new Set([...o.host, 'localhost', '127.0.0.1', '::1'])].join(', ')})\n`);
      else process.stdout.write(`server: kept ${out.server.cert} (give --host to issue a new one)\n`);
      for (const [id, p] of Object.entries(out.clients)) process.stdout.write(`client ${id}: ${p.cert} ${p.key}\n`);
    });
}

/** Broker flags parsed by {@link withBrokerSecurityOptions}. */
export interface BrokerSecurityFlags {
  auth?: string;
  maxPacketBytes?: number;
  connectionRate?: ConnectionRate | false;
  /** `--no-loopback-exempt` makes this false. */
  loopbackExempt?: boolean;
  byteRate?: ByteRate | false;
  maxConnectionsPerAddress?: number;
  maxConnections?: number;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxQueuedMessages?: number;
  maxQueuedBytes?: number;
  maxSubscriptions?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requestClientCert?: boolean;
  requireClientCert?: boolean;
  tlsPort?: number;
}

/** Parses `--connection-rate`: `MAX/PERIOD` with the period in s or ms (`50/10s`, `5/1000ms`), or `off`. */
export function parseConnectionRate(v: string): ConnectionRate | false {
  if (v === 'off' || v === '0') return false;
  const m = /^(\d+)\/(\d+(?:\.\d+)?)(s|ms)$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[2]) <= 0) throw new InvalidArgumentError('connection rate must be MAX/PERIOD, e.g. 50/10s or 5/1000ms, or off');
  return { max: Number(m[1]), perMs: Number(m[2]) * (m[3] === 's' ? 1000 : 1) };
}

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3 };

/** Parses a byte count: an integer with an optional unit (`65536`, `64KiB`, `16MiB`, `1GiB`, `5MB`). */
export function parseSize(v: string, name = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?$/.exec(v.trim());
  const n = m ? Number(m[1]) * (SIZE_UNITS[m[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a byte count such as 65536, 64KiB, 16MiB or 1GiB`);
  return n;
}

/** Parses `--byte-rate`: `RATE/s[,BURST]` in bytes with units (`16MiB/s,64MiB`; burst default 4 × the rate), or `off`. */
export function parseByteRate(v: string): ByteRate | false {
  if (v === 'off' || v === '0') return false;
  const m = /^([^/,]+)\/s(?:,(.+))?$/.exec(v);
  if (!m) throw new InvalidArgumentError('byte rate must be RATE/s[,BURST], e.g. 16MiB/s,64MiB, or off');
  const bytesPerSecond = parseSize(m[1], 'byte rate');
  const burstBytes = m[2] === undefined ? 4 * bytesPerSecond : parseSize(m[2], 'byte rate burst');
  if (bytesPerSecond < 1 || burstBytes < 1) throw new InvalidArgumentError('byte rate and burst must be at least 1 byte');
  return { bytesPerSecond, burstBytes };
}

/** Adds the broker's security flags: `--auth`, the limits (`--max-packet-bytes`, `--connection-rate`, `--byte-rate`, …), `--tls-*`. */
export function withBrokerSecurityOptions(cmd: Command): Command {
  const positiveInt = (name: string, min: number) => (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
  return cmd
    .option('--auth <file>', 'require a username and password from this credentials file (`fedmq auth add`) and enforce the topic ACL')
    .option('--max-packet-bytes <n>', 'largest MQTT packet accepted; bigger ones close the connection (default 16 MiB)', positiveInt('max-packet-bytes', 2))
    .option('--connection-rate <max/period>', 'new connections per remote address, e.g. 50/10s (the default), or off; loopback is exempt', parseConnectionRate)
    .option('--no-loopback-exempt', 'apply the per-address limits (connection rate, open connections, byte rate) to 127.0.0.1 and ::1 too (behind a proxy on the same host)')
    .option('--byte-rate <rate/s,burst>', 'bytes received per connection, e.g. 16MiB/s,64MiB (the default), or off; over it the broker stops reading until the bucket refills; authenticated coordinators and loopback are exempt', parseByteRate)
    .option('--max-connections-per-address <n>', 'connections open at once from one address (default 100; 0 = no cap); loopback is exempt', positiveInt('max-connections-per-address', 0))
    .option('--max-connections <n>', 'connections open at once in total (default 10,000, or the open-file limit minus 64 if lower; 0 = no cap)', positiveInt('max-connections', 0))
    .option('--handshake-timeout-ms <ms>', 'time a TLS handshake or WebSocket upgrade may take (default 10000)', positiveInt('handshake-timeout-ms', 1))
    .option('--connect-timeout-ms <ms>', 'time until the MQTT CONNECT must have arrived (default 30000)', positiveInt('connect-timeout-ms', 1))
    .option('--max-queued-messages <n>', 'QoS 1 messages queued per persistent session, beyond that new ones are dropped for it (default 100000; 0 = no cap; memory persistence)', positiveInt('max-queued-messages', 0))
    .option('--max-queued-bytes <size>', 'payload bytes queued per persistent session, e.g. 1GiB (the default); 0 = no cap; memory persistence', (v: string) => parseSize(v, 'max-queued-bytes'))
    .option('--max-subscriptions <n>', 'subscriptions per client, its stored session included (default 100; 0 = no cap)', positiveInt('max-subscriptions', 0))
    .option('--tls-cert <file>', 'server certificate (PEM): serve MQTT over TLS on --tls-port and HTTPS/wss on --http-port; plain MQTT only if --port is given')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--tls-ca <file>', 'CA certificate (PEM) that client certificates must chain to')
    .option('--request-client-cert', 'ask clients for a certificate; one presented must be valid and have CN = the MQTT username')
    .option('--require-client-cert', 'require a valid client certificate (mutual TLS) with CN = the MQTT username')
    .option('--tls-port <port>', 'TCP port for MQTT over TLS', positiveInt('tls-port', 0), 8883);
}

/**
 * Broker options for the flags of {@link withBrokerSecurityOptions}: reads the PEM files; with TLS
 * and no explicit `--port`, no plain MQTT listener.
 * @throws FedmqError FEDMQ_BAD_CONFIG on a missing file, `--tls-cert` without `--tls-key` (or the
 *   reverse), or client certificate flags without TLS.
 */
export function brokerSecurityOptions(o: BrokerSecurityFlags, portGiven: boolean): Partial<BrokerOptions> {
  const out: Partial<BrokerOptions> = {};
  if (o.auth) out.auth = resolve(o.auth);
  const limits: BrokerLimits = {
    maxPacketBytes: o.maxPacketBytes, connectionRate: o.connectionRate, byteRate: o.byteRate, maxConnectionsPerAddress: o.maxConnectionsPerAddress, maxConnections: o.maxConnections,
    handshakeTimeoutMs: o.handshakeTimeoutMs, connectTimeoutMs: o.connectTimeoutMs, maxQueuedMessages: o.maxQueuedMessages, maxQueuedBytes: o.maxQueuedBytes, maxSubscriptions: o.maxSubscriptions,
    ...(o.loopbackExempt === false ? { exemptLoopback: false } : {}),
  };
  for (const k of Object.keys(limits) as (keyof BrokerLimits)[]) if (limits[k] === undefined) delete limits[k];
  if (Object.keys(limits).length > 0) out.limits = limits;
  if (!o.tlsCert !== !o.tlsKey) throw new FedmqError(ErrorCodes.BAD_CONFIG, '--tls-cert and --tls-key go together');
  if (!o.tlsCert && (o.tlsCa || o.requestClientCert || o.requireClientCert)) throw new FedmqError(ErrorCodes.BAD_CONFIG, '--tls-ca, --request-client-cert and --require-client-cert need --tls-cert and --tls-key');
  if (o.tlsCert && o.tlsKey) {
    out.tls = {
      cert: readPem('--tls-cert', o.tlsCert), key: readPem('--tls-key', o.tlsKey), ca: o.tlsCa ? readPem('--tls-ca', o.tlsCa) : undefined,
      requestClientCert: o.requestClientCert, requireClientCert: o.requireClientCert,
    };
    out.tlsPort = o.tlsPort;
    if (!portGiven) out.port = null;
  }
  return out;
}

// the clients' flags: client-security.ts (which `fedmq node` loads without this file)
export { PASSWORD_ENV, clientMqttOptions, simulatedNodeMqtt, withClientSecurityOptions, type ClientSecurityFlags } from './client-security.ts';
