import { LRUCache } from 'lru-cache';
import type { Counter } from '../../core/metrics.js';
import type { CompileEnv, ConnectionAdmission, ConnectionInfo, FilterFactory, HttpFilter, LocalReply, RequestContext } from '../filter.js';
import { counter, instanceState } from '../routing/instance-state.js';
import { rawHeader } from '../routing/match.js';
import { connectedPort, connectionPort } from './network-policy.js';
import { AuthorizationEngine } from '../../policy/engine.js';
import { compileAuthz, type CompiledAuthz } from '../../policy/compile.js';
import { loadResource } from '../../policy/resource.js';
import { recordPolicyChange } from '../../policy/audit.js';
import { traceSummary } from '../../policy/explain.js';
import { policyResourceSchema } from '../../policy/schema.js';
import type { AuthzDecision, HeaderBag, PolicyRequest } from '../../policy/types.js';

/**
 * The authorization filter (the `policies` resource): Istio-style ALLOW / DENY / AUDIT policies
 * over the peer's verified SPIFFE identity, the end user, zones and the request. Compiled once per
 * config version into the per-destination index; decisions come from a bounded LRU shared by the
 * versions of one sidecar (keys carry the version). A denial is a 403 naming the policy and rule,
 * and an audit record; so is every AUDIT match. Off (not in the chain) when the set has no
 * AuthorizationPolicy and the default action is ALLOW.
 */

export type ZonesAttr = { source: readonly string[]; destination: readonly string[] };

const CACHE_MAX = 50_000;

interface Metrics {
  decisions: Counter<'action' | 'policy'>;
}

function labelOf(d: AuthzDecision): string {
  return d.by ? d.by.policy : d.basis === 'no-allow-match' ? '(no-allow-match)' : '(default)';
}

class AuthorizationFilter implements HttpFilter, ConnectionAdmission {
  readonly name = 'authorization';
  readonly #engine: AuthorizationEngine;
  readonly #env: CompileEnv;
  readonly #self: { service: string; version: string; namespace: string };
  readonly #headers: readonly string[];
  readonly #zones: boolean;
  readonly #port: boolean;
  readonly #digest: string;
  readonly #metrics: Metrics;
  // One counter child per (decision object): cached decisions are shared, so this stays small.
  readonly #children = new WeakMap<AuthzDecision, { inc(): void }>();

  constructor(engine: AuthorizationEngine, env: CompileEnv) {
    this.#engine = engine;
    this.#env = env;
    const s = env.sidecar.service;
    this.#self = { service: s.name, version: s.version, namespace: s.namespace };
    const plan = engine.compiled.plan;
    this.#headers = plan.headers;
    this.#zones = plan.attrs.has('sourceZones') || plan.attrs.has('destZones');
    this.#port = plan.attrs.has('port');
    this.#digest = engine.digest;
    this.#metrics = {
      decisions: counter(env.metrics, 'etz_policy_decisions_total', 'Authorization decisions by action and deciding policy', ['action', 'policy']),
    };
  }

  #request(ctx: RequestContext): PolicyRequest {
    const dest = ctx.destination;
    const peer = ctx.peer;
    let headers: HeaderBag | undefined;
    if (this.#headers.length) {
      const bag: Record<string, string | undefined> = {};
      const raw = ctx.req.rawHeaders;
      for (const h of this.#headers) bag[h] = rawHeader(raw, h);
      headers = bag;
    }
    let zones: ZonesAttr | undefined;
    if (this.#zones) zones = ctx.attrs.get('zones') as ZonesAttr | undefined;
    const inbound = ctx.direction === 'inbound';
    return {
      sourcePrincipal: peer?.spiffeId,
      sourceNamespace: peer?.namespace,
      sourceIp: ctx.remoteAddress,
      sourceZones: zones?.source,
      requestPrincipal: ctx.principal,
      destService: inbound ? this.#self.service : (dest?.service ?? ctx.host),
      destVersion: inbound ? this.#self.version : dest?.version,
      destNamespace: inbound ? this.#self.namespace : undefined,
      destZones: zones?.destination,
      method: ctx.method,
      path: ctx.path,
      port: this.#port ? connectedPort(ctx) : undefined,
      host: ctx.host,
      headers,
    };
  }

  onRequest(ctx: RequestContext): LocalReply | undefined {
    const r = this.#request(ctx);
    const d = this.#engine.evaluate(r);
    let child = this.#children.get(d);
    if (child === undefined) {
      child = this.#metrics.decisions.labels(d.allowed ? 'allow' : 'deny', labelOf(d));
      this.#children.set(d, child);
    }
    child.inc();
    if (d.audits.length) this.#audit(ctx, r, d);
    if (d.allowed) return undefined;
    this.#env.logger.warn(
      {
        audit: 'authz.deny',
        requestId: ctx.id,
        version: this.#env.version,
        digest: this.#digest,
        source: r.sourcePrincipal ?? null,
        sourceIp: r.sourceIp,
        user: r.requestPrincipal ?? null,
        destination: r.destService,
        method: r.method,
        path: r.path,
        policy: d.by?.policy ?? null,
        rule: d.by?.rule ?? null,
        basis: d.basis,
        explanation: d.reason,
        // Denials are the exception: the full trace is worth its cost here.
        trace: traceSummary(this.#engine.explain(r)),
      },
      'request denied by authorization policy',
    );
    return { status: 403, code: 'ETZ_ERR_POLICY_DENIED', reason: d.reason };
  }

  #audit(ctx: RequestContext, r: PolicyRequest, d: AuthzDecision): void {
    for (const a of d.audits) this.#metrics.decisions.inc({ action: 'audit', policy: a.policy });
    this.#env.logger.info(
      {
        audit: 'authz.audit',
        requestId: ctx.id,
        version: this.#env.version,
        digest: this.#digest,
        source: r.sourcePrincipal ?? null,
        user: r.requestPrincipal ?? null,
        destination: r.destService,
        method: r.method,
        path: r.path,
        matched: d.audits,
        allowed: d.allowed,
        explanation: d.reason,
      },
      'request matched an AUDIT policy',
    );
  }

  admitsConnection(conn: ConnectionInfo): boolean {
    const base = {
      sourcePrincipal: conn.peer?.spiffeId,
      sourceNamespace: conn.peer?.namespace,
      sourceIp: conn.remoteAddress,
      port: connectionPort(conn),
    };
    if (conn.direction === 'inbound') {
      return this.#engine.admits({ ...base, destService: this.#self.service, destVersion: this.#self.version, destNamespace: this.#self.namespace });
    }
    for (const svc of conn.destinations) if (!this.#engine.admits({ ...base, destService: svc })) return false;
    return true;
  }
}

export const authorizationFilter: FilterFactory<unknown[] | undefined> = {
  name: 'authorization',
  resource: 'policies',
  schema: policyResourceSchema,
  directions: ['inbound', 'gateway'],
  compile(config, env) {
    // Every listener compiles each version from the same validated resources: do the work once.
    const memo = instanceState(env.metrics, 'policy.authz.compiled', () => new WeakMap<object, CompiledAuthz>());
    let compiled = memo.get(env.resources);
    if (compiled === undefined) {
      const authz = loadResource('policies', config).filter((d) => d.kind !== 'NetworkPolicy');
      recordPolicyChange(env.logger, env.metrics, 'authorization', env.version, authz);
      compiled = compileAuthz(authz);
      memo.set(env.resources, compiled);
    }
    if (compiled.policies.length === 0 && compiled.defaults.authorization === 'ALLOW') return null;
    const cache = instanceState(env.metrics, 'policy.decisions', () => new LRUCache<string, AuthzDecision>({ max: CACHE_MAX }));
    return new AuthorizationFilter(new AuthorizationEngine(compiled, { version: env.version, cache }), env);
  },
};
