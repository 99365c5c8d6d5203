import type { Direction } from './filter.js';
import type { SidecarConfig } from '../config/sidecar-schema.js';

/**
 * Upstream clusters, in Envoy's sense: a named set of endpoints. Built once per config version
 * from the static registry (outbound) or the application address (inbound), with the lookup
 * tables the hot path needs, so that resolving a destination is a map lookup.
 */

export interface Endpoint {
  readonly address: string;
  readonly port: number;
  readonly version?: string;
  readonly instance?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** `address:port`, the pool key. */
  readonly key: string;
}

export interface Cluster {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  readonly spiffeId?: string;
  readonly port?: number;
}

export interface ClusterSet {
  readonly byName: ReadonlyMap<string, Cluster>;
  /** `ip:port` of every endpoint → its cluster, for original-destination lookups. */
  readonly byAddress: ReadonlyMap<string, Cluster>;
}

/** The cluster name inbound traffic goes to: the local application. */
export function localClusterName(config: SidecarConfig): string {
  return config.service.name;
}

export function buildClusters(direction: Direction, config: SidecarConfig): ClusterSet {
  const byName = new Map<string, Cluster>();
  const byAddress = new Map<string, Cluster>();
  if (direction === 'inbound') {
    const { appHost, appPort } = config.inbound;
    const ep: Endpoint = {
      address: appHost,
      port: appPort,
      version: config.service.version,
      ...(config.service.instance ? { instance: config.service.instance } : {}),
      key: `${appHost}:${appPort}`,
    };
    const c: Cluster = { name: localClusterName(config), endpoints: [ep] };
    byName.set(c.name, c);
    return { byName, byAddress };
  }
  for (const [name, entry] of Object.entries(config.registry)) {
    const endpoints = entry.endpoints.map((e): Endpoint => Object.freeze({ ...e, key: `${e.address}:${e.port}` }));
    const c: Cluster = Object.freeze({
      name,
      endpoints: Object.freeze(endpoints),
      ...(entry.spiffeId ? { spiffeId: entry.spiffeId } : {}),
      ...(entry.port ? { port: entry.port } : {}),
    });
    byName.set(name, c);
    for (const ep of endpoints) byAddress.set(ep.key, c);
  }
  return { byName, byAddress };
}

/**
 * Host header → cluster: `reviews`, `reviews:9080`, `reviews.default`, `reviews.default.svc…`.
 * `host` is already lower-cased without its port. An exact registry name wins over the first label
 * so that dotted service names still work.
 */
export function clusterForHost(set: ClusterSet, host: string): Cluster | undefined {
  const exact = set.byName.get(host);
  if (exact !== undefined) return exact;
  const dot = host.indexOf('.');
  return dot > 0 ? set.byName.get(host.slice(0, dot)) : undefined;
}
