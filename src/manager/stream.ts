import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import * as wsModule from 'ws';
import { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../core/logger.js';
import { Counter, Gauge, type Registry } from '../core/metrics.js';
import {
  CLOSE,
  PROTOCOL_VERSION,
  ProtocolError,
  WS_SUBPROTOCOL,
  encode,
  parseSidecarMessage,
  type ManagerMessage,
  type NodeInfo,
  type SidecarMessage,
} from '../protocol/messages.js';
import type { AuditLog } from './audit.js';
import type { EnrollmentRecord, EnrollmentService } from './enroll.js';
import type { ConfigHub, Subscriber } from './pubsub/hub.js';
import type { TelemetryIntake } from './telemetry-intake.js';

/**
 * The sidecar control stream: WSS with the client certificate issued at enrollment. The
 * certificate alone decides who the peer is (service and instance from its enrollment record);
 * what the sidecar claims in `hello` must match it, and it receives only its own topics.
 *
 * Every frame is validated before use; a malformed or oversized frame closes the stream with a
 * code and reason and is counted — it never throws past this file.
 */

export interface StreamOptions {
  hub: ConfigHub;
  intake: TelemetryIntake;
  enrollment: EnrollmentService;
  audit: AuditLog;
  logger: Logger;
  metrics: Registry;
  maxPayloadBytes: number;
  idleTimeoutMs: number;
  maxRecordsPerMessage: number;
  /** True for the serial of a revoked certificate: the stream is refused with 403. */
  isRevoked?: (serial: string) => boolean;
}

interface Conn {
  ws: WebSocket;
  rec: EnrollmentRecord;
  node?: NodeInfo;
  lastFrame: number;
  sub?: Subscriber;
}

export class StreamServer {
  private readonly wss: WebSocketServer;
  private readonly conns = new Set<Conn>();
  private readonly rejected: Counter;
  private readonly connected: Gauge;

  constructor(private readonly o: StreamOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: o.maxPayloadBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
    });
    this.rejected = new Counter({ name: 'etz_manager_stream_rejected_total', help: 'Control-stream connections or frames refused', labelNames: ['reason'], registers: [o.metrics] });
    this.connected = new Gauge({ name: 'etz_manager_connected_sidecars', help: 'Sidecars with an open control stream', registers: [o.metrics] });
  }

  /** HTTP upgrade on the stream path. Authentication happens here, before the handshake completes. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const tls = req.socket as TLSSocket;
    const cert = tls.authorized ? tls.getPeerCertificate() : undefined;
    if (cert?.serialNumber && this.o.isRevoked?.(cert.serialNumber)) {
      const reason = 'this certificate was revoked';
      this.rejected.inc({ reason: 'revoked' });
      void this.o.audit.record({ actor: `${req.socket.remoteAddress ?? '?'}`, action: 'stream.connect', outcome: 'denied', reason, details: { serial: cert.serialNumber } }).catch(() => {});
      socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ error: 'ETZ_ERR_IDENTITY_REVOKED', reason })}`);
      return;
    }
    const rec = cert?.fingerprint256 ? this.o.enrollment.byFingerprint(cert.fingerprint256) : undefined;
    if (!rec) {
      const reason = !tls.authorized ? `no valid client certificate (${tls.authorizationError ?? 'none presented'})` : 'certificate not enrolled';
      this.rejected.inc({ reason: 'unauthenticated' });
      void this.o.audit.record({ actor: `${req.socket.remoteAddress ?? '?'}`, action: 'stream.connect', outcome: 'denied', reason }).catch(() => {});
      socket.end(`HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${JSON.stringify({ error: 'ETZ_ERR_UNAUTHENTICATED', reason })}`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onOpen(ws, rec));
  }

  private onOpen(ws: WebSocket, rec: EnrollmentRecord): void {
    const conn: Conn = { ws, rec, lastFrame: Date.now() };
    this.conns.add(conn);
    this.connected.set(this.conns.size);
    ws.on('message', (data, isBinary) => {
      conn.lastFrame = Date.now();
      if (isBinary) return this.fail(conn, CLOSE.BAD_MESSAGE, 'binary frames are not accepted', 'binary');
      let msg: SidecarMessage;
      try {
        msg = parseSidecarMessage(data as Buffer);
      } catch (err) {
        return this.fail(conn, CLOSE.BAD_MESSAGE, (err as ProtocolError).message, 'malformed');
      }
      try {
        this.onMessage(conn, msg);
      } catch (err) {
        this.o.logger.error({ err, instance: rec.instance }, 'control stream handler failed');
        this.fail(conn, 1011, 'internal error', 'internal');
      }
    });
    ws.on('pong', () => (conn.lastFrame = Date.now()));
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports an oversized frame (WS_ERR_UNSUPPORTED_MESSAGE_LENGTH) here and closes 1009.
      const reason = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'protocol';
      this.rejected.inc({ reason });
      this.o.logger.warn({ instance: rec.instance, code: 'ETZ_ERR_PROTOCOL', reason: err.message }, 'control stream error');
    });
    ws.on('close', () => {
      this.conns.delete(conn);
      this.connected.set(this.conns.size);
      if (conn.sub) this.o.hub.unsubscribe(rec.instance, conn.sub);
    });
  }

  private onMessage(conn: Conn, msg: SidecarMessage): void {
    const { hub, rec } = { hub: this.o.hub, rec: conn.rec };
    if (msg.type === 'hello') {
      if (msg.protocol !== PROTOCOL_VERSION) return this.fail(conn, CLOSE.BAD_MESSAGE, `protocol ${msg.protocol} not supported (want ${PROTOCOL_VERSION})`, 'protocol-version');
      if (msg.node.service !== rec.service || msg.node.instance !== rec.instance) {
        void this.o.audit.record({ actor: rec.spiffeId, action: 'stream.subscribe', outcome: 'denied', target: `${msg.node.service}/${msg.node.instance}`, reason: `enrolled as ${rec.service}/${rec.instance}` }).catch(() => {});
        return this.fail(conn, CLOSE.FORBIDDEN, `certificate is enrolled as ${rec.service}/${rec.instance}`, 'forbidden');
      }
      conn.node = { service: rec.service, instance: rec.instance, ...(msg.node.version ? { version: msg.node.version } : rec.version ? { version: rec.version } : {}) };
      for (const other of this.conns) {
        if (other !== conn && other.node && other.rec.instance === rec.instance) other.ws.close(CLOSE.REPLACED, 'replaced by a newer stream of the same instance');
      }
      const ws = conn.ws;
      conn.sub = conn.sub ?? {
        id: rec.instance,
        node: conn.node,
        send: (m: ManagerMessage | string | Buffer) => (Buffer.isBuffer(m) ? sendShared(ws, m) : ws.send(typeof m === 'string' ? m : encode(m))),
        bufferedAmount: () => ws.bufferedAmount,
      };
      hub.subscribe(conn.sub, msg.lastVersion);
      return;
    }
    if (!conn.node) return this.fail(conn, CLOSE.BAD_MESSAGE, `'${msg.type}' before 'hello'`, 'order');
    switch (msg.type) {
      case 'ack':
        hub.ack(rec.instance, msg.version, msg.nonce);
        return;
      case 'nack':
        if (hub.nack(rec.instance, msg.version, msg.nonce, msg.error)) {
          this.o.logger.warn({ instance: rec.instance, version: msg.version, error: msg.error }, 'config rejected by sidecar');
        }
        return;
      case 'heartbeat':
        hub.seen(rec.instance);
        return;
      case 'telemetry': {
        if (msg.records.length > this.o.maxRecordsPerMessage) return this.fail(conn, CLOSE.BAD_MESSAGE, `more than ${this.o.maxRecordsPerMessage} records in one message`, 'oversized');
        const r = this.o.intake.accept(conn.node, msg.records, msg.dropped ?? 0);
        if (r.rejected) conn.ws.send(encode({ type: 'telemetryAck', accepted: r.accepted, rejected: r.rejected }));
        return;
      }
      case 'renew':
        this.o.enrollment.renew(rec, msg.csr, msg.purpose ?? 'control').then(
          (cert) => {
            conn.rec = this.o.enrollment.get(rec.instance) ?? rec;
            conn.ws.send(encode(cert));
            void this.o.audit.record({ actor: rec.spiffeId, action: 'cert.renew', outcome: 'ok', target: rec.instance, details: { purpose: msg.purpose ?? 'control' } }).catch(() => {});
          },
          (err: Error & { code?: string }) => {
            const code = err.code === 'ETZ_ERR_IDENTITY_REVOKED' ? err.code : 'ETZ_ERR_INVALID_INPUT';
            if (conn.ws.readyState === WebSocket.OPEN) conn.ws.send(encode({ type: 'error', code, message: err.message }));
          },
        );
        return;
    }
  }

  private fail(conn: Conn, code: number, reason: string, metric: string): void {
    this.rejected.inc({ reason: metric });
    this.o.logger.warn({ instance: conn.rec.instance, code: 'ETZ_ERR_PROTOCOL', reason }, 'control stream closed');
    // Close reasons are limited to 123 bytes by the protocol.
    conn.ws.close(code, Buffer.from(reason).subarray(0, 123).toString());
    const ws = conn.ws;
    setTimeout(() => ws.terminate(), 2000).unref();
  }

  /** Close every stream of a revoked instance (the close code tells the sidecar not to expect a way back). */
  revoke(instance: string, reason: string): number {
    let n = 0;
    for (const c of this.conns) {
      if (c.rec.instance !== instance) continue;
      this.fail(c, CLOSE.REVOKED, `identity revoked: ${reason}`, 'revoked');
      n++;
    }
    return n;
  }

  /** Heartbeats out, idle streams closed. One timer for all connections. */
  tick(): void {
    const now = Date.now();
    const hb = encode({ type: 'heartbeat', ts: now });
    for (const c of this.conns) {
      if (now - c.lastFrame > this.o.idleTimeoutMs) {
        this.rejected.inc({ reason: 'idle' });
        c.ws.close(CLOSE.HEARTBEAT_TIMEOUT, 'no heartbeat');
        setTimeout(() => c.ws.terminate(), 1000).unref();
        continue;
      }
      if (c.node) c.ws.send(hb);
    }
  }

  connectedCount(): number {
    return this.conns.size;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.ws.close(CLOSE.SHUTDOWN, 'manager shutting down');
    await new Promise<void>((r) => setTimeout(r, 20));
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

// A push that many sidecars receive byte for byte is framed once and written as one buffer per
// socket: one TLS record and one write instead of a header and a payload each. Server frames are
// unmasked, so the frame is the same for every connection. Only when ws has nothing queued for
// the socket (no compression, no pending frame), so frames never interleave.
const framed = new WeakMap<Buffer, Buffer>();
// ws exports its frame encoder (Sender.frame); its type declarations do not name it.
const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, opts: object): Buffer[] } };
type WsInternals = { _socket?: { write(b: Buffer): boolean }; _sender?: { _queue?: unknown[]; _bufferedBytes?: number } };

function sendShared(ws: WebSocket, payload: Buffer): void {
  const inner = ws as unknown as WsInternals;
  if (ws.readyState !== WebSocket.OPEN || !inner._socket || inner._sender?._queue?.length || inner._sender?._bufferedBytes) {
    ws.send(payload, { binary: false });
    return;
  }
  let frame = framed.get(payload);
  if (!frame) {
    frame = Buffer.concat(Sender.frame(payload, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: true }));
    framed.set(payload, frame);
  }
  inner._socket.write(frame);
}
