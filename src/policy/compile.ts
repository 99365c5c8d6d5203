import { createHash } from 'node:crypto';
import {
  clauseCost,
  conditionClauses,
  conjunction,
  disjunction,
  operationClauses,
  selectorClauses,
  sourceClauses,
  type Attr,
  type Clause,
  type Pred,
} from './clauses.js';
import { policyId } from './load.js';
import { DEFAULTS, type AuthorizationPolicy, type AuthzAction, type PolicyDocument, type ResolvedDefaults } from './types.js';

/**
 * Compiling an authorization policy set: each policy becomes clauses plus composed predicates,
 * and policies are indexed by destination service so that a request only ever looks at the
 * policies that can select it (those naming its service, plus the few without a service).
 */

export interface CompiledRule {
  readonly index: number;
  /** null: the rule has no `from` (any source). Each alternative is a conjunction. */
  readonly from: readonly (readonly Clause[])[] | null;
  readonly to: readonly (readonly Clause[])[] | null;
  readonly when: readonly Clause[];
  readonly test: Pred;
}

export interface CompiledPolicy {
  readonly id: string;
  readonly action: AuthzAction;
  /** Declaration order across the whole set; explanations and "first match" follow it. */
  readonly order: number;
  readonly service?: string;
  readonly selector: readonly Clause[];
  readonly selects: Pred;
  readonly rules: readonly CompiledRule[];
  readonly doc: AuthorizationPolicy;
}

/** Attributes (and header names) a destination's policies read: the decision cache key uses only these. */
export interface KeyPlan {
  readonly attrs: ReadonlySet<Attr>;
  readonly headers: readonly string[];
}

export interface DestinationEntry {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
  readonly audit: readonly CompiledPolicy[];
  readonly plan: KeyPlan;
  /** No policy at all can select this destination: the default decides without evaluating. */
  readonly empty: boolean;
}

export interface CompiledAuthz {
  readonly byService: ReadonlyMap<string, DestinationEntry>;
  /** For services no policy names: only the service-less policies. */
  readonly other: DestinationEntry;
  readonly defaults: ResolvedDefaults;
  readonly policies: readonly CompiledPolicy[];
  /** What any policy of the set reads (the filter gathers only these per request). */
  readonly plan: KeyPlan;
  /** sha256 of the canonical documents: names the policy version in audit records. */
  readonly digest: string;
}

export function compileRule(rule: AuthorizationPolicy['spec']['rules'] extends (infer R)[] | undefined ? R : never, index: number): CompiledRule {
  const from = rule.from ? rule.from.map((s, k) => sourceClauses(s, `rules[${index}].from[${k}]`)) : null;
  const to = rule.to ? rule.to.map((o, k) => operationClauses(o, `rules[${index}].to[${k}]`)) : null;
  const when = (rule.when ?? []).flatMap((c, k) => conditionClauses(c, `rules[${index}].when[${k}]`));
  const f = disjunction(from ? from.map(conjunction) : null);
  const t = disjunction(to ? to.map(conjunction) : null);
  const w = conjunction(when);
  // The cheaper of source and operation first (an AND: the order changes only the cost). A
  // single exact principal beats a method plus path globs; globs, namespaces and CIDRs do not.
  const cost = (alts: readonly (readonly Clause[])[]) => alts.reduce((n, cs) => n + cs.reduce((m, c) => m + clauseCost(c), 0), 0);
  const toFirst = from !== null && to !== null && cost(to) < cost(from);
  const test: Pred = from && to ? (toFirst ? (r) => t(r) && f(r) && w(r) : (r) => f(r) && t(r) && w(r)) : from ? (r) => f(r) && w(r) : to ? (r) => t(r) && w(r) : w;
  return { index, from, to, when, test };
}

export function compilePolicy(doc: AuthorizationPolicy, order: number): CompiledPolicy {
  const selector = selectorClauses(doc.spec.selector);
  return {
    id: policyId(doc),
    action: doc.spec.action ?? 'ALLOW',
    order,
    ...(doc.spec.selector?.service !== undefined ? { service: doc.spec.selector.service } : {}),
    selector,
    selects: conjunction(selector),
    rules: (doc.spec.rules ?? []).map(compileRule),
    doc,
  };
}

function planOf(policies: readonly CompiledPolicy[]): KeyPlan {
  const attrs = new Set<Attr>();
  const headers = new Set<string>();
  const add = (c: Clause) => {
    if (c.attr === 'header') headers.add(c.header!);
    else attrs.add(c.attr);
  };
  for (const p of policies) {
    p.selector.forEach(add);
    for (const r of p.rules) {
      r.from?.forEach((cs) => cs.forEach(add));
      r.to?.forEach((cs) => cs.forEach(add));
      r.when.forEach(add);
    }
  }
  return { attrs, headers: [...headers].sort() };
}

function entryOf(policies: readonly CompiledPolicy[]): DestinationEntry {
  return {
    deny: policies.filter((p) => p.action === 'DENY'),
    allow: policies.filter((p) => p.action === 'ALLOW'),
    audit: policies.filter((p) => p.action === 'AUDIT'),
    plan: planOf(policies),
    empty: policies.length === 0,
  };
}

export function resolveDefaults(docs: readonly PolicyDocument[]): ResolvedDefaults {
  const d = docs.find((x) => x.kind === 'PolicyDefaults');
  return d && d.kind === 'PolicyDefaults' ? { ...DEFAULTS, ...d.spec } : { ...DEFAULTS };
}

/** A stable digest of a policy set (order-independent across documents). */
export function digestOf(docs: readonly PolicyDocument[]): string {
  const parts = docs.map((d) => canonical(d)).sort();
  return createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, 16);
}

export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Compile the AuthorizationPolicy documents of a set (other kinds are skipped, PolicyDefaults read). */
export function compileAuthz(docs: readonly PolicyDocument[]): CompiledAuthz {
  const policies: CompiledPolicy[] = [];
  for (const d of docs) if (d.kind === 'AuthorizationPolicy') policies.push(compilePolicy(d, policies.length));
  const global = policies.filter((p) => p.service === undefined);
  const named = new Map<string, CompiledPolicy[]>();
  for (const p of policies) {
    if (p.service === undefined) continue;
    let l = named.get(p.service);
    if (!l) named.set(p.service, (l = []));
    l.push(p);
  }
  const byService = new Map<string, DestinationEntry>();
  for (const [svc, list] of named) {
    // Declaration order decides which rule an explanation names first.
    const merged = global.length ? [...list, ...global].sort((a, b) => a.order - b.order) : list;
    byService.set(svc, entryOf(merged));
  }
  return {
    byService,
    other: entryOf(global),
    defaults: resolveDefaults(docs),
    policies,
    plan: planOf(policies),
    digest: digestOf(docs.filter((d) => d.kind !== 'NetworkPolicy')),
  };
}
