import { defaultEngineConfig, type EngineConfig } from '../risk/config.js';
import type { FlagAction, FlaggedPrincipal, PublicZone, Zone, ZoneMember, ZoneType } from '../risk/types.js';

/**
 * Zones → the `zones` and `principals` resources pushed to sidecars. Everything a sidecar needs to
 * decide per request is resolved here, once per change (allow-lists, modes, rate limits), so the
 * zone-rules filter only compiles lookups.
 */

export interface CompiledZone {
  id: string;
  type: ZoneType;
  members: ZoneMember[];
  /** False in shadow mode: the sidecar reports what it would deny and lets the request through. */
  enforce: boolean;
  /** Containment: what members may still call, and how. */
  outbound?: { mode: 'block' | 'scrutinise'; allow: string[]; ratePerMinute: number };
  /** Isolation: SPIFFE IDs or service names allowed to call members (members may call each other). */
  allowPrincipals?: string[];
  /** Every access is written to the audit log. */
  audit?: boolean;
  /** Performance: prefer endpoints inside the zone and skip costly inspection between members. */
  preferLocal?: boolean;
  skipInspection?: boolean;
}

export interface ZonesResource {
  zones: CompiledZone[];
}

export interface PrincipalFlag {
  principal: string;
  action: FlagAction;
  reason: string;
  /** Epoch ms. */
  expiresAt: number;
  to?: { service: string; version: string };
}

export interface PrincipalsResourceOut {
  flagged: PrincipalFlag[];
}

export function compileZoneResources(
  zones: ReadonlyArray<Zone | PublicZone>,
  flaggedPrincipals: ReadonlyArray<FlaggedPrincipal>,
  config: EngineConfig = defaultEngineConfig(),
): { zones: ZonesResource; principals: PrincipalsResourceOut } {
  const zc = config.zones;
  const out: CompiledZone[] = [];
  const sorted = [...zones].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const z of sorted) {
    const c: CompiledZone = { id: z.id, type: z.type, members: z.members.map((m) => ({ ...m })), enforce: !z.shadow };
    if (z.type === 'containment') {
      c.outbound = { mode: zc.containment.outbound, allow: [...zc.containment.allow], ratePerMinute: zc.containment.scrutiniseRatePerMinute };
      c.audit = true;
    } else if (z.type === 'isolation') {
      const allow = new Set(zc.isolation.allowPrincipals);
      for (const m of z.members) for (const a of config.risk.services[m.service]?.allow ?? []) allow.add(a);
      c.allowPrincipals = [...allow].sort();
      c.audit = true;
    } else {
      c.preferLocal = true;
      c.skipInspection = true;
    }
    out.push(c);
  }
  const flagged = [...flaggedPrincipals]
    .sort((a, b) => (a.principal < b.principal ? -1 : a.principal > b.principal ? 1 : 0))
    .map((f) => {
      const p: PrincipalFlag = { principal: f.principal, action: f.action, reason: f.reason, expiresAt: f.expiresAt };
      if (f.to) p.to = { ...f.to };
      return p;
    });
  return { zones: { zones: out }, principals: { flagged } };
}

const member = {
  type: 'object',
  additionalProperties: false,
  required: ['service'],
  properties: { service: { type: 'string', minLength: 1 }, version: { type: 'string' }, instance: { type: 'string' } },
} as const;

/** Schema of the `zones` resource as sidecars validate it (a bad push is NACKed). */
export const zonesResourceSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['zones'],
  properties: {
    zones: {
      type: 'array',
      maxItems: 10_000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'type', 'members'],
        properties: {
          id: { type: 'string', minLength: 1 },
          type: { type: 'string', enum: ['containment', 'isolation', 'performance'] },
          members: { type: 'array', minItems: 1, items: member },
          enforce: { type: 'boolean', default: true },
          outbound: {
            type: 'object',
            additionalProperties: false,
            properties: {
              mode: { type: 'string', enum: ['block', 'scrutinise'], default: 'block' },
              allow: { type: 'array', items: { type: 'string' }, default: [] },
              ratePerMinute: { type: 'integer', minimum: 1, default: 60 },
            },
          },
          allowPrincipals: { type: 'array', items: { type: 'string' }, default: [] },
          audit: { type: 'boolean', default: true },
          preferLocal: { type: 'boolean', default: false },
          skipInspection: { type: 'boolean', default: false },
        },
      },
    },
  },
} as const;
