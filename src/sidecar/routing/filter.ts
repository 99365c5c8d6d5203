import { randomBytes } from 'node:crypto';
import type { CompileEnv, FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import { PrincipalDetector, detectorSchema, type DetectorConfig, type RemoteFlag } from './adaptive.js';
import { counter, gauge, instanceState, peekState } from './instance-state.js';
import { QueryCache, rawHeader } from './match.js';
import { RouteTable, cookieValue, routeRuleSchema, type CompiledRoute, type RouteRuleConfig } from './table.js';
import { DestinationPolicies, destinationPolicySchema } from '../upstream/destination-policy.js';
import type { DestinationPolicyConfig } from '../upstream/resilience.js';
import type { RetryPolicy } from '../upstream/retry-policy.js';

/**
 * The routing filter (the `routes` and `principals` resources): matches the request against the
 * route table, counts it in the per-principal detector, and decides the subset — the suspicious
 * destination for a flagged principal (decision `rerouted`), else a weighted split, sticky per
 * affinity key. It leaves a RouteDecision in ctx.attrs for the router: timeout, retry policy, hash
 * key for consistent-hash balancing.
 */

export interface RoutesResourceObject {
  rules?: RouteRuleConfig[];
  detector?: DetectorConfig;
  destinations?: Record<string, DestinationPolicyConfig>;
}

/** A bare list is shorthand for `{ rules: [...] }`. */
export type RoutesResource = RoutesResourceObject | RouteRuleConfig[];

export const routesSchema = {
  // An array (the rules) or an object; multi-type rather than anyOf so errors name the field.
  type: ['array', 'object'],
  items: routeRuleSchema,
  additionalProperties: false,
  properties: {
    rules: { type: 'array', items: routeRuleSchema },
    detector: detectorSchema,
    destinations: { type: 'object', additionalProperties: destinationPolicySchema },
  },
} as const;

/** Flagged principals from the zone manager: names, or objects with an expiry. */
export type PrincipalsResource =
  | (string | PrincipalFlagConfig)[]
  | { flagged: (string | PrincipalFlagConfig)[] };

interface PrincipalFlagConfig {
  principal: string;
  action?: 'route' | 'ratelimit' | 'block';
  until?: number | string;
  expiresAt?: number | string;
  reason?: string;
  to?: { service: string; version: string };
}

const flagSchema = {
  type: ['string', 'object'],
  minLength: 1,
  required: ['principal'],
  properties: {
    principal: { type: 'string', minLength: 1 },
    until: { type: ['number', 'string'] },
    expiresAt: { type: ['number', 'string'] },
    reason: { type: 'string' },
    action: { enum: ['route', 'ratelimit', 'block'] },
    to: {
      type: 'object',
      required: ['service', 'version'],
      properties: { service: { type: 'string', minLength: 1 }, version: { type: 'string', minLength: 1 } },
    },
  },
} as const;

export const principalsSchema = {
  type: ['array', 'object'],
  items: flagSchema,
  required: ['flagged'],
  properties: { flagged: { type: 'array', items: flagSchema } },
} as const;

/** A manager flag: `action` route (the default), ratelimit or block; `to` names the safe version. */
export interface ManagerFlag extends RemoteFlag {
  action: string;
  to?: { service: string; version: string };
}

export function parsePrincipals(res: PrincipalsResource | undefined): ManagerFlag[] {
  if (!res) return [];
  const list = Array.isArray(res) ? res : res.flagged;
  return list.map((f) => {
    if (typeof f === 'string') return { principal: f, action: 'route' };
    const t = f.until ?? f.expiresAt;
    const until = t === undefined ? undefined : typeof t === 'number' ? t : Date.parse(t);
    return {
      principal: f.principal,
      action: f.action ?? 'route',
      ...(until !== undefined && !Number.isNaN(until) ? { until } : {}),
      ...(f.reason ? { reason: f.reason } : {}),
      ...(f.to ? { to: { service: f.to.service, version: f.to.version } } : {}),
    };
  });
}

export const ROUTE_ATTR = 'route';

/**
 * Set by the gateway on requests of a principal it flagged. A client sending it only sends itself
 * to the safe destination, so it is not a privilege.
 */
export const SUSPICIOUS_HEADER = 'x-etz-suspicious';

/** What routing decided, for the router. */
export interface RouteDecision {
  readonly route: string;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy | undefined;
  /** Affinity key: the router balances by consistent hash on it. */
  readonly hashKey: string | undefined;
  readonly rerouted: boolean;
}

export function routeDecision(ctx: RequestContext): RouteDecision | undefined {
  return ctx.attrs.get(ROUTE_ATTR) as RouteDecision | undefined;
}

/** The detector of one sidecar instance, shared by its listeners and kept across versions. */
export function detectorFor(owner: object): PrincipalDetector {
  return instanceState(owner, 'principal-detector', () => new PrincipalDetector());
}

function affinityKey(route: CompiledRoute, ctx: RequestContext): string | undefined {
  const a = route.affinity;
  if (!a) return undefined;
  if (a.header) {
    const v = rawHeader(ctx.req.rawHeaders, a.header);
    if (v) return v;
  }
  if (a.cookie) {
    const v = cookieValue(rawHeader(ctx.req.rawHeaders, 'cookie'), a.cookie.name);
    if (v) return v;
    if (a.cookie.ttlSec) {
      // Envoy's generated-cookie affinity: the first request gets a key and keeps it.
      const id = randomBytes(12).toString('base64url');
      ctx.res.appendHeader('set-cookie', `${a.cookie.name}=${id}; Max-Age=${a.cookie.ttlSec}; Path=${a.cookie.path}; HttpOnly`);
      return id;
    }
  }
  if (a.principal && ctx.principal) return ctx.principal;
  if (a.sourceIp) return ctx.remoteAddress;
  return undefined;
}

class RoutingFilter implements HttpFilter {
  readonly name = 'routing';
  private readonly query = new QueryCache();

  constructor(
    private readonly table: RouteTable,
    private readonly detector: PrincipalDetector | undefined,
    private readonly rerouted: { count: number },
    private readonly now: () => number,
    private activate: (() => void) | undefined,
    private readonly directed: ReadonlyMap<string, { service: string; subset: Record<string, string>; until: number }> | undefined,
  ) {}

  onRequest(ctx: RequestContext): undefined {
    if (this.activate !== undefined) {
      this.activate();
      this.activate = undefined;
    }
    let flagged = false;
    const principal = ctx.principal;
    const gateway = ctx.direction === 'gateway';
    if (this.detector !== undefined && principal !== undefined) {
      // Inside the mesh one user request fans out into calls sharing its x-request-id: count it
      // once. At the gateway every request is a user request, and a client's own x-request-id is
      // not to be trusted (reusing one would hide a scraper), so each one counts.
      flagged = this.detector.observe(principal, gateway ? undefined : ctx.id || undefined, this.now());
      // The gateway sees every request of a user: its verdict travels with the request, so the
      // sidecars inside the mesh reroute at once even when their own share of the traffic is small.
      if (gateway) {
        if (flagged) (ctx.upstreamHeaders ??= []).push(SUSPICIOUS_HEADER, '1');
      } else if (!flagged && rawHeader(ctx.req.rawHeaders, SUSPICIOUS_HEADER) === '1') flagged = true;
    }
    // The zone manager named the safe version for this principal: that wins over the rules' split.
    let directedTo: Record<string, string> | undefined;
    if (this.directed !== undefined && principal !== undefined) {
      const d = this.directed.get(principal);
      if (d !== undefined && d.until > this.now() && d.service === (ctx.destination?.service ?? ctx.host)) directedTo = d.subset;
    }
    const route = this.table.size === 0 ? undefined : this.table.match(ctx, this.query.reset(ctx.query));
    if (route === undefined) {
      if (directedTo !== undefined) {
        ctx.subset = directedTo;
        ctx.decision = 'rerouted';
        this.rerouted.count++;
      }
      return undefined;
    }
    const hashKey = affinityKey(route, ctx);
    let dest;
    let rerouted = false;
    if (directedTo !== undefined) {
      dest = { service: undefined, subset: directedTo };
      rerouted = true;
      ctx.decision = 'rerouted';
      this.rerouted.count++;
    } else if (flagged && route.suspicious !== undefined) {
      dest = route.suspicious.pick(hashKey, Math.random);
      rerouted = true;
      ctx.decision = 'rerouted';
      this.rerouted.count++;
    } else if (route.split !== undefined) {
      dest = route.split.pick(hashKey, Math.random);
    }
    if (dest !== undefined) {
      if (dest.subset !== undefined) ctx.subset = dest.subset as Record<string, string>;
      if (dest.service !== undefined && dest.service !== ctx.destination?.service) ctx.destination = { service: dest.service };
    }
    const decision: RouteDecision = { route: route.name, timeoutMs: route.timeoutMs, retry: route.retry, hashKey, rerouted };
    ctx.attrs.set(ROUTE_ATTR, decision);
    return undefined;
  }
}

function normalize(res: RoutesResource | undefined): RoutesResourceObject {
  if (!res) return {};
  return Array.isArray(res) ? { rules: res } : res;
}

export interface RoutingCompileOptions {
  now?: () => number;
}

export function compileRouting(config: RoutesResource | undefined, env: CompileEnv, opts: RoutingCompileOptions = {}): HttpFilter | null {
  if (env.direction === 'inbound') return null;
  const res = normalize(config);
  const table = new RouteTable(res.rules ?? [], 'resources', '/routes/rules');
  // Routing acts on the manager's `route` flags (block is zone-rules', ratelimit the rate limiter's).
  const remote = parsePrincipals(env.resources?.principals as PrincipalsResource | undefined).filter((f) => f.action === 'route');
  // Flags that name the safe version themselves apply even where no rule says where to go.
  const directed = new Map<string, { service: string; subset: Record<string, string>; until: number }>();
  for (const f of remote) if (f.to) directed.set(f.principal, { service: f.to.service, subset: { version: f.to.version }, until: f.until ?? Number.POSITIVE_INFINITY });
  const policies = new DestinationPolicies(env.metrics, env.direction);
  policies.configure(res.destinations);
  // The router of the same chain finds this version's policies by the chain's connector, which is
  // created per listener and version; only when the resilient path is needed at all.
  if (res.destinations !== undefined || (res.rules ?? []).some((r) => r.retries !== undefined || r.timeoutMs !== undefined || r.affinity !== undefined)) {
    policiesByChain.set(env.connector, policies);
  }

  const enabled = res.detector?.enabled ?? true;
  // The detector matters where a rule says where suspicious principals go, and at the gateway,
  // which counts every user request and passes its verdict on.
  const gatewayCounts = enabled && env.direction === 'gateway';
  const useDetector = (enabled && table.hasSuspicious) || gatewayCounts || remote.length > 0;
  let detector: PrincipalDetector | undefined;
  if (useDetector) {
    detector = detectorFor(env.metrics);
    const flaggedTotal = counter(env.metrics, 'etz_principals_flagged_total', 'End-user principals flagged suspicious by the local detector.', []);
    // A flood of scrapers must not become a flood of log lines: one line per 10 s at most, with
    // the count and a few names; the metric counts every one.
    let window = { start: 0, count: 0, sample: [] as string[] };
    const logger = env.logger;
    detector.onFlag ??= (principal, until) => {
      flaggedTotal.inc();
      const now = Date.now();
      if (now - window.start >= 10_000) {
        if (window.count > 1) logger.warn({ flagged: window.count, sample: window.sample }, 'principals flagged suspicious: rerouting');
        window = { start: now, count: 0, sample: [] };
        logger.warn({ principal, until: new Date(until).toISOString() }, 'principal flagged suspicious: rerouting');
      }
      window.count++;
      if (window.sample.length < 5) window.sample.push(principal);
    };
    const det = detector;
    gauge(env.metrics, 'etz_principals_flagged', 'End-user principals currently flagged (local detector and zone manager).', [], function collect() {
      this.set(det.flagged(Date.now()).length);
    });
  }
  if (table.size === 0 && !gatewayCounts && directed.size === 0) return null;
  // A plain number on the hot path; the scrape adds what is new to the exported counter.
  const reroutes = instanceState(env.metrics, `rerouted:${env.direction}`, () => ({ count: 0, reported: 0 }));
  counter(env.metrics, 'etz_route_rerouted_total', 'Requests of flagged principals sent to a route\'s suspicious destination.', ['direction'], function collect() {
    for (const dir of ['outbound', 'gateway'] as const) {
      const r = peekState<{ count: number; reported: number }>(env.metrics, `rerouted:${dir}`);
      if (r && r.count > r.reported) {
        this.inc({ direction: dir }, r.count - r.reported);
        r.reported = r.count;
      }
    }
  });
  const d = detector;
  // Shared detector settings change when this version serves its first request, never at compile:
  // a version that fails to compile (a later filter refuses it) must leave them as they were.
  const activate = d === undefined ? undefined : () => {
    d.reconfigure(res.detector ?? {});
    d.setRemote(remote);
  };
  return new RoutingFilter(table, detector, reroutes, opts.now ?? Date.now, activate, directed.size > 0 ? directed : undefined);
}

const policiesByChain = new WeakMap<object, DestinationPolicies>();

/** Destination policies for the router of the chain being compiled; undefined when none apply. */
export function destinationPolicies(env: CompileEnv): DestinationPolicies | undefined {
  return policiesByChain.get(env.connector);
}

export const routingFilter: FilterFactory<RoutesResource | undefined> = {
  name: 'routing',
  resource: 'routes',
  schema: routesSchema,
  directions: ['outbound', 'gateway'],
  compile: (config, env) => compileRouting(config, env),
};
