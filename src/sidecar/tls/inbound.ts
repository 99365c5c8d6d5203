import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from '../../core/logger.js';
import { nullLogger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import { identityMetrics } from '../../identity/metrics.js';
import { peerIdentityFromCert } from '../../identity/verify.js';
import type { PeerIdentity } from '../filter.js';
import { localReply, sendRawLocalReply } from '../local-reply.js';
import { connectionOf } from '../listeners/connections.js';
import { createServerTlsOptions, type InboundMode } from './options.js';
import { refusalLogger } from './log-limit.js';
import type { RevocationList } from './revocation.js';
import { compilePortModes, modeOfConnection, portLabel, type ConnectionMode, type PortModes } from './port-modes.js';
import type { WorkloadIdentity } from './workload-identity.js';

/**
 * The inbound mTLS guard, placed in front of an http.Server. Each accepted socket first gets the
 * mode of its workload port (port-modes.ts): DISABLE hands it to HTTP untouched; otherwise it is
 * sniffed (first byte 0x16 = TLS handshake record); TLS goes through a tls.Server whose verdict is
 * taken here after the handshake, plaintext is served (PERMISSIVE) or answered 400 (STRICT). Only
 * sockets that pass are handed to the HTTP server, as its 'connection' event, so the listener and
 * the HTTP parser never see an unauthenticated TLS peer. Peer identities are recorded per socket
 * for the identity filter.
 */

export interface InboundMtlsOptions {
  /** The workload-wide mode; `portModes` (compiled from it and `tls.portLevel`) wins when given. */
  mode: InboundMode;
  portModes?: PortModes;
  identity: WorkloadIdentity;
  /** Trust domains whose SPIFFE IDs are accepted; default: the workload's own. */
  trustDomains?: readonly string[];
  metrics?: Registry;
  logger?: Logger;
  /** Certificates the manager revoked: refused at the handshake, their open connections closed. */
  revocation?: RevocationList;
  /**
   * Install the guard even when no port needs mTLS now: the modes may be replaced later
   * (setPortModes, the pushed `peerAuthentication` resource) by ones that do.
   */
  live?: boolean;
}

export type RefusalReason =
  | 'no_client_cert' | 'expired' | 'not_yet_valid' | 'untrusted' | 'bad_identity' | 'foreign_trust_domain'
  | 'protocol_version' | 'no_shared_cipher' | 'plaintext' | 'handshake_timeout' | 'handshake_error' | 'revoked';

const peers = new WeakMap<Socket, PeerIdentity>();

/** The verified identity of the mTLS peer on this socket, if any. */
export function peerOfSocket(socket: Socket): PeerIdentity | undefined {
  return peers.get(socket);
}

const kPassed = Symbol('etz.mtls.passed');
type Marked = Socket & { [kPassed]?: true };

export interface InboundMtlsHandle {
  readonly mode: InboundMode;
  /** The modes new connections get. */
  readonly portModes: PortModes;
  readonly tlsServer: TlsServer | null;
  /** Modes for connections accepted from now on; open ones keep the mode they were accepted under. */
  setPortModes(modes: PortModes): void;
  /** Detach from the identity's rotations and drop pending handshakes. */
  close(): void;
}

function verdictOf(authError: string | Error | null): RefusalReason {
  const code = typeof authError === 'string' ? authError : (authError as { code?: string } | null)?.code ?? '';
  if (code === 'CERT_HAS_EXPIRED') return 'expired';
  if (code === 'CERT_NOT_YET_VALID') return 'not_yet_valid';
  return 'untrusted';
}

function handshakeReason(err: Error & { code?: string }): RefusalReason {
  const c = err.code ?? '';
  const m = err.message ?? '';
  if (c === 'ERR_SSL_UNSUPPORTED_PROTOCOL' || c === 'ERR_SSL_NO_PROTOCOLS_AVAILABLE' || /unsupported protocol|wrong version number|version too low/i.test(m)) return 'protocol_version';
  if (c === 'ERR_SSL_NO_SHARED_CIPHER' || /no shared cipher/i.test(m)) return 'no_shared_cipher';
  if (c === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake_timeout';
  if (c === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'no_client_cert';
  if (c === 'ERR_SSL_HTTP_REQUEST') return 'plaintext';
  return 'handshake_error';
}

/** Installs the guard on `server` (call before it listens). DISABLE on every port installs nothing. */
export function attachInboundMtls(server: HttpServer, opts: InboundMtlsOptions): InboundMtlsHandle {
  const { mode, identity } = opts;
  let modes = opts.portModes ?? compilePortModes(mode, undefined, '(inbound)');
  if (!modes.needsTls && opts.live !== true) return { mode, portModes: modes, tlsServer: null, setPortModes() {}, close() {} };
  const logger = opts.logger ?? nullLogger;
  const m = opts.metrics ? identityMetrics(opts.metrics) : undefined;
  const failures = m?.handshakeFailures;
  const domains = new Set(opts.trustDomains ?? [identity.spiffeId.slice('spiffe://'.length).split('/')[0]!]);
  const timeoutMs = identity.settings.handshakeTimeoutMs;
  const pending = new Set<Socket>();

  // One TLS server for every port that speaks mTLS (STRICT and PERMISSIVE handshake alike).
  const tlsServer = new TlsServer(createServerTlsOptions(identity.current, 'STRICT', identity.settings));
  const onRotate = (): void => {
    // New handshakes use the new certificate and bundle; established sessions are untouched.
    tlsServer.setSecureContext(createServerTlsOptions(identity.current, 'STRICT', identity.settings));
  };
  // The mode each connection was accepted under, for the refusal's labels and its re-emission.
  const accepted = new WeakMap<Socket, ConnectionMode>();
  const labels = (socket: Socket, reason: RefusalReason) => {
    const cm = accepted.get(socket) ?? accepted.get((socket as Socket & { _parent?: Socket })._parent!);
    return cm === undefined
      ? { direction: 'inbound', reason }
      : { direction: 'inbound', reason, mode: cm.mode, port: portLabel(cm.modes, cm.port) };
  };
  identity.on('rotate', onRotate);

  const log = refusalLogger(logger, 'inbound mTLS connection refused');
  const refuse = (socket: Socket, reason: RefusalReason, detail: string): void => {
    failures?.inc(labels(socket, reason));
    log(reason, { code: 'ETZ_ERR_TLS_REFUSED', remote: socket.remoteAddress, detail });
    socket.destroy();
  };

  const emit = server.emit as unknown as (this: HttpServer, event: string | symbol, ...args: unknown[]) => boolean;
  const pass = (socket: Socket, cm: ConnectionMode | undefined): void => {
    (socket as Marked)[kPassed] = true;
    emit.call(server, 'connection', socket);
    // Looked up already for the mode: the listener's port-based filters reuse it.
    if (cm?.originalDst !== undefined) {
      const conn = connectionOf(socket);
      if (conn !== undefined && conn.originalDst === undefined) conn.originalDst = cm.originalDst;
    }
  };

  tlsServer.on('secureConnection', (tls: TLSSocket) => {
    const peerCert = tls.getPeerCertificate();
    if (!peerCert || Object.keys(peerCert).length === 0) return refuse(tls, 'no_client_cert', 'no client certificate presented');
    if (!tls.authorized) return refuse(tls, verdictOf(tls.authorizationError), String(tls.authorizationError));
    let peer: PeerIdentity;
    try {
      peer = peerIdentityFromCert(peerCert);
    } catch (err) {
      return refuse(tls, 'bad_identity', (err as Error).message);
    }
    if (!domains.has(peer.trustDomain)) return refuse(tls, 'foreign_trust_domain', peer.spiffeId);
    const revocation = opts.revocation;
    if (revocation !== undefined) {
      if (revocation.has(peerCert.serialNumber)) return refuse(tls, 'revoked', `${peer.spiffeId} certificate ${peerCert.serialNumber} is revoked`);
      revocation.track(tls, peerCert.serialNumber);
    }
    peers.set(tls, peer);
    m?.handshakes.inc({ direction: 'inbound', resumed: tls.isSessionReused() ? 'true' : 'false' });
    pass(tls, accepted.get((tls as TLSSocket & { _parent?: Socket })._parent!));
    // The listener registered the connection while it was emitted; give it the peer now, so a
    // policy change can close a revoked peer's connection before it carried any request.
    const conn = connectionOf(tls);
    if (conn !== undefined && conn.peer === undefined) conn.peer = peer;
  });
  tlsServer.on('tlsClientError', (err: Error, tls: TLSSocket) => {
    refuse(tls, handshakeReason(err), err.message);
  });

  const route = (raw: Socket, first: number, cm: ConnectionMode): void => {
    if (first === 0x16) {
      // Tracked until closed (handshaking or not), so close() can drop what never reached HTTP.
      pending.add(raw);
      raw.once('close', () => pending.delete(raw));
      // The HTTP listener accepts sockets half-open; a client that gives up during the handshake
      // (e.g. it refused this side's certificate) sends a FIN that would otherwise leave the socket
      // waiting for the handshake timeout. Once secure, the TLS socket handles EOF itself.
      raw.allowHalfOpen = false;
      tlsServer.emit('connection', raw);
    } else if (cm.mode === 'PERMISSIVE') {
      pass(raw, cm);
    } else {
      failures?.inc(labels(raw, 'plaintext'));
      log('plaintext', { code: 'ETZ_ERR_MTLS_REQUIRED', remote: raw.remoteAddress, port: cm.port });
      sendRawLocalReply(raw, localReply('ETZ_ERR_MTLS_REQUIRED', 'this port requires mutual TLS (STRICT)'));
    }
  };

  const sniff = (raw: Socket, cm: ConnectionMode): void => {
    pending.add(raw);
    const timer = setTimeout(() => {
      cleanup();
      refuse(raw, 'handshake_timeout', 'no bytes before the handshake timeout');
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      pending.delete(raw);
      raw.off('readable', onReadable);
      raw.off('close', cleanup);
      raw.off('error', cleanup);
    };
    const onReadable = (): void => {
      const chunk = raw.read() as Buffer | null;
      if (chunk === null || chunk.length === 0) return;
      cleanup();
      raw.unshift(chunk);
      route(raw, chunk[0]!, cm);
    };
    raw.on('readable', onReadable);
    raw.once('close', cleanup);
    raw.once('error', cleanup);
  };

  // Intercept the server's own 'connection' event: raw sockets are sniffed first and re-emitted
  // (as TLSSocket or plain socket) only once they passed, so every other listener sees vetted
  // connections only.
  server.emit = function (this: HttpServer, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'connection' && !(args[0] as Marked)[kPassed]) {
      const raw = args[0] as Socket;
      const cm = modeOfConnection(modes, raw);
      // A DISABLE port is plain HTTP from its first byte: a ClientHello there is a bad request.
      if (cm.mode === 'DISABLE') pass(raw, cm);
      else {
        accepted.set(raw, cm);
        sniff(raw, cm);
      }
      return true;
    }
    return emit.call(this, event, ...args);
  } as typeof server.emit;

  const close = (): void => {
    identity.off('rotate', onRotate);
    for (const s of pending) s.destroy();
    pending.clear();
  };
  server.once('close', close);
  return {
    mode,
    get portModes() {
      return modes;
    },
    tlsServer,
    setPortModes(next) {
      modes = next;
    },
    close,
  };
}
