import { EtzError } from '../core/errors.js';
import { cidrCovers, compileGlobs, compilePaths, globCovers, parseCidr } from './match.js';
import { conditionHeader } from './load.js';
import { policyId } from './load.js';
import type { AuthzRule, Condition, NetRule, OperationMatch, PolicyDocument, Selector, SourceMatch } from './types.js';

/**
 * Conflict detection. Rules are normalised into conjunctions of per-field constraints, and a
 * conservative coverage test decides "every request B matches, A matches too" (it may miss a
 * coverage, never invents one). From coverage follow the findings: duplicates, rules shadowed by
 * a broader rule, ALLOW rules a DENY fully covers, and ALLOW/DENY contradictions on one selector.
 */

export type FindingKind = 'duplicate' | 'shadowed' | 'allow-covered-by-deny' | 'contradiction';

export interface RuleLocation {
  kind: 'AuthorizationPolicy' | 'NetworkPolicy';
  policy: string;
  /** `rules[0]`, `ingress[1]`, `egress[0]`. */
  rule: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
}

export interface Finding {
  kind: FindingKind;
  /** The rule that has the problem. */
  rule: RuleLocation;
  /** The rule it clashes with. */
  with: RuleLocation;
  message: string;
}

type Kind = 'glob' | 'ci' | 'path' | 'cidr' | 'exact' | 'range';
interface FieldC {
  kind: Kind;
  pos?: string[];
  neg?: string[];
}
type Conj = Map<string, FieldC>;
interface NormRule {
  loc: RuleLocation;
  order: number;
  service?: string;
  selector: Conj;
  /** Group key: direction for network rules, '' for authorization. */
  group: string;
  from: Conj[] | null;
  to: Conj[] | null;
  when: Conj;
}

function put(c: Conj, field: string, kind: Kind, pos?: readonly (string | number)[], neg?: readonly (string | number)[]): void {
  if (!pos && !neg) return;
  const f: FieldC = c.get(field) ?? { kind };
  if (pos) f.pos = [...(f.pos ?? []), ...pos.map(String)];
  if (neg) f.neg = [...(f.neg ?? []), ...neg.map(String)];
  c.set(field, f);
}

function selectorConj(s: Selector | undefined): Conj {
  const c: Conj = new Map();
  for (const k of ['service', 'version', 'namespace', 'zone'] as const) if (s?.[k] !== undefined) put(c, k, 'exact', [s[k]!]);
  return c;
}

function sourceConj(s: SourceMatch): Conj {
  const c: Conj = new Map();
  put(c, 'principal', 'glob', s.principals, s.notPrincipals);
  put(c, 'namespace', 'glob', s.namespaces, s.notNamespaces);
  put(c, 'ip', 'cidr', s.ipBlocks, s.notIpBlocks);
  put(c, 'zone', 'exact', s.zones, s.notZones);
  put(c, 'requestPrincipal', 'glob', s.requestPrincipals, s.notRequestPrincipals);
  return c;
}

function operationConj(o: OperationMatch): Conj {
  const c: Conj = new Map();
  const up = (xs?: string[]) => xs?.map((m) => m.toUpperCase());
  put(c, 'method', 'glob', up(o.methods), up(o.notMethods));
  put(c, 'path', 'path', o.paths, o.notPaths);
  put(c, 'port', 'exact', o.ports, o.notPorts);
  put(c, 'host', 'ci', o.hosts, o.notHosts);
  return c;
}

function whenConj(when: readonly Condition[] | undefined): Conj {
  const c: Conj = new Map();
  for (const w of when ?? []) {
    const h = conditionHeader(w);
    const key = h !== undefined ? `header:${h}` : `key:${w.key}`;
    const kind: Kind = w.key === 'source.ip' ? 'cidr' : w.key === 'destination.port' ? 'exact' : 'glob';
    // Two conditions on one key must both hold; merging them as alternatives would be wrong,
    // so a rule that repeats a key keeps the later one under a distinct (uncomparable) name.
    put(c, c.has(key) ? `${key}#${c.size}` : key, kind, w.values, w.notValues);
  }
  return c;
}

function normAuthz(doc: PolicyDocument & { kind: 'AuthorizationPolicy' }, rule: AuthzRule, i: number, order: number): NormRule {
  return {
    loc: { kind: 'AuthorizationPolicy', policy: policyId(doc), rule: `rules[${i}]`, action: doc.spec.action ?? 'ALLOW' },
    order,
    ...(doc.spec.selector?.service !== undefined ? { service: doc.spec.selector.service } : {}),
    selector: selectorConj(doc.spec.selector),
    group: 'authz',
    from: rule.from ? rule.from.map(sourceConj) : null,
    to: rule.to ? rule.to.map(operationConj) : null,
    when: whenConj(rule.when),
  };
}

function normNet(doc: PolicyDocument & { kind: 'NetworkPolicy' }, dir: 'ingress' | 'egress', rule: NetRule, i: number, order: number): NormRule {
  const peers = dir === 'ingress' ? rule.from : rule.to;
  const ports: Conj = new Map();
  if (rule.ports) put(ports, 'ports', 'range', rule.ports.map((p) => `${p.port}-${p.endPort ?? p.port}`));
  return {
    loc: { kind: 'NetworkPolicy', policy: policyId(doc), rule: `${dir}[${i}]`, action: rule.action ?? 'ALLOW' },
    order,
    ...(doc.spec.target?.service !== undefined ? { service: doc.spec.target.service } : {}),
    selector: selectorConj(doc.spec.target),
    group: dir,
    from: peers
      ? peers.map((p) => {
          const c: Conj = new Map();
          put(c, 'principal', 'glob', p.principals);
          put(c, 'namespace', 'glob', p.namespaces);
          put(c, 'service', 'glob', p.services);
          put(c, 'host', 'ci', p.hosts);
          put(c, 'ip', 'cidr', p.ipBlocks, p.notIpBlocks);
          put(c, 'zone', 'exact', p.zones);
          return c;
        })
      : null,
    to: null,
    when: ports,
  };
}

function valueCovers(kind: Kind, a: string, b: string): boolean {
  switch (kind) {
    case 'glob':
      return globCovers(a, b);
    case 'ci':
      return globCovers(a, b, 'ci');
    case 'path':
      return globCovers(a, b, 'path');
    case 'cidr': {
      const x = parseCidr(a);
      const y = parseCidr(b);
      return !!x && !!y && cidrCovers(x, y);
    }
    case 'range': {
      const [a0, a1] = a.split('-').map(Number) as [number, number];
      const [b0, b1] = b.split('-').map(Number) as [number, number];
      return a0 <= b0 && b1 <= a1;
    }
    default:
      return a === b;
  }
}

/** Whether value pattern `p` certainly matches nothing that pattern `n` matches. */
function disjoint(kind: Kind, p: string, n: string): boolean {
  if (kind === 'cidr') {
    const x = parseCidr(p);
    const y = parseCidr(n);
    return !!x && !!y && !cidrCovers(x, y) && !cidrCovers(y, x);
  }
  if (kind === 'range') return false;
  if (p.includes('*')) return false;
  if (kind === 'exact') return p !== n;
  const m = kind === 'path' ? compilePaths([n]) : compileGlobs([n], kind === 'ci');
  return !m(p);
}

function conjCovers(a: Conj, b: Conj): boolean {
  for (const [field, af] of a) {
    const bf = b.get(field);
    if (af.pos && !(bf?.pos && bf.pos.every((bp) => af.pos!.some((ap) => valueCovers(af.kind, ap, bp))))) return false;
    if (af.neg) {
      for (const an of af.neg) {
        const excluded = bf?.neg?.some((bn) => valueCovers(af.kind, bn, an)) ?? false;
        const outside = bf?.pos?.every((bp) => disjoint(af.kind, bp, an)) ?? false;
        if (!excluded && !outside) return false;
      }
    }
  }
  return true;
}

function altsCover(a: Conj[] | null, b: Conj[] | null): boolean {
  if (a === null) return true;
  if (b === null) return a.some((c) => c.size === 0);
  return b.every((bc) => a.some((ac) => conjCovers(ac, bc)));
}

/** Every request rule `b` matches (on workloads b selects), rule `a` matches too. */
function covers(a: NormRule, b: NormRule): boolean {
  return conjCovers(a.selector, b.selector) && altsCover(a.from, b.from) && altsCover(a.to, b.to) && conjCovers(a.when, b.when);
}

function describe(l: RuleLocation): string {
  return `${l.kind === 'NetworkPolicy' ? 'network policy' : 'policy'} ${l.policy} ${l.rule} (${l.action})`;
}

/** Find the conflicts in a policy set (empty when there are none). */
export function lintPolicies(docs: readonly PolicyDocument[]): Finding[] {
  const rules: NormRule[] = [];
  for (const d of docs) {
    if (d.kind === 'AuthorizationPolicy') d.spec.rules?.forEach((r, i) => rules.push(normAuthz(d, r, i, rules.length)));
    else if (d.kind === 'NetworkPolicy') {
      for (const dir of ['ingress', 'egress'] as const) d.spec[dir]?.forEach((r, i) => rules.push(normNet(d, dir, r, i, rules.length)));
    }
  }
  // Only rules on the same service (or on no service) can cover each other: compare within those.
  const byService = new Map<string, NormRule[]>();
  const global: NormRule[] = [];
  for (const r of rules) {
    if (r.service === undefined) global.push(r);
    else {
      let l = byService.get(r.service);
      if (!l) byService.set(r.service, (l = []));
      l.push(r);
    }
  }
  const findings: Finding[] = [];
  const reported = new Set<string>();
  const report = (kind: FindingKind, b: NormRule, a: NormRule, message: string) => {
    const key = `${kind}|${b.order}|${a.order}`;
    if (reported.has(key) || reported.has(`${kind}|${a.order}|${b.order}`)) return;
    reported.add(key);
    findings.push({ kind, rule: b.loc, with: a.loc, message });
  };
  const check = (b: NormRule, candidates: readonly NormRule[]) => {
    for (const a of candidates) {
      if (a === b || a.group !== b.group) continue;
      if (!covers(a, b)) continue;
      const equal = covers(b, a);
      const ab = b.loc.action;
      const aa = a.loc.action;
      if (aa === ab) {
        if (equal) {
          const [first, second] = a.order < b.order ? [a, b] : [b, a];
          report('duplicate', second, first, `${describe(second.loc)} duplicates ${describe(first.loc)}: they match exactly the same requests`);
        } else {
          const when = a.order < b.order ? 'an earlier' : 'a later';
          report('shadowed', b, a, `${describe(b.loc)} is shadowed by ${when} broader rule, ${describe(a.loc)}: every request it matches, that rule matches too, so it never changes a decision`);
        }
      } else if (aa === 'DENY' && ab === 'ALLOW') {
        const sameSelector = conjCovers(b.selector, a.selector);
        if (equal && sameSelector) {
          report('contradiction', b, a, `${describe(b.loc)} contradicts ${describe(a.loc)}: the same requests on the same selector are both allowed and denied (DENY wins)`);
        } else {
          report('allow-covered-by-deny', b, a, `${describe(b.loc)} can never allow anything: ${describe(a.loc)} denies every request it matches`);
        }
      }
    }
  };
  for (const list of byService.values()) {
    const candidates = global.length ? [...list, ...global] : list;
    for (const b of list) check(b, candidates);
  }
  for (const b of global) check(b, global);
  return findings.sort((x, y) => x.rule.policy.localeCompare(y.rule.policy) || x.rule.rule.localeCompare(y.rule.rule));
}

export function formatFindings(findings: readonly Finding[]): string {
  if (findings.length === 0) return 'no conflicts\n';
  return `${findings.map((f) => `conflict [${f.kind}] ${f.message}`).join('\n')}\n${findings.length} conflict${findings.length === 1 ? '' : 's'}\n`;
}

/**
 * What `apply` calls: the findings when forced (to report them), else an ETZ_ERR_POLICY_CONFLICT
 * naming every clashing pair and why. `details.conflicts` carries the findings for --json output.
 */
export function checkConflicts(docs: readonly PolicyDocument[], opts: { force?: boolean; involving?: ReadonlySet<string> } = {}): Finding[] {
  // Applying a few policies over a stored set: only clashes that involve them count, so an old
  // conflict someone forced earlier does not block every later change.
  const only = opts.involving;
  const findings = lintPolicies(docs).filter((f) => !only || only.has(f.rule.policy) || only.has(f.with.policy));
  if (findings.length && !opts.force) {
    throw new EtzError('ETZ_ERR_POLICY_CONFLICT', `refusing a policy set with ${findings.length} conflict${findings.length === 1 ? '' : 's'} (force to apply anyway):\n${findings.map((f) => `  [${f.kind}] ${f.message}`).join('\n')}`, {
      details: { conflicts: findings },
    });
  }
  return findings;
}
