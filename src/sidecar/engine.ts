import type { Server } from 'node:http';
import type { Schema } from 'ajv';
import { createLogger, type Logger } from '../core/logger.js';
import { createRegistry, type Registry } from '../core/metrics.js';
import { validateConfig } from '../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../config/sidecar-schema.js';
import type { CompileEnv, Direction, FilterFactory } from './filter.js';
import { buildClusters } from './clusters.js';
import { compileChain, validateResources, type CompiledChain, type ListenerShared } from './chain.js';
import { FILTERS, EXTRA_RESOURCES } from './filters/index.js';
import { HttpListener } from './listeners/http-listener.js';
import { createListenerServer, type ServerFactory } from './listeners/server-factory.js';
import { createAdminServer } from './listeners/admin.js';
import { UpstreamConnector, type ConnectorOptions } from './upstream/connector.js';
import { transportFor, type UpstreamTransport } from './upstream/transport.js';
import { sidecarMetrics, type SidecarMetrics } from './metrics.js';
import { selfInfo, type TelemetrySink } from './telemetry.js';
import { setupSidecarTls, type SidecarTls } from './tls/sidecar-tls.js';
import { closeInstance } from './routing/instance-state.js';
import type { WorkloadIdentity } from './tls/workload-identity.js';
import { compileRevoked } from './tls/revocation.js';
import type { RevokedCert } from '../protocol/messages.js';
import { describePortModes, localInboundModes, peerAuthenticationSchema, resolvePortModes } from './tls/peer-authentication.js';
import type { PortModes } from './tls/port-modes.js';

/**
 * The sidecar's private engine: owns the listeners, compiles a chain per listener per config
 * version, swaps them in, serves the admin port and drains on close. Sidecar (sidecar.ts) is the
 * thin public face over it.
 */

export interface SidecarOptions {
  logger?: Logger;
  registry?: Registry;
  telemetry?: TelemetrySink;
  /** Replace how a listener's server is made (the mTLS layer makes inbound a TLS server). */
  serverFactory?: ServerFactory;
  /** Replace how upstream connections are made per direction and version (mTLS origination). */
  transport?: (direction: Direction, config: SidecarConfig, resources: Readonly<Record<string, unknown>>) => UpstreamTransport;
  /**
   * The workload identity (e.g. from enrollment with the zone manager); turns mesh mTLS on with
   * the config's `tls` section or its defaults. Without it, `tls` files or caDir provide one.
   */
  identity?: WorkloadIdentity;
  /** The config's file name, named by config errors (default '(sidecar config)'). */
  source?: string;
  /** Filter registry override, for tests of the chain machinery. */
  filters?: readonly FilterFactory[];
  extraResources?: Readonly<Record<string, Schema>>;
}

interface ListenerSlot {
  direction: Direction;
  listener: HttpListener;
  shared: ListenerShared;
  connector: UpstreamConnector;
  chain: CompiledChain;
  gauge: { direction: string; connector: UpstreamConnector };
}

const DIRECTIONS: readonly ('inbound' | 'outbound' | 'gateway')[] = ['inbound', 'outbound', 'gateway'];

export class SidecarEngine {
  readonly config: SidecarConfig;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly metrics: SidecarMetrics;
  readonly #opts: SidecarOptions;
  readonly #filters: readonly FilterFactory[];
  readonly #extra: Readonly<Record<string, Schema>>;
  readonly #slots: ListenerSlot[] = [];
  #admin: Server | undefined;
  #ports = { inbound: 0, outbound: 0, gateway: 0, admin: 0 };
  #version = 0;
  #resources: Record<string, unknown> = {};
  #ready = false;
  #closing: Promise<void> | undefined;
  #tls: SidecarTls | null = null;
  #applying: Promise<void> = Promise.resolve();
  #modesInForce = '';

  private constructor(config: SidecarConfig, opts: SidecarOptions) {
    this.config = config;
    this.#opts = opts;
    this.logger = opts.logger ?? createLogger({ name: 'etz-sidecar', level: config.logging.level, thread: false });
    this.registry = opts.registry ?? createRegistry({ defaultMetrics: true });
    this.metrics = sidecarMetrics(this.registry);
    this.#filters = opts.filters ?? FILTERS;
    // Inbound mTLS modes pushed by the manager are the TLS layer's, not a filter's.
    this.#extra = { peerAuthentication: peerAuthenticationSchema, ...(opts.extraResources ?? EXTRA_RESOURCES) };
  }

  static async start(input: unknown, opts: SidecarOptions = {}): Promise<SidecarEngine> {
    const source = opts.source ?? '(sidecar config)';
    const config = validateConfig<SidecarConfig>(source, sidecarSchema, structuredClone(input));
    const engine = new SidecarEngine(config, opts);
    try {
      engine.#tls = await setupSidecarTls(config, { ...(opts.identity ? { identity: opts.identity } : {}), source, registry: engine.registry, logger: engine.logger });
      await engine.#listen();
    } catch (err) {
      await engine.#destroy();
      throw err;
    }
    return engine;
  }

  get ports(): { inbound: number; outbound: number; gateway: number; admin: number } {
    return { ...this.#ports };
  }

  get version(): number {
    return this.#version;
  }

  get ready(): boolean {
    return this.#ready;
  }

  #connectorOptions(): ConnectorOptions {
    const c = this.config;
    return {
      connectTimeoutMs: c.timeouts.connectMs,
      firstByteMs: c.timeouts.firstByteMs,
      idleMs: c.timeouts.idleMs,
      keepAliveMs: c.upstream.keepAliveMs,
      connections: c.upstream.connectionsPerEndpoint,
    };
  }

  #build(direction: Direction, resources: Record<string, unknown>, version: number, shared: ListenerShared, previous?: UpstreamConnector) {
    const transport = (this.#opts.transport ?? this.#tls?.transport ?? transportFor)(direction, this.config, resources);
    const connector = new UpstreamConnector(transport, this.#connectorOptions(), previous);
    try {
      const clusters = buildClusters(direction, this.config);
      const env: CompileEnv = {
        logger: this.logger,
        metrics: this.registry,
        version,
        direction,
        sidecar: this.config,
        resources,
        clusters: clusters.byName,
        connector,
      };
      return { chain: compileChain(this.#filters, env, clusters, shared), connector };
    } catch (err) {
      void connector.retire(previous);
      throw err;
    }
  }

  /** The inbound modes a version asks for; throws ConfigError (→ NACK) before anything is swapped. */
  #portModes(resources: Record<string, unknown>, source: string): PortModes {
    return resolvePortModes(localInboundModes(this.config), resources.peerAuthentication, source, this.#tls !== null);
  }

  #setPortModes(modes: PortModes, version: number): void {
    this.#tls?.setPortModes(modes);
    const text = describePortModes(modes);
    if (text === this.#modesInForce) return;
    const first = this.#modesInForce === '';
    this.#modesInForce = text;
    if (!first) this.logger.warn({ version, modes: text }, 'inbound mTLS modes changed; new connections get them, open ones keep theirs');
  }

  async #listen(): Promise<void> {
    const c = this.config;
    const source = this.#opts.source ?? '(sidecar config)';
    const resources = validateResources(c.resources, this.#filters, this.#extra, source);
    this.#setPortModes(this.#portModes(resources, source), 0);
    for (const direction of DIRECTIONS) {
      const lc = c[direction];
      if (!lc.enabled) continue;
      const shared: ListenerShared = {
        localReplies: this.metrics.localReplies,
        self: selfInfo(c),
        logger: this.logger,
        sink: c.telemetry.enabled ? this.#opts.telemetry : undefined,
        release: undefined,
      };
      const { chain, connector } = this.#build(direction, resources, 0, shared);
      const listener = new HttpListener(direction, c, chain, this.#opts.serverFactory ?? this.#tls?.serverFactory ?? createListenerServer);
      shared.release = listener.release;
      const gauge = { direction, connector };
      this.metrics.connectors.add(gauge);
      this.#slots.push({ direction, listener, shared, connector, chain, gauge });
      this.#ports[direction] = await listener.listen(lc.host, lc.port);
    }
    this.#resources = resources;
    this.#tls?.revocation.set(compileRevoked(resources.revoked as RevokedCert[] | undefined));
    if (c.admin.enabled) {
      const admin = createAdminServer({
        ready: () => this.#ready,
        registry: this.registry,
        configDump: () => this.configDump(),
        token: c.admin.token,
      });
      this.#admin = admin;
      this.#ports.admin = await new Promise<number>((resolve, reject) => {
        admin.once('error', reject);
        admin.listen({ host: c.admin.host, port: c.admin.port }, () => {
          admin.off('error', reject);
          resolve((admin.address() as { port: number }).port);
        });
      });
    }
    this.#ready = true;
    this.logger.info({ ports: this.#ports, service: c.service.name }, 'sidecar listening');
  }

  /**
   * Validate and compile every listener's chain for `resources`; only when all compile are they
   * swapped in. Calls are serialised, so two pushes never interleave.
   */
  applyResources(resources: Record<string, unknown>, version: number): Promise<void> {
    const run = this.#applying.then(() => this.#apply(resources, version));
    this.#applying = run.catch(() => undefined);
    return run;
  }

  async #apply(resources: Record<string, unknown>, version: number): Promise<void> {
    if (this.#closing) throw new Error('sidecar is closing');
    const validated = validateResources(resources, this.#filters, this.#extra, `resources v${version}`);
    const revoked = compileRevoked(validated.revoked as RevokedCert[] | undefined);
    const portModes = this.#portModes(validated, `resources v${version}`);
    const built: { slot: ListenerSlot; chain: CompiledChain; connector: UpstreamConnector }[] = [];
    try {
      for (const slot of this.#slots) {
        const { chain, connector } = this.#build(slot.direction, validated, version, slot.shared, slot.connector);
        built.push({ slot, chain, connector });
      }
    } catch (err) {
      for (const b of built) void b.connector.retire(b.slot.connector);
      throw err;
    }
    let closed = 0;
    for (const { slot, chain, connector } of built) {
      const old = slot.connector;
      slot.chain = chain;
      slot.connector = connector;
      slot.gauge.connector = connector;
      closed += slot.listener.swap(chain);
      void old.retire(connector);
    }
    // After the chains: a version that revokes a peer also closes its open connections.
    const revokedClosed = this.#tls?.revocation.set(revoked) ?? 0;
    this.#setPortModes(portModes, version);
    if (revokedClosed > 0) this.logger.warn({ version, closedConnections: revokedClosed, revoked: revoked.size }, 'connections of revoked peers closed');
    this.#version = version;
    this.#resources = validated;
    this.logger.info({ version, closedConnections: closed + revokedClosed }, 'config version applied');
  }

  configDump(): Record<string, unknown> {
    return {
      version: this.#version,
      ports: this.ports,
      config: { ...this.config, resources: this.#resources },
      chains: Object.fromEntries(this.#slots.map((s) => [s.direction, s.chain.filters.map((f) => f.name)])),
    };
  }

  /** Graceful drain: stop accepting, finish in-flight requests until drainMs, then close. */
  close(opts: { drainMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#drain(opts.drainMs ?? this.config.drain.timeoutMs);
    return this.#closing;
  }

  async #drain(drainMs: number): Promise<void> {
    this.#ready = false;
    this.logger.info({ drainMs }, 'draining');
    await Promise.all(this.#slots.map((s) => s.listener.drain(drainMs)));
    await Promise.all(this.#slots.map((s) => s.connector.destroy()));
    for (const s of this.#slots) this.metrics.connectors.delete(s.gauge);
    this.#tls?.close();
    await closeInstance(this.registry);
    await this.#closeAdmin();
  }

  async #closeAdmin(): Promise<void> {
    const admin = this.#admin;
    if (!admin) return;
    await new Promise<void>((resolve) => {
      admin.close(() => resolve());
      admin.closeAllConnections();
    });
  }

  async #destroy(): Promise<void> {
    for (const s of this.#slots) {
      s.listener.destroy();
      await s.connector.destroy();
      this.metrics.connectors.delete(s.gauge);
    }
    this.#tls?.close();
    await closeInstance(this.registry);
    if (this.#admin?.listening) await this.#closeAdmin();
  }
}
