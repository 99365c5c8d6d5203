import { attrTest, compileCidrs, compileGlobs, type Matcher } from './match.js';
import { resolveDefaults, digestOf } from './compile.js';
import { policyId } from './load.js';
import type { NetAction, NetPeer, NetRule, NetworkPolicy, PolicyDocument, PortRange, ResolvedDefaults, Selector } from './types.js';

/**
 * L4 network policies: per target workload, ingress rules checked on inbound connections and
 * egress rules on outbound requests (including hosts outside the mesh). Decision order, per
 * direction: a matching DENY rule denies; a matching ALLOW rule allows; a target that some policy
 * isolates (an ALLOW rule, or an explicitly empty rule list, for that direction) is denied
 * anything else; otherwise the default applies — for egress to a host outside the mesh registry
 * `externalEgress` (DENY unless configured), else `ingress` / `egress` (ALLOW unless configured).
 */

export type NetDirection = 'ingress' | 'egress';

/** What a network-policy decision looks at. The target is the local workload. */
export interface NetRequest {
  direction: NetDirection;
  target: { service: string; version?: string; namespace?: string; zones?: readonly string[] };
  /** Ingress: the peer that connects. */
  sourcePrincipal?: string;
  sourceIp?: string;
  sourceZones?: readonly string[];
  /** Egress: the destination service, undefined when the host is outside the mesh registry. */
  destService?: string;
  destHost?: string;
  destIp?: string;
  destZones?: readonly string[];
  /** Destination port (ingress: the port the peer connected to). */
  port?: number;
}

export interface NetDecision {
  readonly allowed: boolean;
  readonly policy?: string;
  readonly rule?: number;
  readonly basis: 'deny-rule' | 'allow-rule' | 'isolated' | 'default' | 'external-default';
  readonly reason: string;
}

type Attr = 'principal' | 'namespace' | 'service' | 'ip' | 'zones' | 'host' | 'port' | 'targetZones';
interface Clause {
  attr: Attr;
  test(r: NetRequest): boolean;
}
/** 0 no, 1 unknown, 2 yes. */
type Tri = 0 | 1 | 2;

function tri(clauses: readonly Clause[], r: NetRequest, unknown: ReadonlySet<Attr>): Tri {
  let out: Tri = 2;
  for (const c of clauses) {
    if (unknown.has(c.attr)) out = 1;
    else if (!c.test(r)) return 0;
  }
  return out;
}

function saOf(principal: string | undefined): string | undefined {
  if (principal === undefined) return undefined;
  const i = principal.lastIndexOf('/sa/');
  return i < 0 ? undefined : principal.slice(i + 4);
}
function nsOf(principal: string | undefined): string | undefined {
  if (principal === undefined) return undefined;
  const i = principal.indexOf('/ns/');
  if (i < 0) return undefined;
  const j = principal.indexOf('/', i + 4);
  return j < 0 ? principal.slice(i + 4) : principal.slice(i + 4, j);
}

const str = (attr: Attr, get: (r: NetRequest) => string | undefined, m: Matcher, negate = false): Clause => ({ attr, test: attrTest(get, m, negate) });
const zonesClause = (attr: Attr, get: (r: NetRequest) => readonly string[] | undefined, names: readonly string[]): Clause => {
  const s = new Set(names);
  return { attr, test: (r) => get(r)?.some((z) => s.has(z)) ?? false };
};

function peerClauses(p: NetPeer, dir: NetDirection): Clause[] {
  const out: Clause[] = [];
  if (dir === 'ingress') {
    if (p.principals) out.push(str('principal', (r) => r.sourcePrincipal, compileGlobs(p.principals)));
    if (p.namespaces) out.push(str('namespace', (r) => nsOf(r.sourcePrincipal), compileGlobs(p.namespaces)));
    if (p.services) out.push(str('service', (r) => saOf(r.sourcePrincipal), compileGlobs(p.services)));
    if (p.ipBlocks) out.push(str('ip', (r) => r.sourceIp, compileCidrs(p.ipBlocks)));
    if (p.notIpBlocks) out.push(str('ip', (r) => r.sourceIp, compileCidrs(p.notIpBlocks), true));
    if (p.zones) out.push(zonesClause('zones', (r) => r.sourceZones, p.zones));
  } else {
    if (p.services) out.push(str('service', (r) => r.destService, compileGlobs(p.services)));
    if (p.hosts) out.push(str('host', (r) => r.destHost, compileGlobs(p.hosts, true)));
    if (p.ipBlocks) out.push(str('ip', (r) => r.destIp, compileCidrs(p.ipBlocks)));
    if (p.notIpBlocks) out.push(str('ip', (r) => r.destIp, compileCidrs(p.notIpBlocks), true));
    if (p.zones) out.push(zonesClause('zones', (r) => r.destZones, p.zones));
  }
  return out;
}

function portsClause(ranges: readonly PortRange[]): Clause {
  const rs = ranges.map((p) => [p.port, p.endPort ?? p.port] as const);
  return { attr: 'port', test: (r) => r.port !== undefined && rs.some(([a, b]) => r.port! >= a && r.port! <= b) };
}

interface CompiledNetRule {
  index: number;
  action: NetAction;
  peers: Clause[][] | null;
  ports: Clause[];
  test(r: NetRequest): boolean;
}

interface CompiledNetPolicy {
  id: string;
  order: number;
  service?: string;
  selector: Clause[];
  /** Per direction: null when the policy does not govern it. */
  rules: Record<NetDirection, CompiledNetRule[] | null>;
  isolates: Record<NetDirection, boolean>;
}

function compileNetRule(rule: NetRule, index: number, dir: NetDirection): CompiledNetRule {
  const list = dir === 'ingress' ? rule.from : rule.to;
  const peers = list ? list.map((p) => peerClauses(p, dir)) : null;
  const ports = rule.ports ? [portsClause(rule.ports)] : [];
  const all = (cs: Clause[], r: NetRequest) => cs.every((c) => c.test(r));
  return {
    index,
    action: rule.action ?? 'ALLOW',
    peers,
    ports,
    test: (r) => (peers === null || peers.some((cs) => all(cs, r))) && all(ports, r),
  };
}

function selectorOf(sel: Selector | undefined): Clause[] {
  const out: Clause[] = [];
  if (sel?.version !== undefined) out.push(str('service', (r) => r.target.version, (v) => v === sel.version));
  if (sel?.namespace !== undefined) out.push(str('service', (r) => r.target.namespace, (v) => v === sel.namespace));
  if (sel?.zone !== undefined) out.push(zonesClause('targetZones', (r) => r.target.zones, [sel.zone]));
  return out;
}

function compileNetPolicy(doc: NetworkPolicy, order: number): CompiledNetPolicy {
  const rules = {
    ingress: doc.spec.ingress ? doc.spec.ingress.map((r, i) => compileNetRule(r, i, 'ingress')) : null,
    egress: doc.spec.egress ? doc.spec.egress.map((r, i) => compileNetRule(r, i, 'egress')) : null,
  };
  const isolating = (rs: CompiledNetRule[] | null) => rs !== null && (rs.length === 0 || rs.some((r) => r.action === 'ALLOW'));
  return {
    id: policyId(doc),
    order,
    ...(doc.spec.target?.service !== undefined ? { service: doc.spec.target.service } : {}),
    selector: selectorOf(doc.spec.target),
    rules,
    isolates: { ingress: isolating(rules.ingress), egress: isolating(rules.egress) },
  };
}

const NONE: ReadonlySet<Attr> = new Set();

/** The compiled network policies of one version. */
export class NetworkPolicyEngine {
  readonly defaults: ResolvedDefaults;
  readonly digest: string;
  readonly size: number;
  readonly #byService = new Map<string, CompiledNetPolicy[]>();
  readonly #global: CompiledNetPolicy[] = [];

  constructor(docs: readonly PolicyDocument[]) {
    const policies: CompiledNetPolicy[] = [];
    for (const d of docs) if (d.kind === 'NetworkPolicy') policies.push(compileNetPolicy(d, policies.length));
    this.size = policies.length;
    for (const p of policies) {
      if (p.service === undefined) this.#global.push(p);
      else {
        let l = this.#byService.get(p.service);
        if (!l) this.#byService.set(p.service, (l = []));
        l.push(p);
      }
    }
    if (this.#global.length) {
      for (const [svc, l] of this.#byService) this.#byService.set(svc, [...l, ...this.#global].sort((a, b) => a.order - b.order));
    }
    this.defaults = resolveDefaults(docs);
    this.digest = digestOf(docs.filter((d) => d.kind !== 'AuthorizationPolicy'));
  }

  /** Whether any policy can govern this target in this direction (else the filter may skip it). */
  governs(service: string, dir: NetDirection): boolean {
    return (this.#byService.get(service) ?? this.#global).some((p) => p.rules[dir] !== null);
  }

  evaluate(r: NetRequest): NetDecision {
    return this.#evaluate(r, NONE) as NetDecision;
  }

  /**
   * For an open connection, with some attributes unknown: false only when the connection is
   * certainly denied whatever those attributes turn out to be.
   */
  admits(r: NetRequest, unknown: ReadonlySet<Attr>): boolean {
    const d = this.#evaluate(r, unknown);
    return d === 'maybe' || d.allowed;
  }

  #evaluate(r: NetRequest, unknown: ReadonlySet<Attr>): NetDecision | 'maybe' {
    const dir = r.direction;
    const candidates = this.#byService.get(r.target.service) ?? this.#global;
    let isolatedBy: string | undefined;
    let maybeAllow = false;
    let allow: NetDecision | undefined;
    for (const p of candidates) {
      const rules = p.rules[dir];
      if (rules === null) continue;
      const sel = tri(p.selector, r, unknown);
      if (sel === 0) continue;
      for (const rule of rules) {
        const t = sel === 2 ? triRule(rule, r, unknown) : (Math.min(1, triRule(rule, r, unknown)) as Tri);
        if (t === 0) continue;
        if (rule.action === 'DENY') {
          if (t === 2) return this.#ruleDecision(p, rule, dir);
          maybeAllow = true; // an uncertain DENY: the connection may still be fine
        } else if (t === 2) {
          allow ??= this.#ruleDecision(p, rule, dir);
        } else maybeAllow = true;
      }
      if (sel === 2 && p.isolates[dir]) isolatedBy ??= p.id;
    }
    if (allow) return allow;
    if (maybeAllow) return 'maybe';
    if (isolatedBy) {
      return this.#memo(`i|${dir}|${r.target.service}|${isolatedBy}`, () => ({
        allowed: false,
        policy: isolatedBy,
        basis: 'isolated',
        reason: `${dir} denied: no ${dir} rule of the network policies selecting ${r.target.service} allows it (${isolatedBy})`,
      }));
    }
    if (dir === 'egress' && r.destService === undefined) {
      const host = r.destHost ?? r.destIp ?? 'host';
      return this.#memo(`x|${host}`, () => {
        const allowed = this.defaults.externalEgress === 'ALLOW';
        return { allowed, basis: 'external-default', reason: `egress ${allowed ? 'allowed' : 'denied'}: ${host} is outside the mesh and no rule allows it (externalEgress ${this.defaults.externalEgress})` };
      });
    }
    return this.#memo(`d|${dir}|${r.target.service}`, () => {
      const action = dir === 'ingress' ? this.defaults.ingress : this.defaults.egress;
      return { allowed: action === 'ALLOW', basis: 'default', reason: `${dir} ${action === 'ALLOW' ? 'allowed' : 'denied'}: no network policy governs ${r.target.service} (default ${action})` };
    });
  }

  // Decisions are values: the same rule or default always gives the same (frozen) one, so the
  // hot path allocates nothing and the filter can keep one metric child per decision. Bounded.
  readonly #byRule = new Map<CompiledNetRule, NetDecision>();
  readonly #byKey = new Map<string, NetDecision>();

  #ruleDecision(p: CompiledNetPolicy, rule: CompiledNetRule, dir: NetDirection): NetDecision {
    let d = this.#byRule.get(rule);
    if (d === undefined) {
      const deny = rule.action === 'DENY';
      d = Object.freeze({
        allowed: !deny,
        policy: p.id,
        rule: rule.index,
        basis: deny ? 'deny-rule' : 'allow-rule',
        reason: deny ? `${dir} denied by network policy ${p.id} ${dir} rule ${rule.index} (DENY)` : `${dir} allowed by network policy ${p.id} ${dir} rule ${rule.index}`,
      } as const);
      this.#byRule.set(rule, d);
    }
    return d;
  }

  #memo(key: string, make: () => NetDecision): NetDecision {
    let d = this.#byKey.get(key);
    if (d === undefined) {
      d = Object.freeze(make());
      if (this.#byKey.size < 10_000) this.#byKey.set(key, d);
    }
    return d;
  }
}

function triRule(rule: CompiledNetRule, r: NetRequest, unknown: ReadonlySet<Attr>): Tri {
  if (unknown.size === 0) return rule.test(r) ? 2 : 0;
  let peers: Tri = 2;
  if (rule.peers !== null) {
    peers = 0;
    for (const cs of rule.peers) {
      const t = tri(cs, r, unknown);
      if (t > peers) peers = t;
      if (peers === 2) break;
    }
  }
  return Math.min(peers, tri(rule.ports, r, unknown)) as Tri;
}

export const UNKNOWN_ON_INBOUND_CONNECTION: ReadonlySet<Attr> = new Set<Attr>(['zones', 'targetZones']);
export const UNKNOWN_ON_OUTBOUND_CONNECTION: ReadonlySet<Attr> = new Set<Attr>(['zones', 'targetZones', 'port', 'ip']);
