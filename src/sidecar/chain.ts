import { performance } from 'node:perf_hooks';
import type { Schema } from 'ajv';
import { ConfigError, EtzError } from '../core/errors.js';
import { validateConfig } from '../config/load.js';
import type { Counter } from '../core/metrics.js';
import type { Logger } from '../core/logger.js';
import type {
  CompileEnv,
  ConnectionAdmission,
  Direction,
  FilterFactory,
  FilterResult,
  HttpFilter,
  LocalReply,
} from './filter.js';
import type { ClusterSet } from './clusters.js';
import type { UpstreamConnector } from './upstream/connector.js';
import type { Ctx } from './context.js';
import { errorToLocalReply, sendLocalReply } from './local-reply.js';
import { buildRequestRecord, type SelfInfo, type TelemetrySink } from './telemetry.js';

/**
 * The filter chain of one listener for one config version: compiled once, immutable, and run per
 * request. A request keeps the chain it started on, so swapping in a new version never changes
 * the rules under a request in flight.
 */

/** onRequest of a filter that only observes completions; such filters are left out of the request loop. */
export function passThrough(): FilterResult {
  return undefined;
}

/** Per-listener objects that outlive config versions. */
export interface ListenerShared {
  readonly localReplies: Counter<string>;
  readonly self: SelfInfo;
  readonly logger: Logger;
  sink: TelemetrySink | undefined;
  /** The listener's bookkeeping (in-flight count, drain) once a request is done. */
  release: ((ctx: Ctx) => void) | undefined;
}

export interface CompiledChain {
  readonly version: number;
  readonly direction: Direction;
  readonly filters: readonly HttpFilter[];
  readonly requestFilters: readonly HttpFilter[];
  readonly completeFilters: readonly HttpFilter[];
  readonly admission: readonly (HttpFilter & ConnectionAdmission)[];
  readonly clusters: ClusterSet;
  readonly connector: UpstreamConnector;
  readonly shared: ListenerShared;
}

/**
 * Check every resource key against the factory that owns it (or the extra resource schemas),
 * filling defaults in a copy. Throws ConfigError naming `/resources/<key>/<field>`.
 */
export function validateResources(
  resources: Record<string, unknown>,
  factories: readonly FilterFactory[],
  extra: Readonly<Record<string, Schema>>,
  source = 'resources',
): Record<string, unknown> {
  if (resources === null || typeof resources !== 'object' || Array.isArray(resources)) {
    throw new ConfigError(source, '/resources', 'must be an object');
  }
  const schemas = new Map<string, Schema>();
  for (const f of factories) if (f.resource) schemas.set(f.resource, f.schema);
  for (const [k, s] of Object.entries(extra)) if (!schemas.has(k)) schemas.set(k, s);
  const copy = structuredClone(resources);
  for (const key of Object.keys(copy)) {
    const schema = schemas.get(key);
    if (schema === undefined) {
      throw new ConfigError(source, `/resources/${key}`, `is not a known resource (known: ${[...schemas.keys()].sort().join(', ') || 'none'})`);
    }
    try {
      copy[key] = validateConfig(source, schema, copy[key]);
    } catch (err) {
      if (err instanceof ConfigError) {
        throw new ConfigError(source, `/resources/${key}${err.field === '/' ? '' : err.field}`, err.reason);
      }
      throw err;
    }
  }
  return copy;
}

/** Compile one chain. Resources must already be validated. */
export function compileChain(
  factories: readonly FilterFactory[],
  env: CompileEnv,
  clusters: ClusterSet,
  shared: ListenerShared,
): CompiledChain {
  const filters: HttpFilter[] = [];
  for (const f of factories) {
    if (f.directions && !f.directions.includes(env.direction)) continue;
    const config = f.resource ? env.resources[f.resource] : env.sidecar;
    let filter: HttpFilter | null;
    try {
      filter = f.compile(config, env);
    } catch (err) {
      if (err instanceof EtzError) throw err;
      throw new ConfigError('resources', f.resource ? `/resources/${f.resource}` : '/', `filter ${f.name}: ${(err as Error).message}`);
    }
    if (filter) filters.push(filter);
  }
  return Object.freeze({
    version: env.version,
    direction: env.direction,
    filters: Object.freeze(filters),
    requestFilters: Object.freeze(filters.filter((f) => f.onRequest !== passThrough)),
    completeFilters: Object.freeze(filters.filter((f) => typeof f.onComplete === 'function')),
    admission: Object.freeze(
      filters.filter((f): f is HttpFilter & ConnectionAdmission => typeof (f as Partial<ConnectionAdmission>).admitsConnection === 'function'),
    ),
    clusters,
    connector: env.connector,
    shared,
  });
}

/**
 * Run the request filters from `start`. Synchronous filters run in one loop; the first promise
 * suspends the loop and resumes it when settled, so chains of sync filters never pay for async.
 */
export function runChain(ctx: Ctx, start = 0): void {
  const fs = ctx.chain.requestFilters;
  for (let i = start; i < fs.length; i++) {
    if (ctx.done) return;
    let r: FilterResult | Promise<FilterResult>;
    try {
      r = fs[i]!.onRequest(ctx);
    } catch (err) {
      replyError(ctx, err);
      return;
    }
    if (r === undefined) continue;
    if (typeof (r as Promise<FilterResult>).then === 'function') {
      (r as Promise<FilterResult>).then(
        (res) => {
          if (res === undefined) runChain(ctx, i + 1);
          else replyLocal(ctx, res);
        },
        (err: unknown) => replyError(ctx, err),
      );
      return;
    }
    replyLocal(ctx, r as LocalReply);
    return;
  }
}

export function replyLocal(ctx: Ctx, reply: LocalReply, close = false): void {
  ctx.replyCode = reply.code;
  if (ctx.decision === 'allow') {
    if (reply.status === 403) ctx.decision = 'deny';
    else if (reply.status === 429) ctx.decision = 'ratelimited';
  }
  // An unread request body leaves the connection in an unknown state; close it rather than reuse.
  const bodyPending = ctx.bodyLength !== 0 && !ctx.req.complete;
  sendLocalReply(ctx.res, reply, ctx.chain.shared.localReplies, close || bodyPending);
}

export function replyError(ctx: Ctx, err: unknown): void {
  const reply = errorToLocalReply(err);
  if (reply.code === 'ETZ_ERR_INTERNAL') ctx.chain.shared.logger.error({ err, requestId: ctx.id }, 'filter failed');
  replyLocal(ctx, reply);
}

/** Once per request, when the response is finished or the connection is gone. */
export function finishRequest(ctx: Ctx): void {
  if (ctx.done) return;
  ctx.done = true;
  if (ctx.timer !== null) {
    clearTimeout(ctx.timer);
    ctx.timer = null;
  }
  const res = ctx.res;
  // The upstream exchange is still running although the downstream side is over (the client went
  // away, or its request broke mid-body): stop it, so no upstream socket is left behind.
  if (ctx.abortUpstream !== null) {
    const abort = ctx.abortUpstream;
    ctx.abortUpstream = null;
    abort(new EtzError('ETZ_ERR_UPSTREAM_RESET', 'downstream closed'));
  }
  const status = ctx.upgradedStatus !== 0 ? ctx.upgradedStatus : res.headersSent ? res.statusCode : 0;
  const durationMs = performance.now() - ctx.startedAt;
  const fs = ctx.chain.completeFilters;
  for (let i = 0; i < fs.length; i++) {
    try {
      fs[i]!.onComplete!(ctx, status, durationMs);
    } catch (err) {
      ctx.chain.shared.logger.error({ err, filter: fs[i]!.name }, 'onComplete failed');
    }
  }
  const sink = ctx.chain.shared.sink;
  if (sink !== undefined) {
    try {
      sink.record(buildRequestRecord(ctx, ctx.chain.shared.self, status, durationMs));
    } catch (err) {
      ctx.chain.shared.logger.warn({ err }, 'telemetry sink failed');
    }
  }
  ctx.chain.shared.release?.(ctx);
}
