import type { Dispatcher } from 'undici';
import { EtzError } from '../../core/errors.js';
import type { Ctx } from '../context.js';
import type { Cluster, Endpoint } from '../clusters.js';
import { replyError, replyLocal } from '../chain.js';
import { upstreamRequestHeaders } from '../headers.js';
import { localReply } from '../local-reply.js';
import { dispatchAttempt } from './attempt.js';
import type { UpstreamConnector } from './connector.js';
import { onRequestTimeout, requestBody, type ForwardOptions } from './forward.js';
import { ProxyResponseHandler } from './stream-response.js';
import { awayFromContained } from './select-endpoint.js';
import { sendWithRetries, type DestinationTraffic, type SendObserver, type TryResult } from './resilience.js';
import type { AttemptOutcome, RetryPolicy } from './retry-policy.js';
import type { CompileEnv } from '../filter.js';
import { destinationPolicies, routeDecision } from '../routing/filter.js';

/**
 * The router's path when a destination has a traffic policy or the route a retry policy: the
 * same attempt and response streaming as the plain path (forward.ts), wrapped in load balancing,
 * circuit breaking, outlier detection and retries (resilience.ts). A try's response head is held
 * (undici paused) until the retry logic decides: then it is either streamed to the client or
 * dropped for another try — a client never sees two responses, and nothing is buffered.
 */

export interface ResilientRoute {
  traffic: DestinationTraffic<Endpoint>;
  retry: RetryPolicy | undefined;
  hashKey: string | undefined;
  /** Route timeout for the whole exchange (overrides the listener's). */
  timeoutMs: number | undefined;
  observer: SendObserver;
}

// Subset → endpoints, per cluster (clusters are rebuilt per version, so entries go with them).
const subsets = new WeakMap<Cluster, Map<string, readonly Endpoint[]>>();

function subsetKey(subset: Record<string, string>): string {
  let k = '';
  for (const name in subset) k += `${name}=${subset[name]}\u0000`;
  return k;
}

export function subsetEndpoints(cluster: Cluster, subset: Record<string, string> | undefined): readonly Endpoint[] {
  if (subset === undefined) return cluster.endpoints;
  let m = subsets.get(cluster);
  if (!m) subsets.set(cluster, (m = new Map()));
  const key = subsetKey(subset);
  let list = m.get(key);
  if (!list) {
    list = cluster.endpoints.filter((ep) => {
      for (const k in subset) if ((k === 'version' ? ep.version : ep.labels?.[k]) !== subset[k]) return false;
      return true;
    });
    // Subset keys come from config (routes), so this map is bounded by the config.
    if (m.size < 1024) m.set(key, list);
  }
  return list;
}

const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT', 'ETZ_ERR_UPSTREAM_TIMEOUT']);

export function classifyError(err: unknown): AttemptOutcome {
  const code = (err as { code?: string } | undefined)?.code ?? '';
  if (CONNECT_FAILURES.has(code)) return { kind: 'connect-failure' };
  if (TIMEOUTS.has(code)) return { kind: 'timeout' };
  return { kind: 'reset' };
}

/**
 * One try. Until `accept` it only holds the response head; after it, it is the plain streaming
 * handler (ProxyResponseHandler) plus bookkeeping when the exchange ends.
 */
class TryHandler implements Dispatcher.DispatchHandler {
  readonly #ctx: Ctx;
  #resolve: ((r: TryResult<TryHandler>) => void) | null;
  #abort: ((err?: Error) => void) | null = null;
  #inner: ProxyResponseHandler | null = null;
  #head: { status: number; raw: Buffer[]; resume: () => void; text: string } | null = null;
  #error: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  #release: (() => void) | null = null;
  #onLateFailure: ((o: AttemptOutcome) => void) | null = null;

  constructor(ctx: Ctx, resolve: (r: TryResult<TryHandler>) => void, perTryMs: number | undefined) {
    this.#ctx = ctx;
    this.#resolve = resolve;
    if (perTryMs !== undefined) this.#timer = setTimeout(() => this.#abort?.(new EtzError('ETZ_ERR_UPSTREAM_TIMEOUT', 'per-try timeout')), perTryMs);
  }

  #settle(r: TryResult<TryHandler>): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const resolve = this.#resolve;
    this.#resolve = null;
    resolve?.(r);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#inner) {
      this.#inner.onConnect(abort);
      return;
    }
    if (this.#ctx.done || this.#ctx.res.destroyed) abort(new Error('downstream closed'));
    else this.#ctx.abortUpstream = abort;
  }

  onBodySent(chunk: Buffer | number): void {
    this.#ctx.bytesIn += typeof chunk === 'number' ? chunk : chunk.length;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (this.#inner) return this.#inner.onHeaders(statusCode, rawHeaders, resume, statusText);
    if (statusCode < 200) return true;
    this.#head = { status: statusCode, raw: rawHeaders, resume, text: statusText };
    this.#settle({ outcome: { kind: 'response', status: statusCode }, response: this, discard: () => this.#discard() });
    // Paused until the retry logic accepts this response or drops it.
    return false;
  }

  onData(chunk: Buffer): boolean {
    return this.#inner ? this.#inner.onData(chunk) : true;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.#inner) {
      this.#inner.onComplete(trailers);
      this.#finish();
    }
  }

  onError(err: Error): void {
    if (this.#inner) {
      this.#onLateFailure?.(classifyError(err));
      this.#inner.onError(err);
      this.#finish();
      return;
    }
    if (this.#resolve) {
      this.#error = err;
      this.#settle({ outcome: classifyError(err), response: this });
    }
  }

  #discard(): void {
    const abort = this.#abort;
    this.#abort = null;
    abort?.(new Error('response dropped for a retry'));
  }

  /** Stream this try's outcome to the client; `release` runs once when the exchange is over. */
  accept(release: () => void, onLateFailure: (o: AttemptOutcome) => void): void {
    this.#release = release;
    this.#onLateFailure = onLateFailure;
    const ctx = this.#ctx;
    const inner = (this.#inner = new ProxyResponseHandler(ctx));
    if (this.#error !== null || this.#head === null) {
      inner.onError(this.#error ?? new EtzError('ETZ_ERR_UPSTREAM_RESET', 'no response'));
      this.#finish();
      return;
    }
    if (this.#abort) inner.onConnect(this.#abort);
    const h = this.#head;
    this.#head = null;
    if (inner.onHeaders(h.status, h.raw, h.resume, h.text)) h.resume();
    else this.#abort?.(new Error('downstream closed'));
  }

  #finish(): void {
    const r = this.#release;
    this.#release = null;
    r?.();
  }
}

function dispatchOptions(x: Exchange, headers: string[]): Dispatcher.DispatchOptions {
  const ctx = x.ctx;
  const body = x.body;
  return {
    // One request per connection: the connection closes after this exchange.
    ...(x.route.traffic.circuit.limits.maxRequestsPerConnection === 1 ? { reset: true } : {}),
    method: ctx.method as Dispatcher.HttpMethod,
    // The origin-form target the core computed: an absolute-form request target (a client
    // configured with the sidecar as its HTTP proxy) must not go upstream as it came.
    path: ctx.url,
    headers,
    body: body as Dispatcher.DispatchOptions['body'],
    // Retries are decided here, never by undici on its own.
    idempotent: false,
    blocking: false,
  };
}

/** One request's way upstream on the resilient path. */
interface Exchange {
  readonly ctx: Ctx;
  readonly cluster: Cluster;
  readonly connector: UpstreamConnector;
  readonly proto: string;
  readonly endpoints: readonly Endpoint[];
  readonly route: ResilientRoute;
  body: NodeJS.ReadableStream | null;
}

function overflowReply(x: Exchange, which: string): void {
  replyLocal(x.ctx, localReply('ETZ_ERR_UPSTREAM_OVERFLOW', `circuit breaker: ${which} limit of '${x.cluster.name}' reached`, { 'x-etz-overflow': which }));
}

export function forwardResilient(
  ctx: Ctx,
  cluster: Cluster,
  connector: UpstreamConnector,
  proto: string,
  opts: ForwardOptions,
  route: ResilientRoute,
): void {
  let endpoints = subsetEndpoints(cluster, ctx.subset);
  if (ctx.avoidEndpoints !== undefined) endpoints = awayFromContained(endpoints, cluster, ctx.avoidEndpoints);
  if (endpoints.length === 0) {
    replyLocal(ctx, localReply('ETZ_ERR_UPSTREAM_UNAVAILABLE', `no endpoint of '${cluster.name}' matches the subset`));
    return;
  }
  const requestMs = route.timeoutMs ?? opts.requestMs;
  if (requestMs > 0) ctx.timer = setTimeout(onRequestTimeout, requestMs, ctx);
  const x: Exchange = { ctx, cluster, connector, proto, endpoints, route, body: null };
  if (ctx.bodyLength !== 0) {
    // As in forward.ts: a malformed body in the same packet is refused before anything is sent.
    process.nextTick(() => {
      if (ctx.done || ctx.res.headersSent || ctx.req.destroyed) return;
      x.body = requestBody(ctx, opts);
      send(x);
    });
    return;
  }
  send(x);
}

function send(x: Exchange): void {
  const retry = x.route.retry;
  if (retry === undefined || retry.attempts === 0) sendOnce(x);
  else void sendRetrying(x);
}

/**
 * One try and no retry possible: nothing to decide after the response head, so the response
 * streams at once (no pause, no promise) while balancing, circuit breaking and outlier
 * detection still apply.
 */
function sendOnce(x: Exchange): void {
  const { ctx, route, endpoints } = x;
  const t = route.traffic;
  const over = t.circuit.tryAcquire();
  if (over !== null) {
    route.observer.overflow?.(t.service, over);
    overflowReply(x, over);
    return;
  }
  const now = Date.now();
  const ep = t.balancer.pick(endpoints, route.hashKey, t.outlier.ejectedCount(now) > 0 ? (e) => t.outlier.isEjected(e.key, now) : undefined)!;
  ctx.endpoint = ep;
  t.balancer.started(ep.key);
  const options = dispatchOptions(x, upstreamRequestHeaders(ctx, x.proto));
  dispatchAttempt(x.connector.dispatcher(ep, x.cluster), options, new TrackedHandler(ctx, t, ep.key, endpoints.length));
}

async function sendRetrying(x: Exchange): Promise<void> {
  const { ctx, cluster, route, endpoints } = x;
  const headers = upstreamRequestHeaders(ctx, x.proto);
  try {
    const r = await sendWithRetries<Endpoint, TryHandler>({
      traffic: route.traffic,
      endpoints,
      method: ctx.method,
      replayable: x.body === null,
      retry: route.retry,
      hashKey: route.hashKey,
      aborted: () => ctx.done,
      observer: route.observer,
      attempt: (ep, perTryMs) => {
        ctx.endpoint = ep;
        return new Promise((resolve) => dispatchAttempt(x.connector.dispatcher(ep, cluster), dispatchOptions(x, headers), new TryHandler(ctx, resolve, perTryMs)));
      },
    });
    if (r.kind === 'overflow') {
      overflowReply(x, r.which);
      return;
    }
    if (r.kind === 'no-endpoint') {
      replyLocal(ctx, localReply('ETZ_ERR_UPSTREAM_UNAVAILABLE', `no endpoint of '${cluster.name}' is available`));
      return;
    }
    ctx.endpoint = r.endpoint;
    const key = r.endpoint.key;
    r.result.response!.accept(r.release, (o) => route.traffic.outlier.record(key, o, endpoints.length, Date.now()));
  } catch (err) {
    replyError(ctx, err);
  }
}

/** The plain streaming handler, plus outlier bookkeeping and the release of the admission. */
class TrackedHandler extends ProxyResponseHandler {
  readonly #t: DestinationTraffic<Endpoint>;
  readonly #key: string;
  readonly #total: number;
  #open = true;

  constructor(ctx: Ctx, t: DestinationTraffic<Endpoint>, key: string, total: number) {
    super(ctx);
    this.#t = t;
    this.#key = key;
    this.#total = total;
  }

  override onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode >= 200) this.#t.outlier.record(this.#key, { kind: 'response', status: statusCode }, this.#total, Date.now());
    return super.onHeaders(statusCode, rawHeaders, resume, statusText);
  }

  override onComplete(trailers: string[] | Buffer[] | null): void {
    super.onComplete(trailers);
    this.#done();
  }

  override onError(err: Error): void {
    this.#t.outlier.record(this.#key, classifyError(err), this.#total, Date.now());
    super.onError(err);
    this.#done();
  }

  #done(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#t.balancer.finished(this.#key);
    this.#t.circuit.release();
  }
}


/**
 * For the router, once per config version: a function that says whether a request takes the
 * resilient path (its route has a retry policy, timeout or affinity key, or its destination a
 * traffic policy) and with what. Undefined when nothing is configured: the plain path then runs
 * exactly as before, and the feature costs nothing.
 */
export function compileResilience(env: CompileEnv): ((ctx: Ctx, cluster: Cluster) => ResilientRoute | undefined) | undefined {
  const policies = destinationPolicies(env);
  if (policies === undefined) return undefined;
  // The connection pools honour each destination's maxConnections / maxRequestsPerConnection.
  env.connector.poolLimits = (cluster) => policies.poolOptions(cluster);
  return (ctx, cluster) => {
    // A protocol switch (websocket) is one long exchange: nothing to retry or balance per request.
    if (ctx.upgrade) return undefined;
    const d = ctx.direction === 'inbound' ? undefined : routeDecision(ctx);
    if (d === undefined && !policies.has(cluster.name)) return undefined;
    if (d !== undefined && d.retry === undefined && d.timeoutMs === undefined && d.hashKey === undefined && !policies.has(cluster.name)) return undefined;
    return {
      traffic: policies.get<Endpoint>(cluster.name),
      retry: d?.retry,
      hashKey: d?.hashKey,
      timeoutMs: d?.timeoutMs,
      observer: policies.metrics,
    };
  };
}
