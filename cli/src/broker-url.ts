/**
 * Broker URLs that carry credentials (`mqtt://user:password@host:1883`): the CLI takes the user
 * and password out of the URL before it prints, stores or connects with it, so the password is
 * never in a banner, a log line or a run folder's config.json, and still logs the client in.
 * `fedmq node` loads this file: it imports nothing heavy.
 */
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/** URL schemes mqtt.js connects with (`+unix` variants included). */
const SCHEMES = /^(mqtt|mqtts|tcp|ssl|tls|ws|wss|wx|wxs|ali|alis)(\+unix)?:$/;

/** A broker URL taken apart by {@link splitBrokerUrl}. */
export interface SplitBrokerUrl {
  /** The URL without user and password: what the client connects to and what config.json keeps. */
  url: string;
  /** The URL to print: the user kept, the password replaced by `***` (`mqtt://user:***@host:1883`). */
  shown: string;
  /** The URL's user, percent-decoded; undefined when it has none. */
  username?: string;
  /** The URL's password, percent-decoded; undefined when it has none. */
  password?: string;
}

/**
 * Takes the user and password out of a broker URL (WHATWG URL parsing). A string that is not a
 * URL is returned as it is (mqtt.js then reports it).
 */
export function splitBrokerUrl(raw: string): SplitBrokerUrl {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { url: raw, shown: raw };
  }
  if (!u.username && !u.password) return { url: raw, shown: raw };
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  const username = u.username ? decode(u.username) : undefined;
  const password = u.password ? decode(u.password) : undefined;
  const user = u.username;
  u.username = '';
  u.password = '';
  const url = u.href;
  const at = url.indexOf('//') + 2;
  const shown = `${url.slice(0, at)}${user}${password !== undefined ? ':***' : ''}@${url.slice(at)}`;
  return { url, shown, username, password };
}

/** Redacts the password of a broker URL for printing: `mqtt://user:***@host:1883`. */
export function redactBrokerUrl(raw: string): string {
  return splitBrokerUrl(raw).shown;
}

/**
 * A client command's flags with the credentials of `flags.broker` moved to `username` and
 * `password` (the URL's win over `--username`/`--password`/`FEDMQ_PASSWORD`, as they did when
 * mqtt.js read them from the URL) and `broker` without them. Also returns the URL to print.
 * @throws FedmqError FEDMQ_BAD_CONFIG when `broker` is not a URL of a scheme mqtt.js connects
 *   with (the message does not repeat it: it may hold a password).
 */
export function withUrlCredentials<T extends { broker?: string; username?: string; password?: string }>(flags: T): { flags: T; shown?: string } {
  if (flags.broker === undefined) return { flags };
  let protocol = '';
  try {
    protocol = new URL(flags.broker).protocol;
  } catch {
    // not a URL
  }
  if (!SCHEMES.test(protocol)) throw new FedmqError(ErrorCodes.BAD_CONFIG, '--broker is not a broker URL: expected mqtt://HOST:PORT, mqtts://…, ws://…/mqtt or wss://…/mqtt');
  const s = splitBrokerUrl(flags.broker);
  return {
    flags: { ...flags, broker: s.url, username: s.username ?? flags.username, password: s.password ?? flags.password },
    shown: s.shown,
  };
}
