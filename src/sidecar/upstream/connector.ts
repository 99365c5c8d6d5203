import { Pool, type Dispatcher } from 'undici';
import type { Cluster, Endpoint } from '../clusters.js';
import type { UpstreamTransport } from './transport.js';

/**
 * Hands the router a keep-alive connection pool per upstream endpoint. One connector per listener
 * and config version; when the next version keeps the same transport and pool options the pools
 * (and their warm connections) are carried over, otherwise the old ones drain and close.
 */

export interface ConnectorOptions {
  connectTimeoutMs: number;
  /** First byte of the response (undici headersTimeout). */
  firstByteMs: number;
  /** Longest silence inside a response body (undici bodyTimeout). */
  idleMs: number;
  keepAliveMs: number;
  connections: number;
}

export interface PoolStatsRow {
  cluster: string;
  endpoint: string;
  connected: number;
  free: number;
  pending: number;
  running: number;
  queued: number;
}

interface PoolEntry {
  pool: Pool;
  cluster: string;
}

export class UpstreamConnector {
  readonly transport: UpstreamTransport;
  readonly options: Readonly<ConnectorOptions>;
  readonly #key: string;
  // Bounded by the registry: one entry per configured endpoint, never per request.
  readonly #pools: Map<string, PoolEntry>;

  constructor(transport: UpstreamTransport, options: ConnectorOptions, previous?: UpstreamConnector) {
    this.transport = transport;
    this.options = Object.freeze({ ...options });
    this.#key = `${transport.key}|${JSON.stringify(this.options)}`;
    // Same transport and options: share the warm pools. Nothing about `previous` changes until
    // the new version commits (retire), so a version that fails to compile leaves it intact.
    this.#pools = previous && previous.#key === this.#key ? previous.#pools : new Map();
  }

  /**
   * Per-destination pool limits (circuit breaking: max connections, max requests per connection),
   * set by the router when routes configure them. A pool is keyed by its limits too, so a changed
   * limit gets a fresh pool.
   */
  poolLimits: ((cluster: string) => { connections?: number; maxRequestsPerClient?: number } | undefined) | undefined = undefined;

  dispatcher(ep: Endpoint, cluster: Cluster): Dispatcher {
    const limits = this.poolLimits?.(cluster.name);
    let key = limits === undefined ? ep.key : `${ep.key}|${limits.connections ?? ''}|${limits.maxRequestsPerClient ?? ''}`;
    // A transport with its own connector verifies a per-service peer identity (mTLS): two services
    // on one address must never share a pool, or one would pass the other's identity check.
    if (this.transport.connector !== undefined) key = `${key}|${cluster.name}`;
    const hit = this.#pools.get(key);
    if (hit !== undefined) return hit.pool;
    const o = this.options;
    const pool = new Pool(`${this.transport.protocol}//${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`, {
      connections: limits?.connections ?? o.connections,
      ...(limits?.maxRequestsPerClient ? { maxRequestsPerClient: limits.maxRequestsPerClient } : {}),
      pipelining: 1,
      keepAliveTimeout: o.keepAliveMs,
      keepAliveMaxTimeout: Math.max(o.keepAliveMs, 600_000),
      headersTimeout: o.firstByteMs,
      bodyTimeout: o.idleMs,
      strictContentLength: true,
      connect: this.transport.connector?.(ep, cluster, { timeout: o.connectTimeoutMs, noDelay: true })
        ?? { timeout: o.connectTimeoutMs, noDelay: true, ...this.transport.connectOptions(ep, cluster) },
    });
    pool.on('connectionError', () => {
      /* reported per request through the dispatch handler */
    });
    this.#pools.set(key, { pool, cluster: cluster.name });
    return pool;
  }

  stats(): PoolStatsRow[] {
    const rows: PoolStatsRow[] = [];
    for (const [endpoint, { pool, cluster }] of this.#pools) {
      const s = pool.stats;
      rows.push({ cluster, endpoint, connected: s.connected, free: s.free, pending: s.pending, running: s.running, queued: s.queued });
    }
    return rows;
  }

  /** This connector's version is replaced by `successor`'s: close the pools it did not take over. */
  async retire(successor: UpstreamConnector | undefined): Promise<void> {
    if (successor !== undefined && successor.#pools === this.#pools) return;
    await this.close();
  }

  /** Graceful: requests in flight complete, then the connections close. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((p) => p.pool.close()));
  }

  /** Immediate: in-flight upstream requests fail. */
  async destroy(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((p) => p.pool.destroy()));
  }
}
