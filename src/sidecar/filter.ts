import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Schema } from 'ajv';
import type { Logger } from '../core/logger.js';
import type { Registry } from '../core/metrics.js';
import type { ErrorCode } from '../core/errors.js';
import type { SidecarConfig } from '../config/sidecar-schema.js';
import type { Cluster, Endpoint } from './clusters.js';
import type { UpstreamConnector } from './upstream/connector.js';

/**
 * The HTTP filter contract, after Envoy's HTTP connection manager: a listener hands each request
 * to an ordered chain of filters built once per config version. A filter's config is validated
 * and compiled when the version loads; per request only `onRequest` runs. It returns undefined to
 * continue, or a LocalReply to end the request (local-reply.ts writes it). The chain ends in the
 * terminal router.
 */

/** Verified identity of the peer on this hop (from the mTLS client certificate). */
export interface PeerIdentity {
  spiffeId: string;
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export type Direction = 'inbound' | 'outbound' | 'gateway';
export type Decision = 'allow' | 'deny' | 'ratelimited' | 'rerouted';

/** Per-request state shared by the filters of one chain. Filters add what later ones need. */
export interface RequestContext {
  readonly id: string;
  readonly direction: Direction;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** performance.now() at the first byte of the request. */
  readonly startedAt: number;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Raw query string without '?', or ''. */
  readonly query: string;
  /** Host header without port, lower-cased. */
  readonly host: string;
  /** Peer address of the downstream connection. */
  readonly remoteAddress: string;
  /** Set by the identity filter when the hop is mTLS. */
  peer?: PeerIdentity;
  /** End-user principal (from the configured header or a verified token). */
  principal?: string;
  /** The service the request is for; outbound: resolved from Host or original destination. */
  destination?: { service: string; version?: string; instance?: string };
  /** What the sidecar did with the request; reported in telemetry. */
  decision: Decision;
  /** Code of the local reply the sidecar answered with (a denial, an upstream failure), if any; reported in telemetry. */
  replyCode?: ErrorCode;
  /** Upstream subset chosen by routing filters before the router runs (e.g. { version: 'v1' }). */
  subset?: Record<string, string>;
  /** Endpoint keys (`address:port`) of contained instances the router must route around (set by zone-rules). */
  avoidEndpoints?: ReadonlySet<string>;
  /** Free-form slots for filter-to-filter data, keyed by filter name (created on first use). */
  readonly attrs: Map<string, unknown>;
  /** Extra headers for the upstream request, as [name, value, name, value, …]; filters push. */
  upstreamHeaders?: string[];
  /** The endpoint the router chose (set once the request goes upstream). */
  endpoint?: Endpoint;
  /** Whether this hop was mutually authenticated (set by the identity filter). */
  mtls: boolean;
  /** Request body bytes sent upstream, response body bytes sent downstream. */
  bytesIn: number;
  bytesOut: number;
}

/** The end of a request without reaching the upstream. */
export interface LocalReply {
  status: number;
  code: ErrorCode;
  reason: string;
  headers?: Record<string, string | number>;
}

export type FilterResult = LocalReply | undefined;

export interface HttpFilter {
  readonly name: string;
  onRequest(ctx: RequestContext): FilterResult | Promise<FilterResult>;
  /** Called once the response is complete (or failed): status 0 when no response was sent. */
  onComplete?(ctx: RequestContext, status: number, durationMs: number): void;
}

/** What a filter may use while it compiles. */
export interface CompileEnv {
  logger: Logger;
  metrics: Registry;
  /** Monotonic config version this chain belongs to. */
  version: number;
  /** Direction of the listener this chain serves. */
  direction: Direction;
  /** The static config, as validated at start (read-only). */
  sidecar: Readonly<SidecarConfig>;
  /** Every dynamic resource of this version, validated (read-only). */
  resources: Readonly<Record<string, unknown>>;
  /** Upstream clusters by service name (inbound: only the local application). */
  clusters: ReadonlyMap<string, Cluster>;
  /** Where the router gets its dispatchers; one per listener and config version. */
  connector: UpstreamConnector;
}

/**
 * A filter type. `compile` runs once per config version; returning null means the filter is off
 * for this version and costs nothing per request.
 *
 * A factory with a `resource` key owns that key of the dynamic resources: the value is validated
 * against `schema` (with defaults filled in) and passed to `compile` as `config` (undefined when
 * the key is absent). A factory without one is configured by the static config alone: `config` is
 * the whole SidecarConfig and `schema` is not used.
 */
export interface FilterFactory<C = unknown> {
  readonly name: string;
  readonly resource?: string;
  readonly schema: Schema;
  compile(config: C, env: CompileEnv): HttpFilter | null;
  /** Listener directions this filter runs on; all when absent. */
  readonly directions?: readonly Direction[];
}

/**
 * A live downstream connection, as seen when a new config version comes into force. Filters that
 * decide per peer (authorization, network policy, zones) answer whether it may stay open: a
 * policy change must not leave an allowed tunnel open.
 */
export interface ConnectionInfo {
  readonly direction: Direction;
  readonly remoteAddress: string;
  readonly localPort: number;
  readonly peer?: PeerIdentity;
  /** Services this connection has carried requests for (outbound: destinations). */
  readonly destinations: ReadonlySet<string>;
}

/** Optional on an HttpFilter: false closes the connection when this filter's version applies. */
export interface ConnectionAdmission {
  admitsConnection(conn: ConnectionInfo): boolean;
}
