import type { Server } from 'node:http';
import { ConfigError, EtzError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Registry } from '../../core/metrics.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';
import { loadCa } from '../../identity/ca.js';
import { parseSpiffeId } from '../../identity/spiffe.js';
import type { Cluster, Endpoint } from '../clusters.js';
import type { Direction } from '../filter.js';
import { createListenerServer } from '../listeners/server-factory.js';
import type { UpstreamTransport } from '../upstream/transport.js';
import { plainTransport } from '../upstream/transport.js';
import type { MeshTlsConfig } from './config.js';
import { attachInboundMtls } from './inbound.js';
import { loadTlsMaterialFiles, watchTlsMaterialFiles } from './material.js';
import { DEFAULT_TLS, type TlsSettings } from './options.js';
import { createMtlsConnector, type ConnectBase } from './outbound.js';
import { compilePortModes, type PortModes } from './port-modes.js';
import type { InboundMtlsHandle } from './inbound.js';
import { RevocationList } from './revocation.js';
import { WorkloadIdentity } from './workload-identity.js';

/**
 * Wires mesh mTLS into a sidecar: builds (or takes) the workload identity, and gives the engine
 * its inbound server factory and per-direction upstream transport. mTLS is the default whether or
 * not the config has a `tls` section: without an identity source the sidecar refuses to start.
 * Null only when the config says `tls.mode: DISABLE` and there is no identity: the sidecar then
 * runs plaintext, because it was told to.
 */
export interface SidecarTls {
  readonly identity: WorkloadIdentity;
  readonly config: MeshTlsConfig;
  /** The `revoked` resource in force; the engine sets it per config version. */
  readonly revocation: RevocationList;
  /**
   * Put inbound modes in force for new connections (the engine, per config version, from the
   * pushed `peerAuthentication` merged over the file's); open connections keep theirs.
   */
  setPortModes(modes: PortModes): void;
  serverFactory(direction: Direction, config: SidecarConfig): Server;
  transport(direction: Direction, config: SidecarConfig, resources: Readonly<Record<string, unknown>>): UpstreamTransport;
  close(): void;
}

export interface SidecarTlsOptions {
  identity?: WorkloadIdentity;
  /** The config's file name, for errors (ConfigError names file, field and reason). */
  source?: string;
  registry: Registry;
  logger: Logger;
}

const DEFAULTS: MeshTlsConfig = {
  mode: 'STRICT', portLevel: {}, trustDomain: 'etz.local', certTtlMs: 86_400_000, renewFraction: 0.5, minVersion: 'TLSv1.3',
  cipherSuites: DEFAULT_TLS.cipherSuites, originate: true, plaintextServices: [], trustDomains: [], watchIntervalMs: 10_000,
};

/**
 * The rule that a sidecar which would speak mTLS has an identity source: an identity passed in
 * code (`hasIdentity`, e.g. enrollment), cert/key/CA files or a caDir. Only an explicit
 * `tls.mode: DISABLE` runs without one. Shared with `etz sidecar --check`, so a file that would be
 * refused at start is refused there too.
 */
export function identitySourceError(config: SidecarConfig, source: string, hasIdentity: boolean): ConfigError | undefined {
  const t = config.tls as Partial<MeshTlsConfig> | undefined;
  const mode = t?.mode ?? 'STRICT';
  let needsTls: boolean;
  try {
    needsTls = compilePortModes(mode, t?.portLevel, source).needsTls;
  } catch (err) {
    return err as ConfigError;
  }
  const files = (['certFile', 'keyFile', 'caFile'] as const).filter((f) => t?.[f] !== undefined);
  if (files.length > 0 && files.length < 3) {
    const missing = ['certFile', 'keyFile', 'caFile'].filter((f) => !(files as readonly string[]).includes(f));
    return new ConfigError(source, '/tls', `certFile, keyFile and caFile go together: ${missing.join(' and ')} missing`);
  }
  if (hasIdentity || files.length === 3 || t?.caDir || !needsTls) return undefined;
  const what = mode === 'DISABLE' ? 'on for some ports (tls.portLevel)' : `${mode} ${t === undefined ? 'by default ' : ''}`.trimEnd();
  return new ConfigError(source, '/tls', `mTLS is ${what} but the sidecar has no identity: set tls.certFile/keyFile/caFile (etz ca issue), or tls.caDir, or a manager section to enroll with the zone manager; to run without mTLS say tls.mode: DISABLE explicitly`);
}

export async function setupSidecarTls(config: SidecarConfig, opts: SidecarTlsOptions): Promise<SidecarTls | null> {
  const section = (config as SidecarConfig & { tls?: Partial<MeshTlsConfig> }).tls;
  const source = opts.source ?? '(sidecar config)';
  const c: MeshTlsConfig = { ...DEFAULTS, ...section };
  const portModes = compilePortModes(c.mode, c.portLevel, source);
  if (opts.identity === undefined && !portModes.needsTls && !c.certFile && !c.caDir) {
    // Only an explicit `mode: DISABLE` gets here (the default is STRICT), so plaintext is a choice.
    opts.logger.warn({ mode: c.mode }, 'mesh mTLS is DISABLED (tls.mode: DISABLE): mesh traffic is not authenticated or encrypted, inbound and outbound');
    return null;
  }
  const settings: TlsSettings = { ...DEFAULT_TLS, minVersion: c.minVersion, cipherSuites: c.cipherSuites };
  const spiffeId = c.spiffeId ?? `spiffe://${c.trustDomain}/ns/${config.service.namespace}/sa/${config.service.name}`;
  try {
    parseSpiffeId(spiffeId);
  } catch (err) {
    throw new ConfigError(source, '/tls/spiffeId', (err as Error).message);
  }
  const common = { metrics: opts.registry, logger: opts.logger, settings, renewFraction: c.renewFraction };
  const handles: Array<{ close(): void }> = [];
  let identity = opts.identity;
  let owned = false;
  if (identity === undefined) {
    owned = true;
    if (c.certFile && c.keyFile && c.caFile) {
      const files = { certFile: c.certFile, keyFile: c.keyFile, caFile: c.caFile };
      const material = await loadTlsMaterialFiles(files);
      if (material.notAfter <= Date.now()) {
        throw new EtzError('ETZ_ERR_TLS_MATERIAL', `${c.certFile}: the certificate expired at ${new Date(material.notAfter).toISOString()}`);
      }
      const id = new WorkloadIdentity(material, common);
      identity = id;
      const watcher = watchTlsMaterialFiles(files, (m) => {
        id.update(m);
        opts.logger.info({ identity: m.spiffeId, notAfter: new Date(m.notAfter).toISOString() }, 'certificate files changed; new certificate in force');
      }, {
        intervalMs: c.watchIntervalMs,
        onError: (err) => opts.logger.warn({ code: 'ETZ_ERR_TLS_MATERIAL', err: err.message }, 'changed certificate files not usable yet; keeping the current certificate'),
      });
      handles.push({ close: () => watcher.stop() });
    } else if (c.caDir) {
      const ca = await loadCa(c.caDir);
      if (ca.trustDomain !== c.trustDomain) throw new ConfigError(source, '/tls/caDir', `the CA serves trust domain '${ca.trustDomain}', not '${c.trustDomain}'`);
      identity = await WorkloadIdentity.fromLocalCa(ca, spiffeId, { ...common, ttlMs: c.certTtlMs });
    } else {
      // Neither DISABLE (returned above) nor a source: the shared rule names what to configure.
      throw identitySourceError(config, source, false)!;
    }
  }
  // Every branch above gave an identity or threw; a const keeps that for the closures below.
  const id: WorkloadIdentity = identity;
  if (id.spiffeId !== spiffeId && c.spiffeId !== undefined) {
    throw new EtzError('ETZ_ERR_TLS_MATERIAL', `the certificate is for '${id.spiffeId}' but tls.spiffeId is '${spiffeId}'`);
  }
  const trustDomains = [id.spiffeId.slice(9).split('/')[0]!, ...c.trustDomains];
  const plaintext = new Set(c.plaintextServices);
  const revocation = new RevocationList();
  let currentModes = portModes;
  const guards: InboundMtlsHandle[] = [];

  const transport: UpstreamTransport | null = c.originate
    ? {
      // Constant across rotations: pools (and their warm connections) survive a new certificate;
      // the connector picks the new one up for new connections.
      key: `mtls:${id.spiffeId}:${[...plaintext].sort().join(',')}`,
      protocol: 'http:',
      connectOptions: () => ({}),
      connector: (_ep: Endpoint, cluster: Cluster, base: ConnectBase) => (plaintext.has(cluster.name)
        ? undefined
        : createMtlsConnector({ identity: id, trustDomains, metrics: opts.registry, logger: opts.logger, revocation }, cluster.spiffeId, base)),
    }
    : null;

  if (!portModes.needsTls) {
    opts.logger.warn({ identity: id.spiffeId, originate: c.originate }, 'inbound mTLS is DISABLED (tls.mode: DISABLE): inbound mesh traffic is not authenticated');
  }
  const plainPorts = Object.entries(c.portLevel).filter(([, m]) => m !== 'STRICT').map(([p, m]) => `${p}:${m}`);
  if (portModes.needsTls && (c.mode !== 'STRICT' || plainPorts.length > 0)) {
    opts.logger.warn({ mode: c.mode, ports: plainPorts }, 'inbound accepts plaintext on some ports (tls.mode / tls.portLevel); those connections carry no peer identity');
  }
  opts.logger.info({ identity: id.spiffeId, mode: c.mode, portLevel: c.portLevel, originate: c.originate }, 'mesh mTLS configured');
  return {
    identity: id,
    config: c,
    revocation,
    setPortModes(modes) {
      currentModes = modes;
      for (const g of guards) g.setPortModes(modes);
    },
    serverFactory(direction, sc) {
      const server = createListenerServer(direction, sc);
      if (direction === 'inbound') {
        // Installed even when every port is DISABLE now (a per-connection map lookup at most):
        // a pushed version may turn mTLS on without a restart.
        const guard = attachInboundMtls(server, { mode: c.mode, portModes: currentModes, identity: id, trustDomains, metrics: opts.registry, logger: opts.logger, revocation, live: true });
        guards.push(guard);
        handles.push(guard);
      }
      return server;
    },
    transport(direction) {
      // Inbound talks to the local application on loopback: plaintext by design.
      return direction !== 'inbound' && transport !== null ? transport : plainTransport;
    },
    close() {
      for (const h of handles) h.close();
      if (owned) id.stop();
    },
  };
}
