import { isIP } from 'node:net';
import type { Counter } from '../../core/metrics.js';
import type { CompileEnv, ConnectionAdmission, ConnectionInfo, FilterFactory, HttpFilter, LocalReply, RequestContext } from '../filter.js';
import { counter, instanceState } from '../routing/instance-state.js';
import { rawHeader } from '../routing/match.js';
import { connectionOf } from '../listeners/connections.js';
import { getOriginalDst } from '../original-dst.js';
import { NetworkPolicyEngine, UNKNOWN_ON_INBOUND_CONNECTION, UNKNOWN_ON_OUTBOUND_CONNECTION, type NetDecision, type NetRequest } from '../../policy/network.js';
import { loadResource } from '../../policy/resource.js';
import { policyId } from '../../policy/load.js';
import { recordPolicyChange } from '../../policy/audit.js';
import { policyResourceSchema } from '../../policy/schema.js';
import type { PolicyDocument } from '../../policy/types.js';
import type { ZonesAttr } from './authorization.js';

/**
 * The network-policy filter (the `networkPolicies` resource, plus NetworkPolicy documents found
 * in `policies`): ingress rules on the inbound listener (source identity, IP, port), egress rules
 * on the outbound listener (destination service, host, IP, port), including hosts outside the
 * mesh registry, which are denied unless allow-listed (PolicyDefaults.externalEgress). A denial is
 * a 403 with ETZ_ERR_NETWORK_POLICY_DENIED and an audit record. On a new version, connections it
 * now certainly denies are closed.
 */

type Target = NetRequest['target'];

/** Port of a Host header value (`api.example.com:8443`, `[::1]:80`), if it has one. */
function hostPort(host: string | undefined): number | undefined {
  if (!host) return undefined;
  const close = host.lastIndexOf(']');
  const colon = host.lastIndexOf(':');
  if (colon <= close) return undefined;
  const n = Number(host.slice(colon + 1));
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined;
}

/**
 * The port the caller connected to: the original destination under interception (looked up once
 * per connection), else the listener's own port.
 */
export function connectedPort(ctx: RequestContext): number | undefined {
  const socket = ctx.req.socket;
  const conn = connectionOf(socket);
  if (conn !== undefined) {
    if (conn.originalDst === undefined) conn.originalDst = getOriginalDst(socket);
    if (conn.originalDst !== null) return conn.originalDst.port;
  }
  return socket.localPort;
}

/** The same for a live connection judged at a config change. */
export function connectionPort(conn: ConnectionInfo): number {
  return (conn as { originalDst?: { port: number } | null }).originalDst?.port ?? conn.localPort;
}

class NetworkPolicyFilter implements HttpFilter, ConnectionAdmission {
  readonly name = 'network-policy';
  readonly #engine: NetworkPolicyEngine;
  readonly #env: CompileEnv;
  readonly #target: Target;
  readonly #decisions: Counter<'direction' | 'action' | 'policy'>;
  readonly #zones: boolean;
  // Decisions are shared values (memoized by the engine): one metric child each.
  readonly #children = new WeakMap<NetDecision, { inc(): void }>();

  constructor(engine: NetworkPolicyEngine, env: CompileEnv, usesZones: boolean) {
    this.#engine = engine;
    this.#zones = usesZones;
    this.#env = env;
    const s = env.sidecar.service;
    this.#target = Object.freeze({ service: s.name, version: s.version, namespace: s.namespace });
    this.#decisions = counter(env.metrics, 'etz_network_policy_decisions_total', 'Network policy decisions by direction, action and deciding policy', ['direction', 'action', 'policy']);
  }

  #targetWith(zones: readonly string[] | undefined): Target {
    return zones === undefined ? this.#target : { ...this.#target, zones };
  }

  #request(ctx: RequestContext): NetRequest {
    const zones = this.#zones ? (ctx.attrs.get('zones') as ZonesAttr | undefined) : undefined;
    if (ctx.direction === 'inbound') {
      return {
        direction: 'ingress',
        target: this.#targetWith(zones?.destination),
        sourcePrincipal: ctx.peer?.spiffeId,
        sourceIp: ctx.remoteAddress,
        sourceZones: zones?.source,
        port: connectedPort(ctx),
      };
    }
    const od = connectionOf(ctx.req.socket)?.originalDst ?? null;
    const host = ctx.host;
    return {
      direction: 'egress',
      target: this.#targetWith(zones?.source),
      destService: ctx.destination?.service,
      destHost: host,
      destIp: isIP(host) ? host : (od?.address ?? undefined),
      destZones: zones?.destination,
      port: od?.port ?? hostPort(rawHeader(ctx.req.rawHeaders, 'host')) ?? 80,
    };
  }

  onRequest(ctx: RequestContext): LocalReply | undefined {
    const r = this.#request(ctx);
    const d = this.#engine.evaluate(r);
    let child = this.#children.get(d);
    if (child === undefined) {
      child = this.#decisions.labels(r.direction, d.allowed ? 'allow' : 'deny', d.policy ?? `(${d.basis})`);
      this.#children.set(d, child);
    }
    child.inc();
    if (d.allowed) return undefined;
    this.#logDeny(ctx, r, d);
    return { status: 403, code: 'ETZ_ERR_NETWORK_POLICY_DENIED', reason: d.reason };
  }

  #logDeny(ctx: RequestContext, r: NetRequest, d: NetDecision): void {
    this.#env.logger.warn(
      {
        audit: 'netpol.deny',
        requestId: ctx.id,
        version: this.#env.version,
        digest: this.#engine.digest,
        direction: r.direction,
        service: r.target.service,
        source: r.sourcePrincipal ?? null,
        sourceIp: r.sourceIp ?? null,
        destination: r.destService ?? null,
        host: r.destHost ?? null,
        port: r.port ?? null,
        policy: d.policy ?? null,
        rule: d.rule ?? null,
        basis: d.basis,
        explanation: d.reason,
      },
      `${r.direction} denied by network policy`,
    );
  }

  admitsConnection(conn: ConnectionInfo): boolean {
    if (conn.direction === 'inbound') {
      return this.#engine.admits(
        { direction: 'ingress', target: this.#target, sourcePrincipal: conn.peer?.spiffeId, sourceIp: conn.remoteAddress, port: connectionPort(conn) },
        UNKNOWN_ON_INBOUND_CONNECTION,
      );
    }
    for (const svc of conn.destinations) {
      if (!this.#engine.admits({ direction: 'egress', target: this.#target, destService: svc, destHost: svc }, UNKNOWN_ON_OUTBOUND_CONNECTION)) return false;
    }
    return true;
  }
}

/** NetworkPolicy and PolicyDefaults documents of `policies`, minus those `networkPolicies` redefines. */
function fromPolicies(raw: unknown, own: readonly PolicyDocument[]): PolicyDocument[] {
  if (!Array.isArray(raw)) return [];
  const picked: unknown[] = [];
  const idx: number[] = [];
  raw.forEach((d, i) => {
    const kind = (d as { kind?: unknown } | null)?.kind;
    if (kind === 'NetworkPolicy' || kind === 'PolicyDefaults') {
      picked.push(d);
      idx.push(i);
    }
  });
  if (picked.length === 0) return [];
  const ownIds = new Set(own.map((d) => `${d.kind}/${policyId(d)}`));
  const ownDefaults = own.some((d) => d.kind === 'PolicyDefaults');
  return loadResource('policies', picked).filter((d) => !ownIds.has(`${d.kind}/${policyId(d)}`) && !(ownDefaults && d.kind === 'PolicyDefaults'));
}

function usesZones(d: PolicyDocument): boolean {
  if (d.kind !== 'NetworkPolicy') return false;
  if (d.spec.target?.zone !== undefined) return true;
  const rules = [...(d.spec.ingress ?? []), ...(d.spec.egress ?? [])];
  return rules.some((r) => [...(r.from ?? []), ...(r.to ?? [])].some((p) => p.zones !== undefined));
}

export const networkPolicyFilter: FilterFactory<unknown[] | undefined> = {
  name: 'network-policy',
  resource: 'networkPolicies',
  schema: policyResourceSchema,
  directions: ['inbound', 'outbound'],
  compile(config, env) {
    // Both listeners compile each version from the same validated resources: load them once.
    const memo = instanceState(env.metrics, 'policy.network.docs', () => new WeakMap<object, PolicyDocument[]>());
    let docs = memo.get(env.resources);
    if (docs === undefined) {
      const own = loadResource('networkPolicies', config);
      docs = [...own, ...fromPolicies(env.resources.policies, own)];
      recordPolicyChange(env.logger, env.metrics, 'network', env.version, docs);
      memo.set(env.resources, docs);
    }
    const defaultsDoc = docs.find((d) => d.kind === 'PolicyDefaults');
    const setsNetDefaults =
      defaultsDoc?.kind === 'PolicyDefaults' && (defaultsDoc.spec.ingress !== undefined || defaultsDoc.spec.egress !== undefined || defaultsDoc.spec.externalEgress !== undefined);
    // Enforcement is on when network policies are configured at all; otherwise it costs nothing.
    if (config === undefined && !docs.some((d) => d.kind === 'NetworkPolicy') && !setsNetDefaults) return null;
    const engine = new NetworkPolicyEngine(docs);
    const self = env.sidecar.service.name;
    const d = engine.defaults;
    if (env.direction === 'inbound' && d.ingress === 'ALLOW' && !engine.governs(self, 'ingress')) return null;
    if (env.direction === 'outbound' && d.egress === 'ALLOW' && d.externalEgress === 'ALLOW' && !engine.governs(self, 'egress')) return null;
    return new NetworkPolicyFilter(engine, env, docs.some(usesZones));
  },
};
