import type { buildConnector } from 'undici';
import type { Cluster, Endpoint } from '../clusters.js';
import type { Direction } from '../filter.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';

/**
 * How the sidecar connects to an upstream endpoint: the scheme and the socket options undici's
 * connector gets (for TLS: ca, cert, key, servername, checkServerIdentity). This is the seam for
 * mTLS origination: a transport returns TLS options here and the pools do the rest.
 */
export interface UpstreamTransport {
  /** Changes whenever the options change, so pools are rebuilt (new certificate, new CA bundle). */
  readonly key: string;
  readonly protocol: 'http:' | 'https:';
  connectOptions(endpoint: Endpoint, cluster: Cluster): Record<string, unknown>;
  /**
   * A custom undici connector for this endpoint, instead of connectOptions: mTLS origination reads
   * the rotating workload certificate at connect time through it. Undefined: connectOptions apply.
   */
  connector?(endpoint: Endpoint, cluster: Cluster, base: { timeout: number; noDelay?: boolean }): buildConnector.connector | undefined;
}

export const plainTransport: UpstreamTransport = Object.freeze({
  key: 'plain',
  protocol: 'http:',
  connectOptions: () => ({}),
});

/**
 * The transport for a listener's upstreams in this config version. Inbound always talks plain
 * HTTP to the application on loopback.
 */
export function transportFor(
  _direction: Direction,
  _config: SidecarConfig,
  _resources: Readonly<Record<string, unknown>>,
): UpstreamTransport {
  return plainTransport;
}
