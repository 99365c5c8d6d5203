import { ConfigError } from '../../core/errors.js';

/**
 * Request matching, compiled once per config version into small predicates (the shape of
 * Envoy's route match: path exact/prefix/regex, method, headers, query parameters). A request
 * never re-parses route config; only query strings are parsed, lazily and once, when a route
 * actually matches on them.
 */

export interface StringMatchConfig {
  exact?: string;
  prefix?: string;
  /** Matched against the whole value, like Envoy's safe_regex. */
  regex?: string;
  present?: boolean;
}

export interface PathMatchConfig {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface RouteMatchConfig {
  path?: PathMatchConfig | string;
  methods?: string[];
  /** Header name → a value (exact) or a StringMatchConfig. All must hold. */
  headers?: Record<string, string | StringMatchConfig>;
  /** Query parameter → a value (exact) or a StringMatchConfig. All must hold. */
  query?: Record<string, string | StringMatchConfig>;
}

/** What a matcher reads from a request; a subset of RequestContext so units test without sockets. */
export interface MatchInput {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly req: { readonly rawHeaders: readonly string[] };
}

export type ValuePredicate = (value: string | undefined) => boolean;
export type RequestPredicate = (input: MatchInput, q: QueryCache) => boolean;

/**
 * Parsed query of one request, filled on first use. A filter may keep one and `reset` it per
 * request: filters run synchronously, so no two requests share it at once.
 */
export class QueryCache {
  private params: URLSearchParams | undefined;
  constructor(private raw: string = '') {}
  reset(raw: string): this {
    this.raw = raw;
    this.params = undefined;
    return this;
  }
  get(name: string): string | undefined {
    if (this.raw === '') return undefined;
    this.params ??= new URLSearchParams(this.raw);
    return this.params.get(name) ?? undefined;
  }
}

const ALWAYS: RequestPredicate = () => true;

function compileRegex(source: string, file: string, field: string): RegExp {
  try {
    return new RegExp(`^(?:${source})$`);
  } catch (err) {
    throw new ConfigError(file, field, `invalid regular expression: ${(err as Error).message}`);
  }
}

export function compileStringMatch(m: string | StringMatchConfig, file: string, field: string): ValuePredicate {
  if (typeof m === 'string') return (v) => v === m;
  const kinds = (['exact', 'prefix', 'regex', 'present'] as const).filter((k) => m[k] !== undefined);
  if (kinds.length !== 1) throw new ConfigError(file, field, 'needs exactly one of exact, prefix, regex, present');
  if (m.exact !== undefined) {
    const x = m.exact;
    return (v) => v === x;
  }
  if (m.prefix !== undefined) {
    const p = m.prefix;
    return (v) => v !== undefined && v.startsWith(p);
  }
  if (m.regex !== undefined) {
    const re = compileRegex(m.regex, file, `${field}/regex`);
    return (v) => v !== undefined && re.test(v);
  }
  const want = m.present === true;
  return (v) => (v !== undefined) === want;
}

/**
 * First value of header `lname` (lower-case), read from rawHeaders: `req.headers` would make Node
 * build a copy of every header of every request just to read one or two.
 */
export function rawHeader(raw: readonly string[], lname: string): string | undefined {
  const n = lname.length;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!;
    if (k.length === n && (k === lname || k.toLowerCase() === lname)) return raw[i + 1];
  }
  return undefined;
}

export function compileMatch(cfg: RouteMatchConfig | undefined, file: string, field: string): RequestPredicate {
  if (!cfg) return ALWAYS;
  const parts: RequestPredicate[] = [];
  if (cfg.path !== undefined) {
    const pm: PathMatchConfig = typeof cfg.path === 'string' ? { prefix: cfg.path } : cfg.path;
    const kinds = (['exact', 'prefix', 'regex'] as const).filter((k) => pm[k] !== undefined);
    if (kinds.length !== 1) throw new ConfigError(file, `${field}/path`, 'needs exactly one of exact, prefix, regex');
    if (pm.exact !== undefined) {
      const x = pm.exact;
      parts.push((i) => i.path === x);
    } else if (pm.prefix !== undefined) {
      const p = pm.prefix;
      // "/reviews" matches /reviews and /reviews/1 but not /reviewsX, as in Envoy's path_separated_prefix.
      const slash = p.endsWith('/') ? p : `${p}/`;
      parts.push((i) => p === '/' || i.path === p || i.path.startsWith(slash));
    } else {
      const re = compileRegex(pm.regex!, file, `${field}/path/regex`);
      parts.push((i) => re.test(i.path));
    }
  }
  if (cfg.methods?.length) {
    const set = new Set(cfg.methods.map((m) => m.toUpperCase()));
    parts.push((i) => set.has(i.method));
  }
  for (const [name, m] of Object.entries(cfg.headers ?? {})) {
    const lname = name.toLowerCase();
    const pred = compileStringMatch(m, file, `${field}/headers/${name}`);
    parts.push((i) => pred(rawHeader(i.req.rawHeaders, lname)));
  }
  for (const [name, m] of Object.entries(cfg.query ?? {})) {
    const pred = compileStringMatch(m, file, `${field}/query/${name}`);
    parts.push((_i, q) => pred(q.get(name)));
  }
  if (parts.length === 0) return ALWAYS;
  if (parts.length === 1) return parts[0]!;
  return (i, q) => {
    for (const p of parts) if (!p(i, q)) return false;
    return true;
  };
}

/** Any-of a list of matches (a route's `match` may be one object or a list, as in Istio). */
export function compileMatchList(cfg: RouteMatchConfig | RouteMatchConfig[] | undefined, file: string, field: string): RequestPredicate {
  if (!Array.isArray(cfg)) return compileMatch(cfg, file, field);
  if (cfg.length === 0) return ALWAYS;
  const preds = cfg.map((m, n) => compileMatch(m, file, `${field}/${n}`));
  if (preds.length === 1) return preds[0]!;
  return (i, q) => {
    for (const p of preds) if (p(i, q)) return true;
    return false;
  };
}

/**
 * JSON schemas shared by routes and rate limits. Unions are written as multi-type schemas rather
 * than anyOf, so a validation error points at the offending field instead of at the union.
 */
const stringMatchSchema = {
  type: ['string', 'object'],
  additionalProperties: false,
  properties: { exact: { type: 'string' }, prefix: { type: 'string' }, regex: { type: 'string' }, present: { type: 'boolean' } },
} as const;

const matchProperties = {
  path: {
    type: ['string', 'object'],
    pattern: '^/',
    additionalProperties: false,
    properties: { exact: { type: 'string' }, prefix: { type: 'string' }, regex: { type: 'string' } },
  },
  methods: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z]+$' } },
  headers: { type: 'object', additionalProperties: stringMatchSchema },
  query: { type: 'object', additionalProperties: stringMatchSchema },
} as const;

export const routeMatchSchema = { type: 'object', additionalProperties: false, properties: matchProperties } as const;

/** One match object or a list of them (any of which matches). */
export const routeMatchListSchema = {
  type: ['object', 'array'],
  additionalProperties: false,
  properties: matchProperties,
  items: routeMatchSchema,
} as const;
