import { LRUCache } from 'lru-cache';
import { sourceNamespace, triClauses, type Clause, type Tri } from './clauses.js';
import { DecisionTrie, levelsOf } from './hot-cache.js';
import { compileAuthz, type CompiledAuthz, type CompiledPolicy, type CompiledRule, type DestinationEntry, type KeyPlan } from './compile.js';
import type { AuthzDecision, PolicyDocument, PolicyRequest, RuleRef } from './types.js';

/**
 * The authorization evaluator: Istio's semantics over the compiled per-destination index, with a
 * bounded LRU of decisions. The cache key starts with the policy version and holds only the
 * attributes the destination's policies read, so a policy change never reuses an old decision
 * and attributes no policy looks at (a path, when no rule names paths) do not split the cache.
 */

export interface EngineOptions {
  /** Policy version; part of every cache key. */
  version?: number | string;
  /** Maximum cached decisions (default 50,000). 0 turns the cache off. */
  cacheMax?: number;
  /** Share one cache across versions (keys carry the version, so old entries simply age out). */
  cache?: LRUCache<string, AuthzDecision>;
  /** Decisions held by the first tier (nested Maps, this version only; default 16,384). */
  hotMax?: number;
}

export interface RuleTrace {
  rule: number;
  matched: boolean;
  /** When not matched: the first field that failed, per alternative. */
  failed?: string[];
}

export interface PolicyTrace {
  policy: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  selected: boolean;
  /** When not selected: the selector field that did not match. */
  selectorMismatch?: string;
  rules: RuleTrace[];
}

export interface Explanation {
  decision: AuthzDecision;
  /** Every policy that could select the destination, in declaration order. */
  policies: PolicyTrace[];
  defaultAction: 'ALLOW' | 'DENY';
  digest: string;
}

const SEP = '\u0000';
const NONE = '\u0001';
const NO_AUDITS: readonly RuleRef[] = Object.freeze([]);

type KeyFn = (r: PolicyRequest) => string;

function headerValue(r: PolicyRequest, name: string): string {
  const v = r.headers?.[name];
  return v === undefined ? NONE : Array.isArray(v) ? v.join(',') : v;
}

function keyFn(prefix: string, plan: KeyPlan): KeyFn {
  const a = plan.attrs;
  const sp = a.has('sourcePrincipal');
  const sn = a.has('sourceNamespace');
  const ip = a.has('sourceIp');
  const sz = a.has('sourceZones');
  const rp = a.has('requestPrincipal');
  const dv = a.has('destVersion');
  const dn = a.has('destNamespace');
  const dz = a.has('destZones');
  const me = a.has('method');
  const pa = a.has('path');
  const po = a.has('port');
  const ho = a.has('host');
  const hs = plan.headers;
  return (r) => {
    let k = prefix + r.destService;
    if (sp) k += SEP + (r.sourcePrincipal ?? NONE);
    if (sn) k += SEP + (sourceNamespace(r) ?? NONE);
    if (ip) k += SEP + (r.sourceIp ?? NONE);
    if (sz) k += SEP + (r.sourceZones ? r.sourceZones.join(',') : NONE);
    if (rp) k += SEP + (r.requestPrincipal ?? NONE);
    if (dv) k += SEP + (r.destVersion ?? NONE);
    if (dn) k += SEP + (r.destNamespace ?? NONE);
    if (dz) k += SEP + (r.destZones ? r.destZones.join(',') : NONE);
    if (me) k += SEP + (r.method ?? NONE);
    if (pa) k += SEP + (r.path ?? NONE);
    if (po) k += SEP + (r.port ?? NONE);
    if (ho) k += SEP + (r.host ?? NONE);
    for (let i = 0; i < hs.length; i++) k += SEP + headerValue(r, hs[i]!);
    return k;
  };
}

function firstMatch(p: CompiledPolicy, r: PolicyRequest): CompiledRule | undefined {
  const rules = p.rules;
  for (let i = 0; i < rules.length; i++) if (rules[i]!.test(r)) return rules[i];
  return undefined;
}

/** Most policies select by service alone (the index already matched it): skip the call. */
function selects(p: CompiledPolicy, r: PolicyRequest): boolean {
  return p.selector.length === 0 || p.selects(r);
}

function freeze(d: AuthzDecision): AuthzDecision {
  return Object.freeze(d);
}

export class AuthorizationEngine {
  readonly #c: CompiledAuthz;
  readonly #prefix: string;
  readonly #cache: LRUCache<string, AuthzDecision> | null;
  readonly #keys = new Map<DestinationEntry, KeyFn>();
  readonly #hot: DecisionTrie<AuthzDecision> | null;
  readonly #levels = new Map<DestinationEntry, ReturnType<typeof levelsOf>>();
  readonly #defaultDecision = new Map<string, AuthzDecision>();
  #hits = 0;
  #misses = 0;

  constructor(docs: readonly PolicyDocument[] | CompiledAuthz, opts: EngineOptions = {}) {
    this.#c = Array.isArray(docs) ? compileAuthz(docs) : (docs as CompiledAuthz);
    this.#prefix = `${opts.version ?? this.#c.digest}${SEP}`;
    const max = opts.cacheMax ?? 50_000;
    this.#cache = opts.cache ?? (max > 0 ? new LRUCache<string, AuthzDecision>({ max }) : null);
    this.#hot = this.#cache === null ? null : new DecisionTrie<AuthzDecision>(opts.hotMax ?? 16_384);
  }

  get digest(): string {
    return this.#c.digest;
  }

  get compiled(): CompiledAuthz {
    return this.#c;
  }

  get stats(): { hits: number; misses: number; cached: number } {
    return { hits: this.#hits, misses: this.#misses, cached: this.#cache?.size ?? 0 };
  }

  #entry(service: string): DestinationEntry {
    return this.#c.byService.get(service) ?? this.#c.other;
  }

  /** The decision for one request. Cached decisions are shared, frozen objects. */
  evaluate(r: PolicyRequest): AuthzDecision {
    const entry = this.#entry(r.destService);
    if (entry.empty) return this.#default(r.destService);
    const cache = this.#cache;
    if (cache === null) return this.#decide(entry, r);
    let levels = this.#levels.get(entry);
    if (levels === undefined) this.#levels.set(entry, (levels = levelsOf(entry.plan)));
    const hot = this.#hot!;
    const first = hot.get(entry, levels, r);
    if (first !== undefined) {
      this.#hits++;
      return first;
    }
    let kf = this.#keys.get(entry);
    if (kf === undefined) this.#keys.set(entry, (kf = keyFn(this.#prefix, entry.plan)));
    const key = kf(r);
    let d = cache.get(key);
    if (d !== undefined) this.#hits++;
    else {
      this.#misses++;
      d = this.#decide(entry, r);
      cache.set(key, d);
    }
    hot.set(entry, levels, r, d);
    return d;
  }


  /** The decision without the cache (benchmarks and explain use it). */
  decide(r: PolicyRequest): AuthzDecision {
    const entry = this.#entry(r.destService);
    return entry.empty ? this.#default(r.destService) : this.#decide(entry, r);
  }

  #default(service: string): AuthzDecision {
    let d = this.#defaultDecision.get(service);
    if (d === undefined) {
      const allowed = this.#c.defaults.authorization === 'ALLOW';
      d = freeze({
        allowed,
        basis: 'default',
        reason: `${allowed ? 'allowed' : 'denied'}: no ALLOW policy selects ${service} (default action ${this.#c.defaults.authorization})`,
        audits: NO_AUDITS,
      });
      // Bounded: one entry per destination service this sidecar serves or calls.
      if (this.#defaultDecision.size < 10_000) this.#defaultDecision.set(service, d);
    }
    return d;
  }

  // Decisions are values: the same rule (or default) always yields the same one, so an uncached
  // evaluation allocates nothing unless AUDIT policies matched. Bounded by the rules of the set.
  readonly #byRule = new Map<CompiledRule, AuthzDecision>();
  readonly #noMatch = new Map<DestinationEntry, AuthzDecision>();

  #ruleDecision(p: CompiledPolicy, rule: CompiledRule, au: readonly RuleRef[]): AuthzDecision {
    if (au.length === 0) {
      const memo = this.#byRule.get(rule);
      if (memo !== undefined) return memo;
    }
    const deny = p.action === 'DENY';
    const d = freeze({
      allowed: !deny,
      by: { policy: p.id, rule: rule.index },
      basis: deny ? 'deny-rule' : 'allow-rule',
      reason: deny ? `denied by policy ${p.id} rule ${rule.index} (DENY)` : `allowed by policy ${p.id} rule ${rule.index}`,
      audits: au,
    });
    if (au.length === 0) this.#byRule.set(rule, d);
    return d;
  }

  #noAllowMatch(e: DestinationEntry, r: PolicyRequest, au: readonly RuleRef[]): AuthzDecision {
    let selecting = 0;
    for (const p of e.allow) if (p.selects(r)) selecting++;
    const all = selecting === e.allow.length;
    if (all && au.length === 0) {
      const memo = this.#noMatch.get(e);
      if (memo !== undefined) return memo;
    }
    const ids = e.allow.filter((p) => p.selects(r)).map((p) => p.id);
    const names = ids.length > 3 ? `${ids.slice(0, 3).join(', ')} and ${ids.length - 3} more` : ids.join(', ');
    const d = freeze({
      allowed: false,
      basis: 'no-allow-match',
      reason: `denied: no rule of the ALLOW policies selecting ${r.destService} matched (${names})`,
      audits: au,
    });
    if (all && au.length === 0) this.#noMatch.set(e, d);
    return d;
  }

  #decide(e: DestinationEntry, r: PolicyRequest): AuthzDecision {
    let audits: RuleRef[] | undefined;
    const audit = e.audit;
    for (let i = 0; i < audit.length; i++) {
      const p = audit[i]!;
      if (!selects(p, r)) continue;
      const rule = firstMatch(p, r);
      if (rule) (audits ??= []).push({ policy: p.id, rule: rule.index });
    }
    const au = audits ? Object.freeze(audits) : NO_AUDITS;
    const deny = e.deny;
    for (let i = 0; i < deny.length; i++) {
      const p = deny[i]!;
      if (!selects(p, r)) continue;
      const rule = firstMatch(p, r);
      if (rule) return this.#ruleDecision(p, rule, au);
    }
    let selected = false;
    const allow = e.allow;
    for (let i = 0; i < allow.length; i++) {
      const p = allow[i]!;
      if (!selects(p, r)) continue;
      selected = true;
      const rule = firstMatch(p, r);
      if (rule) return this.#ruleDecision(p, rule, au);
    }
    if (selected) return this.#noAllowMatch(e, r, au);
    if (au.length === 0) return this.#default(r.destService);
    const allowed = this.#c.defaults.authorization === 'ALLOW';
    return freeze({
      allowed,
      basis: 'default',
      reason: `${allowed ? 'allowed' : 'denied'}: no ALLOW policy selects ${r.destService} (default action ${this.#c.defaults.authorization})`,
      audits: au,
    });
  }

  /** The decision with every candidate policy's verdict and, per rule, the field that failed. */
  explain(r: PolicyRequest): Explanation {
    const entry = this.#entry(r.destService);
    const all = [...entry.deny, ...entry.allow, ...entry.audit].sort((a, b) => a.order - b.order);
    const policies = all.map((p): PolicyTrace => {
      const miss = p.selector.find((c) => !c.test(r));
      if (miss) return { policy: p.id, action: p.action, selected: false, selectorMismatch: miss.field, rules: [] };
      return {
        policy: p.id,
        action: p.action,
        selected: true,
        rules: p.rules.map((rule) => (rule.test(r) ? { rule: rule.index, matched: true } : { rule: rule.index, matched: false, failed: failedFields(rule, r) })),
      };
    });
    return { decision: this.decide(r), policies, defaultAction: this.#c.defaults.authorization, digest: this.#c.digest };
  }

  /**
   * Whether a connection may stay open under this version: false only when no request it could
   * carry would be allowed (only the L4 attributes — source identity, IP, port, destination — are
   * known; method, path, headers, zones and end user are not).
   */
  admits(r: PolicyRequest): boolean {
    const e = this.#entry(r.destService);
    for (const p of e.deny) {
      if (triClauses(p.selector, r) !== 2) continue;
      for (const rule of p.rules) if (triRule(rule, r) === 2) return false;
    }
    let definite = false;
    for (const p of e.allow) {
      const s = triClauses(p.selector, r);
      if (s === 0) continue;
      if (s === 2) definite = true;
      for (const rule of p.rules) if (triRule(rule, r) > 0) return true;
    }
    if (definite) return false;
    return this.#c.defaults.authorization === 'ALLOW';
  }
}

function triAlternatives(alts: readonly (readonly Clause[])[] | null, r: PolicyRequest): Tri {
  if (alts === null) return 2;
  let best: Tri = 0;
  for (const a of alts) {
    const t = triClauses(a, r);
    if (t > best) best = t;
    if (best === 2) break;
  }
  return best;
}

function triRule(rule: CompiledRule, r: PolicyRequest): Tri {
  return Math.min(triAlternatives(rule.from, r), triAlternatives(rule.to, r), triClauses(rule.when, r)) as Tri;
}

function failedFields(rule: CompiledRule, r: PolicyRequest): string[] {
  const out: string[] = [];
  const section = (alts: readonly (readonly Clause[])[] | null) => {
    if (alts === null) return true;
    const misses: string[] = [];
    for (const a of alts) {
      const miss = a.find((c) => !c.test(r));
      if (!miss) return true;
      misses.push(miss.field);
    }
    out.push(...misses);
    return false;
  };
  if (section(rule.from) && section(rule.to)) {
    const miss = rule.when.find((c) => !c.test(r));
    if (miss) out.push(miss.field);
  }
  return out;
}
