import { ConfigError } from '../../core/errors.js';
import type { Counter } from '../../core/metrics.js';
import type { CompileEnv, ConnectionAdmission, ConnectionInfo, FilterFactory, HttpFilter, LocalReply, RequestContext } from '../filter.js';
import { counter } from '../routing/instance-state.js';
import { rawHeader } from '../routing/match.js';
import { IntelIndex, type CompiledIndicator, type IndicatorConfig, type Severity } from './intel-index.js';

/**
 * The threat-intel filter (the `intel` resource, pushed by the zone manager): refuses or marks
 * requests whose source IP, peer SPIFFE ID or end-user principal is on a threat-intel list. The
 * indicators are compiled per config version into an IntelIndex; per request it is one to three
 * map probes, and Date.now() only on a hit (to skip expired indicators at request time).
 *
 * Severity decides the action: by default critical and high deny with 403
 * ETZ_ERR_THREAT_INTEL_BLOCKED, medium and low let the request through with the match on
 * ctx.attrs 'intel' for telemetry and risk scoring. A new version closes live connections from a
 * newly denied IP or identity (admitsConnection), so a keep-alive tunnel does not outlive the ban.
 * With no live indicator the filter is not in the chain.
 */

export const INTEL_ATTR = 'intel';

export type IntelAction = 'deny' | 'mark';

export interface IntelResourceObject {
  indicators?: IndicatorConfig[];
  /** Action per severity; missing severities keep the defaults. */
  actions?: Partial<Record<Severity, IntelAction>>;
  /**
   * At the gateway, also match the first x-forwarded-for hop (the client as a trusted load
   * balancer in front reports it). Off by default: a client can write any x-forwarded-for.
   */
  trustForwardedFor?: boolean;
}

/** A bare list is shorthand for `{ indicators: [...] }` (how the manager stores operator lists). */
export type IntelResource = IntelResourceObject | IndicatorConfig[];

export const DEFAULT_INTEL_ACTIONS: Readonly<Record<Severity, IntelAction>> = { critical: 'deny', high: 'deny', medium: 'mark', low: 'mark' };

/** What a request matched; on ctx.attrs 'intel'. */
export interface IntelMatch {
  on: 'ip' | 'forwarded-ip' | 'identity' | 'principal';
  type: IndicatorConfig['type'];
  value: string;
  severity: Severity;
  source?: string;
  action: IntelAction;
}

const severity = { enum: ['low', 'medium', 'high', 'critical'] } as const;
const action = { enum: ['deny', 'mark'] } as const;

const indicatorSchema = {
  type: 'object',
  required: ['type', 'value', 'severity'],
  additionalProperties: false,
  properties: {
    type: { enum: ['ip', 'cidr', 'identity', 'principal'] },
    value: { type: 'string', minLength: 1, maxLength: 2048 },
    severity,
    source: { type: 'string' },
    expiresAt: { type: ['number', 'string'] },
  },
} as const;

export const intelSchema = {
  // Multi-type rather than anyOf so that errors name the field.
  type: ['array', 'object'],
  items: indicatorSchema,
  additionalProperties: false,
  properties: {
    indicators: { type: 'array', items: indicatorSchema },
    actions: { type: 'object', additionalProperties: false, properties: { low: action, medium: action, high: action, critical: action } },
    trustForwardedFor: { type: 'boolean' },
  },
} as const;

function normalize(res: IntelResource | undefined): IntelResourceObject {
  if (!res) return {};
  return Array.isArray(res) ? { indicators: res } : res;
}

/** Build the index for one version; throws ConfigError naming the bad indicator (the push is NACKed). */
export function compileIntel(list: readonly IndicatorConfig[], now: number, source = 'resources', base = '/resources/intel'): IntelIndex {
  const ix = new IntelIndex();
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    let until = Number.POSITIVE_INFINITY;
    if (c.expiresAt !== undefined) {
      until = typeof c.expiresAt === 'number' ? c.expiresAt : Date.parse(c.expiresAt);
      if (Number.isNaN(until)) throw new ConfigError(source, `${base}/${i}/expiresAt`, `'${c.expiresAt}' is not a timestamp (RFC 3339 or epoch milliseconds)`);
    }
    // Already expired when this version arrives: not worth a slot.
    if (until <= now) continue;
    const ind: CompiledIndicator = { type: c.type, value: c.value, severity: c.severity, source: c.source, until };
    const bad = ix.add(ind);
    if (bad !== undefined) throw new ConfigError(source, `${base}/${i}/value`, bad);
  }
  return ix.seal();
}

class ThreatIntelFilter implements HttpFilter, ConnectionAdmission {
  readonly name = 'threat-intel';
  readonly #ix: IntelIndex;
  readonly #actions: Readonly<Record<Severity, IntelAction>>;
  readonly #xff: boolean;
  readonly #ip: boolean;
  readonly #id: boolean;
  readonly #principal: boolean;
  readonly #env: CompileEnv;
  readonly #matches: Counter<'type' | 'severity' | 'action'>;
  // One warn line per second at most, with how many were denied since the last one.
  #logWindow = 0;
  #suppressed = 0;

  constructor(ix: IntelIndex, actions: Record<Severity, IntelAction>, xff: boolean, env: CompileEnv) {
    this.#ix = ix;
    this.#actions = actions;
    this.#ip = ix.hasIpIndicators;
    this.#xff = xff && this.#ip;
    this.#id = ix.hasIdentityIndicators;
    this.#principal = ix.hasPrincipalIndicators;
    this.#env = env;
    this.#matches = counter(env.metrics, 'etz_threat_intel_matches_total', 'Requests matching a threat-intel indicator, by indicator type, severity and action.', ['type', 'severity', 'action']);
  }

  onRequest(ctx: RequestContext): LocalReply | undefined {
    // No closure or allocation on a miss: candidates are compared in place.
    let best: CompiledIndicator | undefined;
    let on: IntelMatch['on'] = 'ip';
    let now = 0;
    if (this.#ip) {
      now = Date.now();
      best = this.#ix.matchIp(ctx.remoteAddress, now);
      if (this.#xff && ctx.direction === 'gateway') {
        const h = rawHeader(ctx.req.rawHeaders, 'x-forwarded-for');
        if (h !== undefined) {
          const comma = h.indexOf(',');
          const first = (comma < 0 ? h : h.slice(0, comma)).trim();
          const m = first.length > 0 ? this.#ix.matchIp(first, now) : undefined;
          if (m !== undefined && (best === undefined || rank(m) > rank(best))) {
            best = m;
            on = 'forwarded-ip';
          }
        }
      }
    }
    if (this.#id && ctx.peer !== undefined) {
      const m = this.#ix.matchIdentity(ctx.peer.spiffeId, now || (now = Date.now()));
      if (m !== undefined && (best === undefined || rank(m) > rank(best))) {
        best = m;
        on = 'identity';
      }
    }
    if (this.#principal && ctx.principal !== undefined) {
      const m = this.#ix.matchPrincipal(ctx.principal, now || (now = Date.now()));
      if (m !== undefined && (best === undefined || rank(m) > rank(best))) {
        best = m;
        on = 'principal';
      }
    }
    if (best === undefined) return undefined;
    const hit: CompiledIndicator = best;
    const act = this.#actions[hit.severity];
    const match: IntelMatch = { on, type: hit.type, value: hit.value, severity: hit.severity, ...(hit.source !== undefined ? { source: hit.source } : {}), action: act };
    ctx.attrs.set(INTEL_ATTR, match);
    this.#matches.inc({ type: hit.type, severity: hit.severity, action: act });
    if (act === 'mark') return undefined;
    this.#log(ctx, match);
    ctx.decision = 'deny';
    return { status: 403, code: 'ETZ_ERR_THREAT_INTEL_BLOCKED', reason: `${on} matches a ${hit.severity} threat-intel indicator${hit.source ? ` from ${hit.source}` : ''}` };
  }

  #log(ctx: RequestContext, m: IntelMatch): void {
    const now = Date.now();
    if (now - this.#logWindow < 1000) {
      this.#suppressed++;
      return;
    }
    this.#env.logger.warn(
      { audit: 'intel.deny', requestId: ctx.id, direction: ctx.direction, sourceIp: ctx.remoteAddress, source: ctx.peer?.spiffeId ?? null, user: ctx.principal ?? null, indicator: m, suppressed: this.#suppressed },
      'request denied by threat intel',
    );
    this.#logWindow = now;
    this.#suppressed = 0;
  }

  admitsConnection(conn: ConnectionInfo): boolean {
    const now = Date.now();
    if (this.#ip) {
      const hit = this.#ix.matchIp(conn.remoteAddress, now);
      if (hit !== undefined && this.#actions[hit.severity] === 'deny') return false;
    }
    if (this.#id && conn.peer !== undefined) {
      const hit = this.#ix.matchIdentity(conn.peer.spiffeId, now);
      if (hit !== undefined && this.#actions[hit.severity] === 'deny') return false;
    }
    return true;
  }
}

function rank(i: CompiledIndicator): number {
  return i.severity === 'critical' ? 4 : i.severity === 'high' ? 3 : i.severity === 'medium' ? 2 : 1;
}

export const threatIntelFilter: FilterFactory<IntelResource | undefined> = {
  name: 'threat-intel',
  resource: 'intel',
  schema: intelSchema,
  compile(config, env) {
    const res = normalize(config);
    const base = Array.isArray(config) ? '/resources/intel' : '/resources/intel/indicators';
    const ix = compileIntel(res.indicators ?? [], Date.now(), `resources v${env.version}`, base);
    if (ix.size === 0) return null;
    return new ThreatIntelFilter(ix, { ...DEFAULT_INTEL_ACTIONS, ...(res.actions ?? {}) }, res.trustForwardedFor === true, env);
  },
};
