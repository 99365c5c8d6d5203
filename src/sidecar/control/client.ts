import { EventEmitter } from 'node:events';
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { EtzError } from '../../core/errors.js';
import { nullLogger, type Logger } from '../../core/logger.js';
import { Counter, Gauge, createRegistry, type Registry } from '../../core/metrics.js';
import {
  PROTOCOL_VERSION, RESOURCE_TYPES, STREAM_PATH, WS_SUBPROTOCOL, emptyResources, encode, parseManagerMessage,
  type DeltaMsg, type ManagerMessage, type NodeInfo, type Resources, type SidecarMessage, type SnapshotMsg,
} from '../../protocol/messages.js';
import { checkManagerIdentity } from '../../protocol/server-identity.js';
import { enroll, loadCredentials, newKeyAndCsr, saveCredentials, writeFileAtomic, type Credentials } from './credentials.js';
import { TelemetryBatcher } from './telemetry-batcher.js';

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

export interface ApplyTarget {
  applyResources(resources: Record<string, unknown>, version: number): Promise<void>;
}

export interface ControlClientOptions {
  /** Manager base URL, e.g. https://127.0.0.1:15012. */
  url: string;
  /** PEM of the CA that issued the manager's certificate (the mesh trust bundle). */
  caPem: string;
  dataDir: string;
  node: NodeInfo;
  /** Where versions are applied; may be given later with attach(). */
  target?: ApplyTarget;
  bootstrapToken?: string;
  logger?: Logger;
  metrics?: Registry;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  heartbeatMs?: number;
  /** No frame from the manager for this long: the stream is considered dead. */
  idleTimeoutMs?: number;
  /** Renew when this fraction of the certificate lifetime has passed (default 2/3). */
  renewAt?: number;
  maxPayloadBytes?: number;
  telemetry?: { capacity?: number; maxBatch?: number; flushMs?: number };
  /** Keep the fail-static snapshot on disk (default true). */
  persistSnapshot?: boolean;
}

interface SnapshotFile {
  version: number;
  resources: Resources;
  savedAt: number;
}

export interface ControlClientEvents {
  applied: [version: number];
  nacked: [version: number, error: string];
  connected: [];
  disconnected: [code: number, reason: string];
  enrolled: [spiffeId: string];
  renewed: [expiresAt: number];
  error: [err: Error];
}

const SNAPSHOT_FILE = 'snapshot.json';

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
  async ensureCredentials(): Promise<Credentials> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.credentialsNow();
      } catch (err) {
        if (this.closed || (err as { code?: string }).code === 'ETZ_ERR_ENROLL_FAILED') throw err;
        this.logger.warn({ err: (err as Error).message }, 'cannot enroll yet; retrying');
        const cap = Math.min(this.o.backoffMaxMs ?? 30_000, (this.o.backoffBaseMs ?? 250) * 2 ** Math.min(attempt, 20));
        await new Promise((r) => setTimeout(r, Math.round(Math.random() * cap)));
      }
    }
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
  private creds: Credentials | undefined;
  private version_ = 0;
  private resources: Resources = emptyResources();
  private appliedAt = 0;
  private attempt = 0;
  private closed = false;
  private connected_ = false;
  private work: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private hbTimer: NodeJS.Timeout | undefined;
  private lastFrame = 0;
  private renewing = false;
  private saving: Promise<void> | undefined;
  private saveAgain = false;
  private pendingKeyPem: string | undefined;
  private readonly g: { connected: Gauge; version: Gauge; nacks: Counter; stale: Counter; reconnects: Counter; dropped: Counter };
  readonly stats = { applied: 0, nacked: 0, stale: 0, reconnects: 0, protocolErrors: 0 };

  private constructor(opts: ControlClientOptions) {
    super();
    this.o = opts;
    this.logger = opts.logger ?? nullLogger;
    const reg = opts.metrics ?? createRegistry();
    const self = this;
    this.g = {
      connected: new Gauge({ name: 'etz_control_plane_connected', help: '1 while the control stream to the manager is open', registers: [reg] }),
      version: new Gauge({ name: 'etz_control_plane_config_version', help: 'Config version in force', registers: [reg] }),
      nacks: new Counter({ name: 'etz_control_plane_nacks_total', help: 'Config versions rejected', registers: [reg] }),
      stale: new Counter({ name: 'etz_control_plane_stale_pushes_total', help: 'Pushes ignored because their version was not newer', registers: [reg] }),
      reconnects: new Counter({ name: 'etz_control_plane_reconnects_total', help: 'Control stream (re)connection attempts', registers: [reg] }),
      dropped: new Counter({ name: 'etz_telemetry_dropped_total', help: 'Telemetry records dropped (buffer full while the manager was away)', registers: [reg] }),
    };
    new Gauge({
      name: 'etz_control_plane_snapshot_age_seconds',
      help: 'Age of the config in force (since it was received or, when loaded from disk, saved)',
      registers: [reg],
      collect() {
        this.set(self.appliedAt ? (Date.now() - self.appliedAt) / 1000 : -1);
      },
    });
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
    return this.creds;
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
    await mkdir(this.o.dataDir, { recursive: true, mode: 0o700 });
    let snap: SnapshotFile;
    try {
      snap = JSON.parse(await readFile(join(this.o.dataDir, SNAPSHOT_FILE), 'utf8')) as SnapshotFile;
    } catch {
      return;
    }
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
      this.logger.error({ err, file: join(this.o.dataDir, SNAPSHOT_FILE) }, 'saved config snapshot could not be applied; waiting for the manager');
    }
  }

  /**
   * Persist the version in force, off the push path: at most one write in flight, and a burst of
   * versions writes only the last one. The ACK does not wait for it — the manager holds the
   * config; the file only has to be recent enough to enforce while the manager is away.
   */
  private persist(): void {
    if (this.o.persistSnapshot === false) return;
    if (this.saving) {
      this.saveAgain = true;
      return;
    }
    this.saving = (async () => {
      do {
        this.saveAgain = false;
        const snap: SnapshotFile = { version: this.version_, resources: this.resources, savedAt: this.appliedAt };
        try {
          await writeFileAtomic(join(this.o.dataDir, SNAPSHOT_FILE), JSON.stringify(snap));
        } catch (err) {
          this.logger.error({ err }, 'could not persist the config snapshot');
        }
      } while (this.saveAgain && !this.closed);
      this.saving = undefined;
    })();
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
    if (this.closed || this.retryTimer) return;
    const base = this.o.backoffBaseMs ?? 250;
    const max = this.o.backoffMaxMs ?? 30_000;
    // Full jitter: after a manager restart, a thousand sidecars must not reconnect in lockstep.
    const cap = Math.min(max, base * 2 ** Math.min(this.attempt, 20));
    const delay = Math.round(Math.random() * cap);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.loop();
    }, delay);
    this.retryTimer.unref();
  }

  private async credentialsNow(): Promise<Credentials> {
    this.creds ??= await loadCredentials(this.o.dataDir);
    if (!this.creds || this.creds.expiresAt <= Date.now()) {
      if (!this.o.bootstrapToken) throw new EtzError('ETZ_ERR_ENROLL_FAILED', 'no valid certificate and no bootstrap token to enroll with');
      this.creds = await enroll({ url: this.o.url, caPem: this.o.caPem, token: this.o.bootstrapToken, node: this.o.node });
      await saveCredentials(this.o.dataDir, this.creds);
      this.logger.info({ spiffeId: this.creds.spiffeId }, 'enrolled with the manager');
      this.emit('enrolled', this.creds.spiffeId);
    }
    return this.creds;
  }

  private async connect(): Promise<void> {
    await this.credentialsNow();
    if (this.closed || !this.creds) return;
    this.stats.reconnects++;
    this.g.reconnects.inc();
    const url = new URL(STREAM_PATH, this.o.url);
    url.protocol = 'wss:';
    const ws = new WebSocket(url, WS_SUBPROTOCOL, {
      ca: [this.o.caPem, this.creds.trustBundlePem],
      cert: this.creds.certPem,
      key: this.creds.keyPem,
      // ws types this as its own callback, but hands it to tls.connect, which is what runs it.
      checkServerIdentity: checkManagerIdentity() as never,
      maxPayload: this.o.maxPayloadBytes ?? 64 * 1024 * 1024,
      perMessageDeflate: false,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    ws.on('unexpected-response', (_req, res) => {
      // 401: the manager no longer knows this certificate (re-enrolled elsewhere, data lost):
      // forget it, so the next attempt enrolls again if a token is configured.
      if (res.statusCode === 401) {
        this.logger.warn('the manager refused this certificate; will re-enroll');
        this.creds = { ...this.creds!, expiresAt: 0 };
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
      this.scheduleRetry();
    });
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
          const bundle = (msg.trustBundle ?? []).join('') || this.creds?.trustBundlePem || this.o.caPem;
          for (const w of this.workloadWaiters) w(msg.cert + msg.chain.join(''), bundle);
          this.workloadWaiters.clear();
          return;
        }
        void this.onCert(msg.cert + msg.chain.join(''), msg.expiresAt);
        return;
      case 'error':
        this.renewing = false;
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

  // ---- certificate renewal over the stream ----
  private maybeRenew(): void {
    const c = this.creds;
    if (!c || this.renewing || !this.connected_) return;
    const at = c.issuedAt + (c.expiresAt - c.issuedAt) * (this.o.renewAt ?? 2 / 3);
    if (Date.now() < at) return;
    this.renewing = true;
    void newKeyAndCsr().then(({ keyPem, csrPem }) => {
      this.pendingKeyPem = keyPem;
      this.send({ type: 'renew', csr: csrPem, purpose: 'control' });
    }, () => (this.renewing = false));
  }

  private async onCert(certPem: string, expiresAt: number): Promise<void> {
    const keyPem = this.pendingKeyPem;
    this.renewing = false;
    if (!keyPem || !this.creds) return;
    this.pendingKeyPem = undefined;
    this.creds = { ...this.creds, keyPem, certPem, issuedAt: Date.now(), expiresAt };
    await saveCredentials(this.o.dataDir, this.creds);
    this.logger.info({ expiresAt: new Date(expiresAt).toISOString() }, 'certificate renewed');
    this.emit('renewed', expiresAt);
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
    await this.saving;
  }
}

// The sidecar validates each resource key it is given; types with nothing in them are left out
// so that a sidecar without, say, an intel filter accepts a config that carries no intel.
function nonEmpty(r: Resources): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of RESOURCE_TYPES) {
    const v = r[t];
    if (v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0)) out[t] = v;
  }
  return out;
}
