import { attrTest, compileCidrs, compileGlobs, compilePaths, costOf, type Matcher } from './match.js';
import { conditionHeader } from './load.js';
import type { Condition, OperationMatch, PolicyRequest, Selector, SourceMatch } from './types.js';

/**
 * A policy compiles to clauses: one test on one request attribute, labelled with the field it
 * came from. The evaluator runs their conjunction; explain walks them to name the first field
 * that failed; connection admission evaluates them three-valued (an L7 attribute is unknown on a
 * bare connection). One source of truth for all three.
 */

export type Pred = (req: PolicyRequest) => boolean;

/** Which request attribute a clause reads; `l7` ones are unknown when judging a connection. */
export type Attr =
  | 'sourcePrincipal'
  | 'sourceNamespace'
  | 'sourceIp'
  | 'sourceZones'
  | 'requestPrincipal'
  | 'destVersion'
  | 'destNamespace'
  | 'destZones'
  | 'method'
  | 'path'
  | 'port'
  | 'host'
  | 'header';

export const L4_ATTRS: ReadonlySet<Attr> = new Set(['sourcePrincipal', 'sourceNamespace', 'sourceIp', 'destVersion', 'destNamespace', 'port']);

export interface Clause {
  /** Field path in the policy, e.g. `from[0].principals`. */
  readonly field: string;
  readonly attr: Attr;
  /** For `header` clauses, the lower-case header name. */
  readonly header?: string;
  readonly test: Pred;
  /** Relative cost (see match.ts costOf); absent = 3. */
  readonly cost?: number;
}

export function clauseCost(c: Clause): number {
  return c.cost ?? 3;
}

// Several clauses of one evaluation read the namespace of the same principal: derive it once.
let lastPrincipal = '';
let lastNamespace: string | undefined;

export function sourceNamespace(req: PolicyRequest): string | undefined {
  if (req.sourceNamespace !== undefined) return req.sourceNamespace;
  const p = req.sourcePrincipal;
  if (p === undefined) return undefined;
  if (p === lastPrincipal) return lastNamespace;
  const i = p.indexOf('/ns/');
  const j = i < 0 ? -1 : p.indexOf('/', i + 4);
  lastPrincipal = p;
  lastNamespace = i < 0 ? undefined : j < 0 ? p.slice(i + 4) : p.slice(i + 4, j);
  return lastNamespace;
}

type Getter = (req: PolicyRequest) => string | undefined;
type ListGetter = (req: PolicyRequest) => readonly string[] | undefined;

const GETTERS: Partial<Record<Attr, Getter>> = {
  sourcePrincipal: (r) => r.sourcePrincipal,
  sourceNamespace,
  sourceIp: (r) => r.sourceIp,
  requestPrincipal: (r) => r.requestPrincipal,
  destVersion: (r) => r.destVersion,
  destNamespace: (r) => r.destNamespace,
  method: (r) => r.method,
  path: (r) => r.path,
  host: (r) => r.host,
};
const LIST_GETTERS: Partial<Record<Attr, ListGetter>> = {
  sourceZones: (r) => r.sourceZones,
  destZones: (r) => r.destZones,
};

/**
 * The hot positive clauses, with the attribute read inline (no getter call) and a single exact
 * value compared inline (no matcher call): most rules name one principal, method or path.
 */
function positive(attr: Attr, m: Matcher): Pred | undefined {
  const only = (m as Matcher & { only?: string }).only;
  switch (attr) {
    case 'sourcePrincipal':
      return only !== undefined ? (r) => r.sourcePrincipal === only : (r) => r.sourcePrincipal !== undefined && m(r.sourcePrincipal);
    case 'method':
      return only !== undefined ? (r) => r.method === only : (r) => r.method !== undefined && m(r.method);
    case 'path':
      return only !== undefined ? (r) => r.path === only : (r) => r.path !== undefined && m(r.path);
    case 'sourceIp':
      return (r) => r.sourceIp !== undefined && m(r.sourceIp);
    case 'requestPrincipal':
      return only !== undefined ? (r) => r.requestPrincipal === only : (r) => r.requestPrincipal !== undefined && m(r.requestPrincipal);
    case 'destVersion':
      return only !== undefined ? (r) => r.destVersion === only : undefined;
    default:
      return undefined;
  }
}

/** Positive: the attribute is present and matches. Negative: absent, or matches none. */
function scalar(field: string, attr: Attr, m: Matcher, negate: boolean): Clause {
  const fast = negate ? undefined : positive(attr, m);
  // The namespace is derived from the principal: a little dearer than a plain read.
  const cost = costOf(m) + (attr === 'sourceNamespace' ? 1 : 0);
  if (fast) return { field, attr, test: fast, cost };
  return { field, attr, test: attrTest(GETTERS[attr]!, m, negate), cost: cost + 1 };
}

function list(field: string, attr: Attr, m: Matcher, negate: boolean): Clause {
  const get = LIST_GETTERS[attr]!;
  const test: Pred = negate
    ? (r) => {
        const v = get(r);
        return v === undefined || !v.some(m);
      }
    : (r) => {
        const v = get(r);
        return v !== undefined && v.some(m);
      };
  return { field, attr, test };
}

function portClause(field: string, ports: readonly (number | string)[], negate: boolean): Clause {
  const set = new Set(ports.map(Number));
  const test: Pred = negate ? (r) => r.port === undefined || !set.has(r.port) : (r) => r.port !== undefined && set.has(r.port);
  return { field, attr: 'port', test, cost: 1 };
}

const exactSet = (values: readonly string[]): Matcher => {
  const s = new Set(values);
  return (v) => s.has(v);
};

export function selectorClauses(sel: Selector | undefined, prefix = 'selector'): Clause[] {
  const out: Clause[] = [];
  if (!sel) return out;
  if (sel.version !== undefined) out.push(scalar(`${prefix}.version`, 'destVersion', exactSet([sel.version]), false));
  if (sel.namespace !== undefined) out.push(scalar(`${prefix}.namespace`, 'destNamespace', exactSet([sel.namespace]), false));
  if (sel.zone !== undefined) out.push(list(`${prefix}.zone`, 'destZones', exactSet([sel.zone]), false));
  return out;
}

export function sourceClauses(s: SourceMatch, f: string): Clause[] {
  const out: Clause[] = [];
  const g = (xs: string[]) => compileGlobs(xs);
  if (s.principals) out.push(scalar(`${f}.principals`, 'sourcePrincipal', g(s.principals), false));
  if (s.notPrincipals) out.push(scalar(`${f}.notPrincipals`, 'sourcePrincipal', g(s.notPrincipals), true));
  if (s.namespaces) out.push(scalar(`${f}.namespaces`, 'sourceNamespace', g(s.namespaces), false));
  if (s.notNamespaces) out.push(scalar(`${f}.notNamespaces`, 'sourceNamespace', g(s.notNamespaces), true));
  if (s.ipBlocks) out.push(scalar(`${f}.ipBlocks`, 'sourceIp', compileCidrs(s.ipBlocks), false));
  if (s.notIpBlocks) out.push(scalar(`${f}.notIpBlocks`, 'sourceIp', compileCidrs(s.notIpBlocks), true));
  if (s.zones) out.push(list(`${f}.zones`, 'sourceZones', exactSet(s.zones), false));
  if (s.notZones) out.push(list(`${f}.notZones`, 'sourceZones', exactSet(s.notZones), true));
  if (s.requestPrincipals) out.push(scalar(`${f}.requestPrincipals`, 'requestPrincipal', g(s.requestPrincipals), false));
  if (s.notRequestPrincipals) out.push(scalar(`${f}.notRequestPrincipals`, 'requestPrincipal', g(s.notRequestPrincipals), true));
  return out;
}

export function operationClauses(o: OperationMatch, f: string): Clause[] {
  const out: Clause[] = [];
  const methods = (xs: string[]) => compileGlobs(xs.map((m) => m.toUpperCase()));
  if (o.methods) out.push(scalar(`${f}.methods`, 'method', methods(o.methods), false));
  if (o.notMethods) out.push(scalar(`${f}.notMethods`, 'method', methods(o.notMethods), true));
  if (o.paths) out.push(scalar(`${f}.paths`, 'path', compilePaths(o.paths), false));
  if (o.notPaths) out.push(scalar(`${f}.notPaths`, 'path', compilePaths(o.notPaths), true));
  if (o.ports) out.push(portClause(`${f}.ports`, o.ports, false));
  if (o.notPorts) out.push(portClause(`${f}.notPorts`, o.notPorts, true));
  if (o.hosts) out.push(scalar(`${f}.hosts`, 'host', compileGlobs(o.hosts, true), false));
  if (o.notHosts) out.push(scalar(`${f}.notHosts`, 'host', compileGlobs(o.notHosts, true), true));
  return out;
}

function headerValue(r: PolicyRequest, name: string): string | undefined {
  const v = r.headers?.[name];
  return Array.isArray(v) ? v.join(',') : v;
}

export function conditionClauses(c: Condition, f: string): Clause[] {
  const out: Clause[] = [];
  const header = conditionHeader(c);
  for (const [vals, negate] of [[c.values, false], [c.notValues, true]] as const) {
    if (!vals) continue;
    const field = `${f}.${negate ? 'notValues' : 'values'}`;
    if (header !== undefined) {
      out.push({ field, attr: 'header', header, test: attrTest((r: PolicyRequest) => headerValue(r, header), compileGlobs(vals), negate) });
      continue;
    }
    switch (c.key) {
      case 'source.ip':
        out.push(scalar(field, 'sourceIp', compileCidrs(vals), negate));
        break;
      case 'source.namespace':
        out.push(scalar(field, 'sourceNamespace', compileGlobs(vals), negate));
        break;
      case 'source.principal':
        out.push(scalar(field, 'sourcePrincipal', compileGlobs(vals), negate));
        break;
      case 'request.auth.principal':
        out.push(scalar(field, 'requestPrincipal', compileGlobs(vals), negate));
        break;
      case 'destination.port':
        out.push(portClause(field, vals, negate));
        break;
      case 'source.zone':
        out.push(list(field, 'sourceZones', exactSet(vals), negate));
        break;
      case 'destination.zone':
        out.push(list(field, 'destZones', exactSet(vals), negate));
        break;
      default:
        throw new Error(`unknown condition key ${c.key}`);
    }
  }
  return out;
}

/** AND of clauses, as one function (the common sizes unrolled). */
export function conjunction(clauses: readonly Clause[]): Pred {
  const t = clauses.map((c) => c.test);
  switch (t.length) {
    case 0:
      return () => true;
    case 1:
      return t[0]!;
    case 2: {
      const [a, b] = t as [Pred, Pred];
      return (r) => a(r) && b(r);
    }
    case 3: {
      const [a, b, c] = t as [Pred, Pred, Pred];
      return (r) => a(r) && b(r) && c(r);
    }
    default:
      return (r) => {
        for (const p of t) if (!p(r)) return false;
        return true;
      };
  }
}

/** OR of alternatives; an absent list (null) matches everything. */
export function disjunction(alts: readonly Pred[] | null): Pred {
  if (alts === null) return () => true;
  if (alts.length === 1) return alts[0]!;
  return (r) => {
    for (const p of alts) if (p(r)) return true;
    return false;
  };
}

/** Three-valued logic for connection admission: 0 no, 1 unknown, 2 yes. */
export type Tri = 0 | 1 | 2;

export function triClauses(clauses: readonly Clause[], req: PolicyRequest): Tri {
  let out: Tri = 2;
  for (const c of clauses) {
    if (!L4_ATTRS.has(c.attr)) out = 1;
    else if (!c.test(req)) return 0;
  }
  return out;
}
