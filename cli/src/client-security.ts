/**
 * The MQTT clients' security flags (`--username/--password/--ca/--cert/--key`), apart from
 * security.ts (broker flags, `fedmq auth`, `fedmq certs`) so that `fedmq node` does not load the
 * broker (docs/scale.md, "Edge footprint").
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import type { IClientOptions } from 'mqtt';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/** Environment variable the CLI reads the client password from when `--password` is not given. */
export const PASSWORD_ENV = 'FEDMQ_PASSWORD';

/**
 * The text of the PEM file a flag names.
 * @throws FedmqError FEDMQ_BAD_CONFIG when it cannot be read.
 */
export function readPem(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `${flag} ${file}: ${(err as Error).message}`, { file });
  }
}

/** Client flags parsed by {@link withClientSecurityOptions}. */
export interface ClientSecurityFlags {
  username?: string;
  password?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * Adds the MQTT client's security flags to a client command (`node`, `coordinator`,
 * `simulate --broker`, `monitor`): `--username`, `--password` (or env `FEDMQ_PASSWORD`),
 * `--ca` (verify the broker of an `mqtts://` or `wss://` URL), `--cert` and `--key` (mutual TLS).
 */
export function withClientSecurityOptions(cmd: Command, usernameHelp = 'MQTT username (see `fedmq auth add`)'): Command {
  return cmd
    .option('--username <name>', usernameHelp)
    .addOption(new Option('--password <password>', `MQTT password (better: the ${PASSWORD_ENV} environment variable, which ps does not show)`).env(PASSWORD_ENV))
    .option('--ca <file>', 'CA certificate (PEM) to verify the broker of an mqtts:// or wss:// URL')
    .option('--cert <file>', 'client certificate (PEM) for mutual TLS; its CN must be the username')
    .option('--key <file>', 'private key (PEM) of --cert');
}

/**
 * mqtt.js options for the flags of {@link withClientSecurityOptions} (files read now).
 * `defaultUsername` is used when `--username` is not given but a password or a client
 * certificate is (a node's id). Returns `{}` when no flag is set.
 * @throws FedmqError FEDMQ_BAD_CONFIG on a missing file or `--cert` without `--key` (or the reverse).
 */
export function clientMqttOptions(o: ClientSecurityFlags, defaultUsername?: string): IClientOptions {
  if (!o.cert !== !o.key) throw new FedmqError(ErrorCodes.BAD_CONFIG, '--cert and --key go together');
  const out: IClientOptions = {};
  const username = o.username ?? (o.password !== undefined || o.cert ? defaultUsername : undefined);
  if (username !== undefined) out.username = username;
  if (o.password !== undefined) out.password = o.password;
  if (o.ca) out.ca = readPem('--ca', o.ca);
  if (o.cert && o.key) {
    out.cert = readPem('--cert', o.cert);
    out.key = readPem('--key', o.key);
  }
  return out;
}

/**
 * Per-node mqtt options for `fedmq simulate --broker` (strings only, they go to worker threads):
 * the flags' password and PEM texts, with each node's own id as username unless `--username` is
 * given. `undefined` when no flag is set.
 * @throws FedmqError FEDMQ_BAD_CONFIG as {@link clientMqttOptions}.
 */
export function simulatedNodeMqtt(o: ClientSecurityFlags): ((nodeId: string) => { username?: string; password?: string; ca?: string; cert?: string; key?: string }) | undefined {
  const base = clientMqttOptions({ ...o, username: undefined });
  if (Object.keys(base).length === 0 && o.username === undefined) return undefined;
  const strings = { password: o.password, ca: base.ca as string | undefined, cert: base.cert as string | undefined, key: base.key as string | undefined };
  return (nodeId) => ({ ...strings, username: o.username ?? nodeId });
}
