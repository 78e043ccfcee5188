import type { Aedes, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import type { Logger } from 'pino';
import { canPublish, canSubscribe, publishFlagsProblem, scopeToClientId, type Principal } from './acl.ts';
import type { Credentials } from './auth.ts';
import { clientIdProblem, type ByteRateLimiter } from './limits.ts';
import type { RejectionReason, TrackedSocket, Transport } from './metrics.ts';
import { clientCertProblem, type PeerIdentity } from './tls.ts';

/** What the broker knows about a connection before its CONNECT (recorded by the listeners). */
export interface ConnectionInfo {
  transport: Transport;
  remoteAddress?: string;
  /** The TLS client certificate, when one was presented (TLS and WSS only). */
  peer?: PeerIdentity;
  /** The socket's byte counters (`BrokerMetrics.trackSocket`): told the client's role when it connects. */
  traffic?: TrackedSocket;
  /** The connection's byte rate, when limited (lifted once it is an authenticated coordinator). */
  rate?: ByteRateLimiter;
  /** The MQTT client id, once connected (for log lines). */
  clientId?: string;
}

/** Options of {@link installSecurityHooks}. */
export interface SecurityHooksOptions {
  /** Users; when given, authentication and the ACL are on. */
  credentials?: Credentials;
  /** Longest client id accepted. */
  maxClientIdLength: number;
  /** The {@link ConnectionInfo} of an Aedes connection (`client.conn`). */
  connectionOf(conn: unknown): ConnectionInfo | undefined;
  /** Counts a rejection (`fedmq_broker_rejections_total`). */
  reject(reason: RejectionReason): void;
  log: Logger;
}

/** MQTT 3.1.1 CONNACK return codes used here (§3.2.2.3). */
const IDENTIFIER_REJECTED = 2;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

/**
 * Replaces Aedes' `preConnect`, `authenticate` and — with `credentials` — `authorizePublish` and
 * `authorizeSubscribe` hooks; hooks given in the Aedes options still run after ours accept.
 *
 * At CONNECT, in this order (first failure wins; each is logged at warn and counted):
 * 1. client id rules ({@link clientIdProblem}) → return code 2;
 * 2. a TLS client certificate, if presented, must be verified and its CN must equal the username → 5;
 * 3. with credentials: no username → 5; unknown user or wrong password (scrypt, async) → 4;
 * 4. with credentials: the client id must fit the user's role ({@link scopeToClientId}; a
 *    monitor's must be its username or start with `{username}-`) → 2;
 * 5. with credentials: a Last Will must be on a topic the user may publish to, and the topic must
 *    take a will (and a retained one, if retained: {@link publishFlagsProblem}) → 5.
 *
 * Always: a PUBLISH or Last Will whose topic has an empty level ({@link hasEmptyLevel}) is refused
 * and closes the connection (see the comment at the hook: it let any client disconnect a
 * persistent session).
 *
 * With credentials, a PUBLISH the ACL denies, or a retained PUBLISH on a topic the protocol does
 * not retain ({@link publishFlagsProblem}: an update, task or evaluation result), closes the connection (MQTT 3.1.1 §3.3.5 lets a
 * server either acknowledge and drop or disconnect; disconnecting makes a misconfigured or
 * compromised client visible instead of letting it believe its update went through), and a
 * denied subscription is answered with SUBACK 0x80 (§3.9.3). Without credentials, publishing and
 * subscribing are left to Aedes' defaults (open, `$SYS` publishes refused).
 *
 * @returns the principal of an authenticated client (undefined without credentials).
 */
export function installSecurityHooks(aedes: Aedes, opts: SecurityHooksOptions): { principalOf(client: Client): Principal | undefined } {
  const { credentials, log } = opts;
  const principals = new WeakMap<Client, Principal>();
  /** Client ids as sent (Aedes replaces an empty one with a generated id before `authenticate`). */
  const sentIds = new WeakMap<Client, string>();

  const next = {
    preConnect: aedes.preConnect,
    authenticate: aedes.authenticate,
    authorizePublish: aedes.authorizePublish,
    authorizeSubscribe: aedes.authorizeSubscribe,
  };

  aedes.preConnect = function fedmqPreConnect(client, packet, callback) {
    sentIds.set(client, typeof packet.clientId === 'string' ? packet.clientId : '');
    next.preConnect.call(this, client, packet, callback);
  };

  aedes.authenticate = function fedmqAuthenticate(client, username, password, callback) {
    const conn = opts.connectionOf(client.conn);
    const sentId = sentIds.get(client) ?? client.id;
    const context = { clientId: sentId.slice(0, 200), username: username?.slice(0, 200), remoteAddress: conn?.remoteAddress, transport: conn?.transport };
    const refuse = (returnCode: number, reason: RejectionReason, message: string) => {
      opts.reject(reason);
      log.warn({ ...context, reason, returnCode, code: ErrorCodes.AUTH }, `connection refused: ${message}`);
      const err = new FedmqError(ErrorCodes.AUTH, message, { reason, returnCode }) as FedmqError & AuthenticateError;
      err.returnCode = returnCode;
      callback(err, false);
    };

    const idProblem = clientIdProblem(sentId, client.clean, opts.maxClientIdLength);
    if (idProblem) return refuse(IDENTIFIER_REJECTED, 'client_id', idProblem);
    const certProblem = clientCertProblem(conn?.peer, username);
    if (certProblem) return refuse(NOT_AUTHORIZED, 'client_cert', certProblem);
    if (!credentials) return next.authenticate.call(this, client, username, password, callback);

    if (username === undefined || username === '') return refuse(NOT_AUTHORIZED, 'anonymous', 'no username (anonymous clients are not allowed)');
    credentials.authenticate(username, password ?? Buffer.alloc(0)).then(
      (user) => {
        if (!user) return refuse(BAD_USERNAME_OR_PASSWORD, 'bad_credentials', 'unknown user or wrong password');
        const scoped = scopeToClientId(user, client.id, (name) => credentials.has(name));
        if (!scoped) return refuse(IDENTIFIER_REJECTED, 'client_id_not_allowed', `client id not allowed for ${user.role} ${user.username}`);
        const will = (client as Client & { _will?: { topic?: string; retain?: boolean } })._will;
        if (will?.topic !== undefined) {
          if (!canPublish(scoped, will.topic)) return refuse(NOT_AUTHORIZED, 'will_denied', `Last Will on ${will.topic.slice(0, 200)} not allowed`);
          const flags = publishFlagsProblem(will.topic, { retain: will.retain === true, will: true });
          if (flags) return refuse(NOT_AUTHORIZED, 'will_denied', `Last Will on ${will.topic.slice(0, 200)} refused: ${flags}`);
        }
        principals.set(client, scoped);
        log.debug({ ...context, role: scoped.role }, 'authenticated');
        next.authenticate.call(aedes, client, username, password, callback);
      },
      (err: unknown) => {
        // not expected (Credentials.authenticate catches its errors), but never leave a CONNECT hanging
        log.error({ ...context, err }, 'authentication failed');
        refuse(BAD_USERNAME_OR_PASSWORD, 'bad_credentials', 'authentication error');
      },
    );
  };

  if (credentials) {
    aedes.authorizePublish = function fedmqAuthorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) {
      // client is null only for a Last Will left by a broker that died (cluster); every will was checked at CONNECT
      if (client === null) return next.authorizePublish.call(this, client, packet, callback);
      const principal = principals.get(client);
      if (!canPublish(principal, packet.topic)) {
        opts.reject('publish_denied');
        log.warn({ clientId: client.id, username: principal?.username, topic: packet.topic.slice(0, 200), code: ErrorCodes.FORBIDDEN }, 'publish denied: disconnecting');
        return callback(new FedmqError(ErrorCodes.FORBIDDEN, `publish to ${packet.topic.slice(0, 200)} denied`, { topic: packet.topic.slice(0, 200) }));
      }
      const flags = publishFlagsProblem(packet.topic, { retain: packet.retain === true, payloadBytes: packet.payload?.length ?? 0 });
      if (flags) {
        opts.reject('publish_denied');
        log.warn({ clientId: client.id, username: principal?.username, topic: packet.topic.slice(0, 200), code: ErrorCodes.FORBIDDEN }, `retained publish refused (${flags}): disconnecting`);
        return callback(new FedmqError(ErrorCodes.FORBIDDEN, `retained publish to ${packet.topic.slice(0, 200)} refused: ${flags}`, { topic: packet.topic.slice(0, 200) }));
      }
      next.authorizePublish.call(this, client, packet, callback);
    };
    aedes.authorizeSubscribe = function fedmqAuthorizeSubscribe(client: Client, sub: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void) {
      const principal = principals.get(client);
      if (!canSubscribe(principal, sub.topic)) {
        opts.reject('subscribe_denied');
        log.warn({ clientId: client.id, username: principal?.username, topic: sub.topic.slice(0, 200), code: ErrorCodes.FORBIDDEN }, 'subscription denied');
        return callback(null, null); // SUBACK 0x80 for this filter; the others of the packet are unaffected
      }
      next.authorizeSubscribe.call(this, client, sub, callback);
    };
  }

  // Always, before the ACL: Aedes routes with `+` matching an empty topic level (MQTT-4.7.1-3) but
  // its session persistence does not, so a QoS 1 message on `a//b` reaches a persistent session
  // subscribed to `a/+/b` with no queued copy and Aedes drops that client ("no such packet"):
  // any client could disconnect the coordinator (`nodes/+/update`). fedmq topics never have an
  // empty level, so such a PUBLISH or Last Will is refused like a denied one.
  const afterLevels = aedes.authorizePublish;
  aedes.authorizePublish = function fedmqTopicLevels(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void) {
    if (hasEmptyLevel(packet.topic)) {
      opts.reject('publish_denied');
      log.warn({ clientId: client?.id, topic: packet.topic.slice(0, 200), code: ErrorCodes.BAD_TOPIC }, 'publish to a topic with an empty level refused: disconnecting');
      return callback(new FedmqError(ErrorCodes.BAD_TOPIC, 'topic with an empty level refused', { topic: packet.topic.slice(0, 200) }));
    }
    afterLevels.call(this, client, packet, callback);
  };

  return { principalOf: (client) => principals.get(client) };
}

/** True when `topic` has an empty level: `a//b`, `/a`, `a/` (but not the empty topic, which Aedes refuses itself). */
export function hasEmptyLevel(topic: string): boolean {
  return topic.startsWith('/') || topic.endsWith('/') || topic.includes('//');
}
