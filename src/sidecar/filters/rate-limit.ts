import { ConfigError } from '../../core/errors.js';
import type { CompileEnv, Direction, FilterFactory, HttpFilter, LocalReply, RequestContext } from '../filter.js';
import { compileMatchList, QueryCache, rawHeader, routeMatchListSchema, type RequestPredicate, type RouteMatchConfig } from '../routing/match.js';
import { counter, gauge, instanceState, peekState } from '../routing/instance-state.js';
import { GcraStore, type GcraVerdict } from './rate-limit-store.js';
import { parsePrincipals, type PrincipalsResource } from '../routing/filter.js';

/**
 * Local rate limiting (the `rateLimits` resource). Each limit is a GCRA bucket per key — the whole
 * listener, the peer's SPIFFE identity, the end-user principal, the client IP, the route (host),
 * or a header — optionally scoped by a route match. Every limit that applies is checked; the
 * strictest denial decides (the longest Retry-After), and a denied request consumes no tokens of
 * the other limits. Shadow limits only count what they would have denied.
 *
 * Buckets live in per-instance state and are kept across config versions while a limit's
 * parameters are unchanged, so pushing unrelated config never hands out a fresh burst.
 */

export type LimitKey = 'listener' | 'source' | 'principal' | 'ip' | 'route' | `header:${string}`;

export interface RateLimitConfig {
  name: string;
  key: LimitKey;
  requests: number;
  /** Period of `requests`; `per` is the readable form. */
  periodMs?: number;
  per?: 'second' | 'minute' | 'hour';
  burst?: number;
  shadow?: boolean;
  /** Hosts or destination services the limit covers (default all). */
  hosts?: string[];
  match?: RouteMatchConfig | RouteMatchConfig[];
  /** Listener directions (default inbound and gateway: protect what is behind this proxy). */
  directions?: Direction[];
  maxKeys?: number;
}

export type RateLimitsResource = RateLimitConfig[];

const PER_MS = { second: 1000, minute: 60_000, hour: 3_600_000 } as const;

/** The limit the zone manager's "ratelimit" flags put on a principal: 10 requests a minute. */
export const FLAGGED_LIMIT = 'etz:flagged-principals';
const FLAGGED_RATE = { requests: 10, per: 'minute' as const };

export const rateLimitsSchema = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'key', 'requests'],
    properties: {
      name: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9_.:-]+$' },
      key: { type: 'string', pattern: '^(listener|source|principal|ip|route|header:[A-Za-z0-9-]+)$' },
      requests: { type: 'integer', minimum: 1 },
      periodMs: { type: 'integer', minimum: 1 },
      per: { enum: ['second', 'minute', 'hour'] },
      burst: { type: 'integer', minimum: 1 },
      shadow: { type: 'boolean' },
      hosts: { type: 'array', items: { type: 'string', minLength: 1 } },
      match: routeMatchListSchema,
      directions: { type: 'array', items: { enum: ['inbound', 'outbound', 'gateway'] } },
      maxKeys: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    },
  },
} as const;

type KeyOf = (ctx: RequestContext) => string | undefined;

function keyFunction(key: LimitKey): KeyOf {
  switch (key) {
    case 'listener':
      return () => '';
    case 'source':
      return (ctx) => ctx.peer?.spiffeId ?? 'unauthenticated';
    case 'principal':
      // No principal: this limit does not apply (listener or IP limits cover anonymous traffic).
      return (ctx) => ctx.principal;
    case 'ip':
      return (ctx) => ctx.remoteAddress;
    case 'route':
      return (ctx) => ctx.destination?.service ?? ctx.host;
    default: {
      const h = key.slice('header:'.length).toLowerCase();
      return (ctx) => rawHeader(ctx.req.rawHeaders, h);
    }
  }
}

interface CompiledLimit {
  name: string;
  store: GcraStore;
  keyOf: KeyOf;
  shadow: boolean;
  hosts: Set<string> | undefined;
  match: RequestPredicate | undefined;
}

interface LimitState {
  stores: Map<string, GcraStore>;
  shadow: Map<string, boolean>;
  /** Counts already added to the exported counter, per store. */
  reported: WeakMap<GcraStore, { allowed: number; limited: number }>;
}

function applies(l: CompiledLimit, ctx: RequestContext, q: QueryCache): boolean {
  if (l.hosts && !l.hosts.has(ctx.host) && !(ctx.destination && l.hosts.has(ctx.destination.service))) return false;
  if (l.match && !l.match(ctx, q)) return false;
  return true;
}

class RateLimitFilter implements HttpFilter {
  readonly name = 'rate-limit';
  // Scratch space reused across requests: onRequest is synchronous, so no two requests share it.
  private readonly keys: (string | undefined)[];
  private readonly verdicts: (GcraVerdict | undefined)[];
  private readonly query = new QueryCache();

  constructor(
    private readonly limits: CompiledLimit[],
    private readonly now: () => number,
    private activate: (() => void) | undefined,
  ) {
    this.keys = new Array(limits.length);
    this.verdicts = new Array(limits.length);
  }

  onRequest(ctx: RequestContext): LocalReply | undefined {
    if (this.activate !== undefined) {
      this.activate();
      this.activate = undefined;
    }
    const now = this.now();
    const limits = this.limits;
    const q = this.query.reset(ctx.query);
    let worst = -1;
    for (let i = 0; i < limits.length; i++) {
      const l = limits[i]!;
      this.verdicts[i] = undefined;
      if (!applies(l, ctx, q)) continue;
      const key = l.keyOf(ctx);
      if (key === undefined) continue;
      this.keys[i] = key;
      const v = l.store.check(key, now, false);
      this.verdicts[i] = v;
      if (!v.allowed) {
        if (l.shadow) l.store.limited++;
        else if (worst < 0 || v.retryAfterMs > this.verdicts[worst]!.retryAfterMs) worst = i;
      }
    }
    if (worst >= 0) {
      for (let i = 0; i < limits.length; i++) {
        const v = this.verdicts[i];
        if (v && !v.allowed && !limits[i]!.shadow) limits[i]!.store.limited++;
      }
      const l = limits[worst]!;
      const v = this.verdicts[worst]!;
      ctx.decision = 'ratelimited';
      const retry = Math.max(1, Math.ceil(v.retryAfterMs / 1000));
      return {
        status: 429,
        code: 'ETZ_ERR_RATE_LIMITED',
        reason: `rate limit '${l.name}' exceeded`,
        headers: {
          'retry-after': retry,
          'ratelimit-limit': l.store.requests,
          'ratelimit-remaining': 0,
          'ratelimit-reset': Math.max(retry, Math.ceil(v.resetMs / 1000)),
          'ratelimit-policy': `${l.store.requests};w=${Math.ceil(l.store.periodMs / 1000)}`,
        },
      };
    }
    for (let i = 0; i < limits.length; i++) {
      const v = this.verdicts[i];
      if (v && v.allowed) {
        limits[i]!.store.commit(this.keys[i]!, now);
        limits[i]!.store.allowed++;
      }
    }
    return undefined;
  }
}

export interface RateLimitCompileOptions {
  /** Clock in ms (tests); default performance-independent Date.now. */
  now?: () => number;
}

export function compileRateLimits(config: RateLimitsResource | undefined, env: CompileEnv, opts: RateLimitCompileOptions = {}): HttpFilter | null {
  const limitsCfg = (config ?? []).filter((l) => (l.directions ?? ['inbound', 'gateway']).includes(env.direction));
  // Principals the zone manager flagged with action "ratelimit" get a strict limit on every listener.
  const now = Date.now();
  const throttled = new Set(
    parsePrincipals(env.resources?.principals as PrincipalsResource | undefined)
      .filter((f) => f.action === 'ratelimit' && (f.until === undefined || f.until > now))
      .map((f) => f.principal),
  );
  if (throttled.size > 0) limitsCfg.push({ name: FLAGGED_LIMIT, key: 'principal', ...FLAGGED_RATE });
  if (limitsCfg.length === 0) return null;
  const state = instanceState<LimitState>(env.metrics, `rate-limit:${env.direction}`, () => ({ stores: new Map(), shadow: new Map(), reported: new WeakMap() }));
  counter(
    env.metrics,
    'etz_ratelimit_requests_total',
    'Requests checked by a rate limit, by result (allowed, limited; shadow limits count limited without denying).',
    ['limit', 'result', 'shadow', 'direction'],
    function collect() {
      // Counts live on the stores (plain numbers on the hot path); the scrape adds what is new.
      for (const dir of ['inbound', 'outbound', 'gateway'] as const) {
        const st = peekState<LimitState>(env.metrics, `rate-limit:${dir}`);
        if (!st) continue;
        for (const [name, store] of st.stores) {
          const seen = st.reported.get(store) ?? { allowed: 0, limited: 0 };
          const shadow = String(st.shadow.get(name) ?? false);
          if (store.allowed > seen.allowed) this.inc({ limit: name, result: 'allowed', shadow, direction: dir }, store.allowed - seen.allowed);
          if (store.limited > seen.limited) this.inc({ limit: name, result: 'limited', shadow, direction: dir }, store.limited - seen.limited);
          st.reported.set(store, { allowed: store.allowed, limited: store.limited });
        }
      }
    },
  );
  gauge(env.metrics, 'etz_ratelimit_keys', 'Keys tracked per rate limit (bounded by maxKeys).', ['limit', 'direction'], function collect() {
    this.reset();
    for (const dir of ['inbound', 'outbound', 'gateway'] as const) {
      const st = peekState<LimitState>(env.metrics, `rate-limit:${dir}`);
      if (st) for (const [name, store] of st.stores) this.set({ limit: name, direction: dir }, store.size);
    }
  });
  const seen = new Set<string>();
  const compiled: CompiledLimit[] = limitsCfg.map((l, n) => {
    const field = `/${n}`;
    if (seen.has(l.name)) throw new ConfigError('rateLimits', `${field}/name`, `duplicate limit name '${l.name}'`);
    seen.add(l.name);
    const params = { requests: l.requests, periodMs: l.periodMs ?? PER_MS[l.per ?? 'second'], burst: l.burst, maxKeys: l.maxKeys };
    let store = state.stores.get(l.name);
    if (!store || !store.sameAs(params)) store = new GcraStore(params);
    return {
      name: l.name,
      store,
      keyOf: l.name === FLAGGED_LIMIT ? (ctx: RequestContext) => (ctx.principal !== undefined && throttled.has(ctx.principal) ? ctx.principal : undefined) : keyFunction(l.key),
      shadow: l.shadow ?? false,
      hosts: l.hosts ? new Set(l.hosts.map((h) => h.toLowerCase())) : undefined,
      match: l.match ? compileMatchList(l.match, 'rateLimits', `${field}/match`) : undefined,
    };
  });
  // The shared store table changes when this version serves its first request, not at compile:
  // a version that fails to compile must leave the running one's buckets alone.
  const activate = () => {
    state.stores.clear();
    state.shadow.clear();
    for (const l of compiled) {
      state.stores.set(l.name, l.store);
      state.shadow.set(l.name, l.shadow);
    }
  };
  return new RateLimitFilter(compiled, opts.now ?? Date.now, activate);
}

export const rateLimitFilter: FilterFactory<RateLimitsResource | undefined> = {
  name: 'rate-limit',
  resource: 'rateLimits',
  schema: rateLimitsSchema,
  compile: (config, env) => compileRateLimits(config, env),
};
