import { ConfigError } from '../../core/errors.js';
import { hash32 } from './hash-ring.js';
import { compileMatchList, routeMatchListSchema, type MatchInput, type QueryCache, type RequestPredicate, type RouteMatchConfig } from './match.js';
import { RetryPolicy, retrySchema, type RetryConfig } from '../upstream/retry-policy.js';

/**
 * The route table (the `routes` resource's rules), compiled once per config version: rules are
 * indexed by host so a request only tries the rules written for its destination (plus wildcard
 * rules), in the order they were written; the first match wins, as in Envoy and Istio.
 */

export interface RouteDestinationConfig {
  /** Send to another service than the one addressed (default: the addressed one). */
  service?: string;
  /** Endpoint labels the subset must carry, e.g. { version: v1 }. */
  subset?: Record<string, string>;
  weight?: number;
}

export interface AffinityConfig {
  header?: string;
  /** Cookie name; with ttlSec a missing cookie is generated and set on the response. */
  cookie?: string | { name: string; ttlSec?: number; path?: string };
  principal?: boolean;
  sourceIp?: boolean;
}

export interface RouteRuleConfig {
  name: string;
  /** Host header values or destination service names; default: all. */
  hosts?: string[];
  match?: RouteMatchConfig | RouteMatchConfig[];
  route?: RouteDestinationConfig[];
  /** Where principals flagged as suspicious go instead (adaptive routing). */
  suspicious?: RouteDestinationConfig | RouteDestinationConfig[];
  affinity?: AffinityConfig;
  timeoutMs?: number;
  retries?: RetryConfig;
}

const destinationSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    service: { type: 'string', minLength: 1 },
    subset: { type: 'object', additionalProperties: { type: 'string' } },
    weight: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
} as const;

export const routeRuleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1 },
    hosts: { type: 'array', items: { type: 'string', minLength: 1 } },
    match: routeMatchListSchema,
    route: { type: 'array', minItems: 1, items: destinationSchema },
    suspicious: { ...destinationSchema, type: ['object', 'array'], minItems: 1, items: destinationSchema },
    affinity: {
      type: 'object',
      additionalProperties: false,
      properties: {
        header: { type: 'string', minLength: 1 },
        cookie: {
          type: ['string', 'object'],
          minLength: 1,
          additionalProperties: false,
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1 }, ttlSec: { type: 'integer', minimum: 1 }, path: { type: 'string' } },
        },
        principal: { type: 'boolean' },
        sourceIp: { type: 'boolean' },
      },
    },
    timeoutMs: { type: 'integer', minimum: 1 },
    retries: retrySchema,
  },
} as const;

export interface Destination {
  readonly service: string | undefined;
  readonly subset: Readonly<Record<string, string>> | undefined;
}

/** A weighted choice among destinations; with a hash key the choice is sticky per key. */
export class Split {
  private readonly dests: Destination[];
  private readonly cumulative: number[];
  private readonly total: number;

  constructor(cfg: RouteDestinationConfig[], file: string, field: string) {
    this.dests = cfg.map((d) => ({ service: d.service, subset: d.subset && Object.keys(d.subset).length ? { ...d.subset } : undefined }));
    let sum = 0;
    this.cumulative = cfg.map((d) => (sum += d.weight ?? (cfg.length === 1 ? 1 : 0)));
    // Unweighted lists split evenly; a mix of weighted and unweighted entries is a mistake.
    if (sum === 0) {
      if (cfg.some((d) => d.weight !== undefined)) throw new ConfigError(file, field, 'weights add up to 0');
      this.cumulative = cfg.map((_d, i) => i + 1);
      sum = cfg.length;
    } else if (cfg.length > 1 && cfg.some((d) => d.weight === undefined)) {
      throw new ConfigError(file, field, 'give every destination a weight, or none');
    }
    this.total = sum;
  }

  get size(): number {
    return this.dests.length;
  }

  pick(hashKey: string | undefined, random: () => number): Destination {
    if (this.dests.length === 1) return this.dests[0]!;
    // A different seed than the endpoint ring, so the version choice and the endpoint choice of
    // one key are independent.
    const r = hashKey !== undefined ? hash32(hashKey, 0x9e3779b9) % this.total : random() * this.total;
    const c = this.cumulative;
    for (let i = 0; i < c.length; i++) if (r < c[i]!) return this.dests[i]!;
    return this.dests[this.dests.length - 1]!;
  }
}

export interface CompiledAffinity {
  header?: string;
  cookie?: { name: string; ttlSec?: number; path: string };
  principal: boolean;
  sourceIp: boolean;
}

export interface CompiledRoute {
  readonly name: string;
  readonly index: number;
  readonly match: RequestPredicate;
  readonly split: Split | undefined;
  readonly suspicious: Split | undefined;
  readonly affinity: CompiledAffinity | undefined;
  readonly timeoutMs: number | undefined;
  readonly retry: RetryPolicy | undefined;
}

export interface RouteLookupInput extends MatchInput {
  readonly host: string;
  readonly destination?: { readonly service: string };
}

export class RouteTable {
  private readonly byHost = new Map<string, CompiledRoute[]>();
  private readonly wildcard: CompiledRoute[] = [];
  readonly size: number;
  readonly hasSuspicious: boolean;

  constructor(rules: readonly RouteRuleConfig[], file = 'routes', base = '/rules') {
    const compiled: { r: CompiledRoute; hosts: string[] | undefined }[] = [];
    const names = new Set<string>();
    rules.forEach((rule, i) => {
      const field = `${base}/${i}`;
      if (names.has(rule.name)) throw new ConfigError(file, `${field}/name`, `duplicate route name '${rule.name}'`);
      names.add(rule.name);
      const suspicious = rule.suspicious === undefined ? undefined : Array.isArray(rule.suspicious) ? rule.suspicious : [rule.suspicious];
      const r: CompiledRoute = {
        name: rule.name,
        index: i,
        match: compileMatchList(rule.match, file, `${field}/match`),
        split: rule.route ? new Split(rule.route, file, `${field}/route`) : undefined,
        suspicious: suspicious ? new Split(suspicious, file, `${field}/suspicious`) : undefined,
        affinity: compileAffinity(rule.affinity),
        timeoutMs: rule.timeoutMs,
        retry: rule.retries ? new RetryPolicy(rule.retries, file, `${field}/retries`) : undefined,
      };
      const hosts = rule.hosts?.includes('*') ? undefined : rule.hosts?.map((h) => h.toLowerCase());
      compiled.push({ r, hosts });
    });
    for (const { r, hosts } of compiled) {
      if (!hosts) this.wildcard.push(r);
      else for (const h of hosts) (this.byHost.get(h) ?? this.byHost.set(h, []).get(h)!).push(r);
    }
    // Each host's list also holds the wildcard rules, in the order they were written.
    for (const list of this.byHost.values()) {
      list.push(...this.wildcard);
      list.sort((a, b) => a.index - b.index);
    }
    this.size = compiled.length;
    this.hasSuspicious = compiled.some((c) => c.r.suspicious !== undefined);
  }

  /** The rules to try for a request: by Host header first, then by destination service. */
  candidates(input: RouteLookupInput): readonly CompiledRoute[] {
    if (this.byHost.size > 0) {
      const byHost = this.byHost.get(input.host);
      if (byHost) return byHost;
      const svc = input.destination?.service;
      if (svc !== undefined) {
        const bySvc = this.byHost.get(svc);
        if (bySvc) return bySvc;
      }
    }
    return this.wildcard;
  }

  match(input: RouteLookupInput, q: QueryCache): CompiledRoute | undefined {
    for (const r of this.candidates(input)) if (r.match(input, q)) return r;
    return undefined;
  }
}

function compileAffinity(a: AffinityConfig | undefined): CompiledAffinity | undefined {
  if (!a) return undefined;
  const cookie = a.cookie === undefined ? undefined : typeof a.cookie === 'string' ? { name: a.cookie, path: '/' } : { name: a.cookie.name, ttlSec: a.cookie.ttlSec, path: a.cookie.path ?? '/' };
  return { header: a.header?.toLowerCase(), cookie, principal: a.principal ?? false, sourceIp: a.sourceIp ?? false };
}

/** The value of cookie `name` in a Cookie header, without allocating for the other cookies. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let from = 0;
  while (from < header.length) {
    let end = header.indexOf(';', from);
    if (end < 0) end = header.length;
    let s = from;
    while (s < end && header.charCodeAt(s) === 32) s++;
    const eq = header.indexOf('=', s);
    if (eq > 0 && eq < end && header.slice(s, eq) === name) return header.slice(eq + 1, end).trim();
    from = end + 1;
  }
  return undefined;
}
