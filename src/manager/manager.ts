import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdir, writeFile, rename, access } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { EtzError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import { Gauge, createRegistry, type Registry } from '../core/metrics.js';
import { VERSION } from '../core/version.js';
import {
  CA_FILES, formatSpiffeId, initCa, issueWorkloadCert, loadCa, parseDuration, saveCa, splitPemCerts, type CaMaterial,
} from '../identity/index.js';
import { STREAM_PATH, type ResourceType } from '../protocol/messages.js';
import { registerRoutes } from './api/routes.js';
import { Router, peerSpiffeId, readBody, sendError, sendJson, type Auth, type Handler } from './api/http.js';
import { AuditLog } from './audit.js';
import { AdminAuth, BootstrapTokens, ensureAdminToken, ADMIN_TOKEN_FILE } from './auth.js';
import { engineConfigOf, type ManagerConfig } from './config.js';
import { compileZoneResources } from './zones/compile.js';
import type { EngineConfig } from './risk/config.js';
import { EnrollmentService } from './enroll.js';
import { PolicyService } from './policies.js';
import { ConfigHub } from './pubsub/hub.js';
import { ResourceService } from './resources.js';
import { RevocationService } from './revocation.js';
import { COLL, type Store } from './store/store.js';
import { WalStore } from './store/wal-store.js';
import { StreamServer } from './stream.js';
import { TelemetryIntake, type RiskSink } from './telemetry-intake.js';
import { StoreZoneBackend, type Zone, type ZoneBackend } from './zone-backend.js';

/**
 * The zone manager process: CA, store, operator API, sidecar enrollment and the control stream
 * on one HTTPS listener. The risk engine and zone automation attach through setRiskSink,
 * setZoneBackend, route() and publish(); without them the manager runs with operator-made
 * zones and a pass-through telemetry sink.
 */

export const MANAGER_NAMESPACE = 'etz-system';
export const MANAGER_SERVICE_ACCOUNT = 'etz-manager';
export const ENDPOINT_FILE = 'endpoint.json';

export interface ManagerOptions {
  config: ManagerConfig;
  recordFile?: string;
  logger?: Logger;
  metrics?: Registry;
  /** Called once, on first start, with the new admin token (the CLI prints it to stderr). */
  onAdminTokenCreated?: (token: string, file: string) => void;
  /** A store other than the embedded one (e.g. a shared store for several replicas). */
  store?: Store;
}

export class Manager {
  static async start(opts: ManagerOptions): Promise<Manager> {
    const m = new Manager(opts);
    try {
      await m.init();
    } catch (err) {
      await m.close().catch(() => {});
      throw err;
    }
    return m;
  }

  readonly config: ManagerConfig;
  readonly dataDir: string;
  readonly logger: Logger;
  readonly metrics: Registry;
  readonly router = new Router();
  readonly hub: ConfigHub;
  store!: Store;
  ca!: CaMaterial;
  audit!: AuditLog;
  tokens!: BootstrapTokens;
  enrollment!: EnrollmentService;
  policies!: PolicyService;
  resources!: ResourceService;
  revocations!: RevocationService;
  intake!: TelemetryIntake;
  private zoneBackend!: ZoneBackend;
  private stream!: StreamServer;
  private server!: Server;
  private admin!: AdminAuth;
  private timers: NodeJS.Timeout[] = [];
  private readonly startedAt = Date.now();
  readonly engineConfig: EngineConfig;
  private url_ = '';

  private constructor(private readonly opts: ManagerOptions) {
    this.config = opts.config;
    this.dataDir = resolve(opts.config.dataDir);
    this.logger = opts.logger ?? nullLogger;
    this.metrics = opts.metrics ?? createRegistry({ defaultMetrics: true });
    this.engineConfig = engineConfigOf(opts.config);
    this.hub = new ConfigHub({ debounceMs: this.config.pubsub.debounceMs, ackTimeoutMs: this.config.pubsub.ackTimeoutMs, maxBufferedBytes: this.config.pubsub.maxBufferedBytes });
    const hub = this.hub;
    // Read at scrape time from the hub's own counters: nothing extra on the push path.
    new Gauge({
      name: 'etz_manager_pubsub',
      help: 'Config distribution: pushes (snapshots, deltas), ACKs, NACKs, stale ACKs ignored, changes coalesced for busy sidecars, sidecars skipped as slow, config version',
      labelNames: ['what'],
      registers: [this.metrics],
      collect() {
        for (const [k, v] of Object.entries(hub.stats)) this.set({ what: k }, v);
        this.set({ what: 'subscribers' }, hub.subscriberCount());
        this.set({ what: 'configVersion' }, hub.currentVersion);
      },
    });
  }

  get url(): string {
    return this.url_;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get spiffeId(): string {
    return formatSpiffeId(this.ca.trustDomain, MANAGER_NAMESPACE, MANAGER_SERVICE_ACCOUNT);
  }

  /** Where the trust bundle lives: what sidecars and the CLI pass as their CA file. */
  get caFile(): string {
    return join(this.config.caDir ? resolve(this.config.caDir) : join(this.dataDir, 'ca'), CA_FILES.bundle);
  }

  private async init(): Promise<void> {
    const c = this.config;
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    this.ca = await this.loadOrCreateCa();
    this.store = this.opts.store ?? await WalStore.open({ dir: join(this.dataDir, 'store'), compactBytes: c.store.compactBytes, retain: { [COLL.audit]: c.store.auditRetain } });
    this.audit = new AuditLog(this.store);
    this.tokens = new BootstrapTokens(this.store);
    const { token, created } = await ensureAdminToken(this.dataDir);
    if (created) this.opts.onAdminTokenCreated?.(token, join(this.dataDir, ADMIN_TOKEN_FILE));
    this.admin = new AdminAuth(token, new Set(c.api.adminIdentities));
    this.revocations = new RevocationService(this.store, this.hub);
    const revocations = this.revocations;
    this.enrollment = new EnrollmentService(this.store, this.ca, this.tokens, { certTtlMs: parseDuration(c.certTtl, 'certTtl'), metrics: this.metrics, logger: this.logger, isRevoked: (i) => revocations.isInstanceRevoked(i) });
    this.policies = new PolicyService(this.store, this.hub);
    this.resources = new ResourceService(this.store, this.hub);
    this.intake = new TelemetryIntake({ metrics: this.metrics, logger: this.logger, ...(this.opts.recordFile ? { recordFile: this.opts.recordFile } : {}) });
    this.setZoneBackend(new StoreZoneBackend(this.store));
    this.stream = new StreamServer({
      hub: this.hub, intake: this.intake, enrollment: this.enrollment, audit: this.audit, logger: this.logger, metrics: this.metrics,
      maxPayloadBytes: c.pubsub.maxPayloadBytes, idleTimeoutMs: c.pubsub.idleTimeoutMs, maxRecordsPerMessage: c.telemetry.maxRecordsPerMessage,
      isRevoked: (serial) => revocations.isSerialRevoked(serial),
    });
    registerRoutes(this.router, {
      hub: this.hub, audit: this.audit, tokens: this.tokens, enrollment: this.enrollment, policies: this.policies, resources: this.resources,
      intake: this.intake, zones: () => this.zoneBackend, metrics: this.metrics, defaultTokenTtlMs: parseDuration(c.tokens.defaultTtl, 'tokens.defaultTtl'),
      startedAt: this.startedAt, version: VERSION,
      revocations, closeStreams: (instance, reason) => this.stream.revoke(instance, reason),
    });

    // Everything durable goes back into the hub before the first sidecar can connect.
    this.hub.set('mesh', 'trustBundle', splitPemCerts(this.ca.trustBundlePem), 'trust bundle');
    this.policies.publish('startup');
    this.resources.publishAll();
    this.revocations.publish();
    this.publishZones(this.zoneBackend.list());
    this.hub.publish();

    const serverCert = await issueWorkloadCert(this.ca, this.spiffeId, { ttlMs: 365 * 86_400_000 });
    this.server = createServer({
      key: serverCert.keyPem,
      cert: serverCert.certChainPem,
      ca: splitPemCerts(this.ca.trustBundlePem),
      // Enrollment and token-authenticated operators come without a certificate; each route
      // decides what it requires, and the stream path accepts only enrolled certificates.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    this.server.on('request', (req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== STREAM_PATH) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      this.stream.handleUpgrade(req, socket, head);
    });
    this.server.on('tlsClientError', () => {});
    await new Promise<void>((resolveListen, reject) => {
      this.server.once('error', reject);
      this.server.listen(c.listen.port, c.listen.host, () => {
        this.server.off('error', reject);
        resolveListen();
      });
    });
    const host = c.listen.host.includes(':') ? `[${c.listen.host}]` : c.listen.host;
    this.url_ = `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${this.port}`;
    await writeAtomic(join(this.dataDir, ENDPOINT_FILE), JSON.stringify({ url: this.url_, pid: process.pid, spiffeId: this.spiffeId, caFile: this.caFile }) + '\n');

    this.timers.push(setInterval(() => this.stream.tick(), c.pubsub.heartbeatMs));
    this.timers.push(setInterval(() => void this.housekeeping(), 1000));
    for (const t of this.timers) t.unref();
    await this.audit.record({ actor: 'manager', action: 'manager.start', outcome: 'ok', details: { url: this.url_, version: VERSION } });
    this.logger.info({ url: this.url_, spiffeId: this.spiffeId, dataDir: this.dataDir }, 'zone manager listening');
  }

  private async loadOrCreateCa(): Promise<CaMaterial> {
    const dir = this.config.caDir ? resolve(this.config.caDir) : join(this.dataDir, 'ca');
    try {
      await access(join(dir, CA_FILES.meta));
    } catch {
      if (this.config.caDir) throw new EtzError('ETZ_ERR_CONFIG_INVALID', `caDir ${dir} holds no CA (${CA_FILES.meta} missing)`);
      const ca = await initCa({ trustDomain: this.config.trustDomain });
      await saveCa(dir, ca);
      this.logger.info({ dir, trustDomain: ca.trustDomain }, 'created the mesh CA');
      return ca;
    }
    return loadCa(dir);
  }

  private async housekeeping(): Promise<void> {
    this.hub.tick();
    try {
      const n = await this.revocations.expire();
      if (n > 0) this.logger.info({ expired: n }, 'revocation entries of expired certificates dropped');
    } catch (err) {
      this.logger.error({ err }, 'revocation expiry failed');
    }
    try {
      const gone = await this.zoneBackend.expire(Date.now());
      for (const z of gone) await this.audit.record({ actor: 'manager', action: 'zone.expire', outcome: 'ok', target: z.id, reason: 'ttl elapsed' });
    } catch (err) {
      this.logger.error({ err }, 'zone expiry failed');
    }
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'https://manager');
      const m = this.router.match(req.method ?? 'GET', url.pathname);
      if (!m) throw new EtzError('ETZ_ERR_NOT_FOUND', `no route ${req.method} ${url.pathname}`);
      if ('allowed' in m) {
        res.setHeader('allow', m.allowed.join(', '));
        return sendJson(res, 405, { error: 'ETZ_ERR_BAD_REQUEST', reason: `method ${req.method} not allowed` });
      }
      let actor = 'anonymous';
      if (m.route.auth === 'admin') {
        const a = this.admin.check(req.headers.authorization, peerSpiffeId(req));
        if (!a.ok) {
          await this.audit.record({ actor: peerSpiffeId(req) ?? req.socket.remoteAddress ?? '?', action: 'api.access', outcome: 'denied', target: `${req.method} ${url.pathname}`, reason: a.reason }).catch(() => {});
          throw new EtzError(a.reason.includes('not an admin') ? 'ETZ_ERR_FORBIDDEN' : 'ETZ_ERR_UNAUTHENTICATED', a.reason);
        }
        actor = a.actor;
      }
      const limit = this.config.api.maxBodyBytes;
      const result = await m.route.handler({ req, res, params: m.params, query: url.searchParams, actor, body: () => readBody(req, limit) });
      if (result !== undefined) sendJson(res, 200, result);
    } catch (err) {
      if (!(err instanceof EtzError)) this.logger.error({ err, url: req.url }, 'API handler failed');
      sendError(res, err);
    }
  }

  /** Mount an extra endpoint (risk, traffic, dashboard data). */
  route(method: string, path: string, auth: Auth, handler: Handler): void {
    this.router.route(method, path, auth, handler);
  }

  /** Hand accepted telemetry to the risk engine. */
  setRiskSink(sink: RiskSink): void {
    this.intake.sink = sink;
  }

  /** Replace the zone backend (the ETZ manager engine); its changes are published as `zones`. */
  setZoneBackend(backend: ZoneBackend): void {
    this.zoneBackend = backend;
    backend.onChange((zones) => {
      if (this.zoneBackend === backend) this.publishZones(zones);
    });
    this.publishZones(backend.list());
  }

  get zones(): ZoneBackend {
    return this.zoneBackend;
  }

  /** Publish computed resources (zones, principals, intel) to a topic. */
  publish(topic: string, type: ResourceType, items: unknown[], reason?: string): void {
    this.hub.set(topic, type, items, reason);
  }

  /** Zones and flagged principals, compiled once per change to what sidecars enforce. */
  private publishZones(zones: Zone[]): void {
    const flagged = this.zoneBackend.flagged?.() ?? [];
    const c = compileZoneResources(zones, flagged, this.engineConfig);
    // Nothing to enforce is published as "none", so a sidecar without zone filters is unaffected.
    this.hub.set('mesh', 'zones', c.zones.zones.length ? c.zones as unknown as Record<string, unknown> : [], 'zones changed');
    this.hub.set('mesh', 'principals', c.principals.flagged.length ? c.principals as unknown as Record<string, unknown> : [], 'principals changed');
  }

  private closers: Array<() => void | Promise<void>> = [];

  /** Run `fn` when the manager closes (before the store closes). */
  onClose(fn: () => void | Promise<void>): void {
    this.closers.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.closers.splice(0)) await fn();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.stream?.close();
    if (this.server?.listening) {
      this.server.closeAllConnections?.();
      await new Promise<void>((r) => this.server.close(() => r()));
    }
    this.hub.close();
    await this.intake?.close();
    await this.store?.close();
  }
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}
