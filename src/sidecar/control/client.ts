import { EventEmitter } from 'node:events';
import { WebSocket } from 'ws';
import { nullLogger, type Logger } from '../../core/logger.js';
import { createRegistry } from '../../core/metrics.js';
import {
  CLOSE, PROTOCOL_VERSION, STREAM_PATH, WS_SUBPROTOCOL, emptyResources, encode, parseManagerMessage,
  type DeltaMsg, type ManagerMessage, type Resources, type SidecarMessage, type SnapshotMsg,
} from '../../protocol/messages.js';
import { checkManagerIdentity } from '../../protocol/server-identity.js';
import { backoffDelay, type ApplyTarget, type ControlClientEvents, type ControlClientOptions } from './client-options.js';
import { controlMetrics, type ControlMetrics } from './control-metrics.js';
import { CredentialLifecycle } from './credential-lifecycle.js';
import type { Credentials } from './credentials.js';
import { SnapshotWriter, nonEmpty, readSnapshot, snapshotPath } from './snapshot-store.js';
import { TelemetryBatcher } from './telemetry-batcher.js';

export type { ApplyTarget, ControlClientEvents, ControlClientOptions } from './client-options.js';

/**
 * The sidecar's control-plane client.
 *
 * Start: apply the last good snapshot from disk (fail static: the sidecar enforces what it last
 * knew even when the manager is down at its own start), enroll with the bootstrap token if it
 * holds no certificate, then keep one WSS stream open with its client certificate.
 * Stream: hello(lastVersion) → snapshot, then deltas; each version is applied atomically through
 * `target.applyResources` and answered ACK (then persisted) or NACK with the error, leaving the
 * previous version in force. Versions at or below the one in force are ignored.
 * Liveness: heartbeats both ways; a silent stream is dropped and re-opened with exponential
 * backoff and full jitter, resuming from the last ACKed version.
 */

export class ControlClient extends EventEmitter<ControlClientEvents> {
  /** Create, load the fail-static snapshot, then connect in the background. */
  static async start(opts: ControlClientOptions & { target: ApplyTarget }): Promise<ControlClient> {
    const c = new ControlClient(opts);
    await c.attach(opts.target);
    return c;
  }

  /**
   * Create without connecting: a sidecar first needs its certificate (ensureCredentials) to start
   * its mTLS listeners, and only then has a target to attach.
   */
  static create(opts: ControlClientOptions): ControlClient {
    return new ControlClient(opts);
  }

  /** Apply the fail-static snapshot to `target`, then connect and follow the manager. */
  async attach(target: ApplyTarget): Promise<void> {
    this.target = target;
    await this.loadSnapshot();
    this.loop();
  }

  /**
   * The certificate this sidecar holds, enrolling with the bootstrap token when it has none;
   * retries with backoff while the manager is unreachable.
   */
  ensureCredentials(): Promise<Credentials> {
    return this.creds.ensure(() => this.closed);
  }

  /**
   * A certificate for the data plane's own key (a RenewFn for the sidecar's WorkloadIdentity):
   * the CSR goes over the control stream, so renewal needs no extra credentials.
   */
  async requestCertificate(csrPem: string): Promise<{ certChainPem: string; trustBundlePem: string }> {
    await this.untilConnected();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.workloadWaiters.delete(w);
        reject(new Error('the manager did not answer the certificate request within 30 s'));
      }, 30_000);
      const w = (certChainPem: string, trustBundlePem: string) => {
        clearTimeout(t);
        resolve({ certChainPem, trustBundlePem });
      };
      this.workloadWaiters.add(w);
      this.send({ type: 'renew', csr: csrPem, purpose: 'workload' });
    });
  }

  private untilConnected(): Promise<void> {
    if (this.connected_) return Promise.resolve();
    return new Promise((resolve) => this.once('connected', () => resolve()));
  }

  readonly telemetry: TelemetryBatcher;
  private readonly o: ControlClientOptions;
  private target: ApplyTarget | undefined;
  private readonly workloadWaiters = new Set<(certChainPem: string, trustBundlePem: string) => void>();
  private readonly logger: Logger;
  private ws: WebSocket | undefined;
  private readonly creds: CredentialLifecycle;
  private version_ = 0;
  private resources: Resources = emptyResources();
  private appliedAt = 0;
  private attempt = 0;
  private closed = false;
  /** The manager revoked this sidecar's identity: reconnecting can only be refused (and audited) again. */
  private revoked = false;
  private connected_ = false;
  private work: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private lastFrame = 0;
  private readonly snapshots: SnapshotWriter;
  private readonly g: ControlMetrics;
  readonly stats = { applied: 0, nacked: 0, stale: 0, reconnects: 0, protocolErrors: 0 };

  private constructor(opts: ControlClientOptions) {
    super();
    this.o = opts;
    this.logger = opts.logger ?? nullLogger;
    const reg = opts.metrics ?? createRegistry();
    this.g = controlMetrics(reg, () => this.appliedAt);
    this.creds = new CredentialLifecycle(opts, this.logger, {
      enrolled: (spiffeId) => this.emit('enrolled', spiffeId),
      renewed: (expiresAt) => this.emit('renewed', expiresAt),
    });
    this.snapshots = new SnapshotWriter(opts.dataDir, this.logger, () => this.closed);
    this.telemetry = new TelemetryBatcher({
      ...opts.telemetry,
      send: (records, dropped) => {
        if (!this.connected_ || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
        if (dropped) this.g.dropped.inc(dropped);
        this.send({ type: 'telemetry', records, ...(dropped ? { dropped } : {}) });
        return true;
      },
    });
  }

  get version(): number {
    return this.version_;
  }

  get connected(): boolean {
    return this.connected_;
  }

  get credentials(): Credentials | undefined {
    return this.creds.current;
  }

  /** Resolves when a version ≥ v is in force. */
  waitForVersion(pred: (v: number) => boolean, timeoutMs = 10_000): Promise<number> {
    if (pred(this.version_)) return Promise.resolve(this.version_);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('applied', on);
        reject(new Error(`no matching config version within ${timeoutMs} ms (at ${this.version_})`));
      }, timeoutMs);
      const on = (v: number) => {
        if (!pred(v)) return;
        clearTimeout(t);
        this.off('applied', on);
        resolve(v);
      };
      this.on('applied', on);
    });
  }

  // ---- fail-static snapshot ----
  private async loadSnapshot(): Promise<void> {
    const snap = await readSnapshot(this.o.dataDir);
    if (!snap) return;
    try {
      const res = { ...emptyResources(), ...snap.resources };
      await this.target!.applyResources(nonEmpty(res), snap.version);
      this.resources = res;
      this.version_ = snap.version;
      this.appliedAt = snap.savedAt;
      this.g.version.set(snap.version);
      this.logger.info({ version: snap.version }, 'applied the last good config from disk');
      this.emit('applied', snap.version);
    } catch (err) {
      this.logger.error({ err, file: snapshotPath(this.o.dataDir) }, 'saved config snapshot could not be applied; waiting for the manager');
    }
  }

  private persist(): void {
    if (this.o.persistSnapshot === false) return;
    this.snapshots.write(() => ({ version: this.version_, resources: this.resources, savedAt: this.appliedAt }));
  }

  // ---- connection loop ----
  private loop(): void {
    if (this.closed) return;
    void this.connect().catch((err: Error) => {
      this.logger.warn({ err: err.message, attempt: this.attempt }, 'control plane unreachable; retrying');
      this.emit('error', err);
      this.scheduleRetry();
    });
  }

  private scheduleRetry(): void {
    if (this.closed || this.revoked || this.retryTimer) return;
    const delay = backoffDelay(this.attempt, this.o);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.loop();
    }, delay);
    this.retryTimer.unref();
  }

  private async connect(): Promise<void> {
    await this.creds.now();
    const creds = this.creds.current;
    if (this.closed || !creds) return;
    this.stats.reconnects++;
    this.g.reconnects.inc();
    const url = new URL(STREAM_PATH, this.o.url);
    url.protocol = 'wss:';
    const ws = new WebSocket(url, WS_SUBPROTOCOL, {
      ca: [this.o.caPem, creds.trustBundlePem],
      cert: creds.certPem,
      key: creds.keyPem,
      // ws types this as its own callback, but hands it to tls.connect, which is what runs it.
      checkServerIdentity: checkManagerIdentity() as never,
      maxPayload: this.o.maxPayloadBytes ?? 64 * 1024 * 1024,
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    ws.on('unexpected-response', (_req, res) => {
      if (res.statusCode === 403) this.onRevoked('the manager refuses this sidecar\'s revoked certificate');
      // 401: the manager no longer knows this certificate (re-enrolled elsewhere, data lost):
      // forget it, so the next attempt enrolls again if a token is configured.
      if (res.statusCode === 401) {
        this.logger.warn('the manager refused this certificate; will re-enroll');
        this.creds.forget();
      }
      ws.terminate();
    });
    ws.on('open', () => {
      this.lastFrame = Date.now();
      this.send({ type: 'hello', protocol: PROTOCOL_VERSION, node: this.o.node, lastVersion: this.version_ });
      this.startHeartbeat();
    });
    ws.on('message', (data) => {
      this.lastFrame = Date.now();
      let msg: ManagerMessage;
      try {
        msg = parseManagerMessage(data as Buffer);
      } catch (err) {
        this.stats.protocolErrors++;
        this.logger.warn({ err: (err as Error).message }, 'malformed frame from the manager; ignored');
        return;
      }
      if (!this.connected_) {
        this.connected_ = true;
        this.attempt = 0;
        this.g.connected.set(1);
        this.emit('connected');
        this.telemetry.flush();
        this.maybeRenew();
      }
      this.onMessage(msg);
    });
    ws.on('pong', () => (this.lastFrame = Date.now()));
    ws.on('error', (err) => this.logger.debug({ err: err.message }, 'control stream error'));
    ws.on('close', (code, reason) => {
      if (this.ws === ws) this.ws = undefined;
      this.stopHeartbeat();
      const was = this.connected_;
      this.connected_ = false;
      this.g.connected.set(0);
      if (was) this.emit('disconnected', code, reason.toString());
      if (code === CLOSE.REVOKED) this.onRevoked(reason.toString());
      this.scheduleRetry();
    });
  }

  private onRevoked(reason: string): void {
    if (this.revoked) return;
    this.revoked = true;
    // Fail static still holds for the data plane; only the control stream gives up, since every
    // attempt would be refused and audited until an operator gives this workload a new identity.
    this.logger.error({ reason }, 'this sidecar\'s identity was revoked by the zone manager; no longer reconnecting');
    this.emit('revoked', reason);
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    const every = this.o.heartbeatMs ?? 10_000;
    // The manager heartbeats every 10 s by default; silence well past that means a dead stream.
    const idle = this.o.idleTimeoutMs ?? 45_000;
    this.hbTimer = setInterval(() => {
      if (Date.now() - this.lastFrame > idle) {
        this.logger.warn('control stream silent; reconnecting');
        this.ws?.terminate();
        return;
      }
      this.send({ type: 'heartbeat', ts: Date.now() });
      this.maybeRenew();
    }, every);
    this.hbTimer.unref();
  }

  private stopHeartbeat(): void {
    if (this.hbTimer) clearInterval(this.hbTimer);
    this.hbTimer = undefined;
  }

  private send(msg: SidecarMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encode(msg));
  }

  private onMessage(msg: ManagerMessage): void {
    switch (msg.type) {
      case 'snapshot':
      case 'delta':
        // Serialised: a version is fully applied and answered before the next is looked at.
        this.work = this.work.then(() => this.onPush(msg)).catch((err: Error) => this.logger.error({ err }, 'push handling failed'));
        return;
      case 'cert':
        if (msg.purpose === 'workload') {
          const bundle = (msg.trustBundle ?? []).join('') || this.creds.current?.trustBundlePem || this.o.caPem;
          for (const w of this.workloadWaiters) w(msg.cert + msg.chain.join(''), bundle);
          this.workloadWaiters.clear();
          return;
        }
        void this.creds.onCert(msg.cert + msg.chain.join(''), msg.expiresAt);
        return;
      case 'error':
        this.creds.renewalFailed();
        this.logger.warn({ code: msg.code, reason: msg.message }, 'manager reported an error');
        return;
      default:
        return;
    }
  }

  private async onPush(msg: SnapshotMsg | DeltaMsg): Promise<void> {
    if (msg.version < this.version_ || (msg.version === this.version_ && msg.type === 'delta')) {
      this.stats.stale++;
      this.g.stale.inc();
      return;
    }
    if (msg.version === this.version_) {
      // The same version again (a resend after a lost ACK): already in force.
      this.send({ type: 'ack', version: msg.version, nonce: msg.nonce });
      return;
    }
    let next: Resources;
    if (msg.type === 'delta') {
      if (msg.baseVersion !== this.version_) {
        // We are not on the version the delta builds on: ask for a full snapshot.
        this.send({ type: 'hello', protocol: PROTOCOL_VERSION, node: this.o.node, lastVersion: 0 });
        return;
      }
      next = { ...this.resources, ...msg.resources };
    } else {
      next = { ...emptyResources(), ...msg.resources };
    }
    try {
      await this.target!.applyResources(nonEmpty(next), msg.version);
    } catch (err) {
      const error = (err as Error).message || String(err);
      this.stats.nacked++;
      this.g.nacks.inc();
      this.logger.warn({ version: msg.version, error }, 'config rejected; previous version stays in force');
      this.send({ type: 'nack', version: msg.version, nonce: msg.nonce, error: error.slice(0, 4000) });
      this.emit('nacked', msg.version, error);
      return;
    }
    this.resources = next;
    this.version_ = msg.version;
    this.appliedAt = Date.now();
    this.g.version.set(msg.version);
    this.stats.applied++;
    this.send({ type: 'ack', version: msg.version, nonce: msg.nonce });
    this.emit('applied', msg.version);
    this.persist();
  }

  private maybeRenew(): void {
    this.creds.maybeRenew(this.connected_, (msg) => this.send(msg));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    this.telemetry.flush();
    this.telemetry.close();
    const ws = this.ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((r) => {
        ws.once('close', () => r());
        ws.close(1000, 'sidecar shutting down');
        setTimeout(() => {
          ws.terminate();
          r();
        }, 1000).unref();
      });
    }
    await this.work;
    await this.snapshots.idle();
  }
}
