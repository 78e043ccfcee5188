import type { TlsOptions, TLSSocket } from 'node:tls';
import { ErrorCodes, FedmqError } from '@fedmq/protocol';

/**
 * TLS for the broker's listeners (docs/security.md, "TLS"): `mqtts` on a TLS TCP port (8883 by
 * default, the IANA port for MQTT over TLS) and `wss` on the HTTP port, which becomes HTTPS.
 */

/** Option `tls` of `startBroker`: PEM text (not file names). */
export interface BrokerTls {
  /** Server certificate chain, PEM. */
  cert: string | Buffer;
  /** Server private key, PEM. */
  key: string | Buffer;
  /** CA certificate(s), PEM, that client certificates must chain to (needed for the two options below). */
  ca?: string | Buffer;
  /**
   * Ask clients for a certificate (mutual TLS). A client may still connect without one; one that
   * presents a certificate must present a valid one whose subject CN equals its MQTT username,
   * else its CONNECT is refused (return code 5).
   */
  requestClientCert?: boolean;
  /** Require a client certificate signed by `ca`: the TLS handshake fails without one. Implies `requestClientCert`. */
  requireClientCert?: boolean;
}

/**
 * Node `tls` server options for {@link BrokerTls}: TLS 1.2 or newer; `requestCert` when client
 * certificates are requested or required; `rejectUnauthorized` only when they are required (with
 * a request only, an unverified certificate is refused later, at CONNECT, with a logged reason).
 * @throws FedmqError FEDMQ_BAD_CONFIG when client certificates are asked for without a `ca`.
 */
export function tlsServerOptions(t: BrokerTls): TlsOptions {
  const request = t.requestClientCert === true || t.requireClientCert === true;
  if (request && !t.ca) throw new FedmqError(ErrorCodes.BAD_CONFIG, 'client certificates need a CA to verify them against (tls.ca / --tls-ca)');
  return { cert: t.cert, key: t.key, ca: t.ca, requestCert: request, rejectUnauthorized: t.requireClientCert === true, minVersion: 'TLSv1.2' };
}

/** What a TLS peer's certificate says: verified against the CA or not, and its subject CN. */
export interface PeerIdentity {
  /** True when the certificate chains to the configured `ca`. */
  authorized: boolean;
  /** Subject common name, when there is exactly one. */
  cn?: string;
  /** OpenSSL's verification error (e.g. `UNABLE_TO_VERIFY_LEAF_SIGNATURE`) when not authorized. */
  error?: string;
}

/** The peer certificate of a TLS socket, or `undefined` when the client presented none. */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  const cert = socket.getPeerCertificate?.();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const cn = cert.subject?.CN as string | string[] | undefined;
  const error = socket.authorizationError;
  return { authorized: socket.authorized, cn: typeof cn === 'string' ? cn : undefined, ...(error ? { error: String(error) } : {}) };
}

/**
 * Why a client certificate does not fit the MQTT `username`, or `undefined` when it does or when
 * there is no certificate: it must be verified against the CA and its CN must equal the username
 * (for a node, its node id).
 */
export function clientCertProblem(peer: PeerIdentity | undefined, username: string | undefined): string | undefined {
  if (!peer) return undefined;
  if (!peer.authorized) return `client certificate not verified${peer.error ? ` (${peer.error})` : ''}`;
  if (peer.cn === undefined) return 'client certificate has no single subject CN';
  if (peer.cn !== username) return `client certificate CN ${JSON.stringify(peer.cn)} is not the username ${JSON.stringify(username ?? '')}`;
  return undefined;
}
