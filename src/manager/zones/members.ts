import type { EngineConfig } from '../risk/config.js';
import type { Reason, Subject, Zone, ZoneMember } from '../risk/types.js';

/**
 * Which workloads a risk zone is drawn around, and how many automation may take: the narrowest
 * members that explain a service's risk (some of its instances, or the whole service), and the
 * blast-radius guard's instance and mesh shares.
 */

export interface Inventory {
  /** Services the mesh has seen (for the mesh share of the blast-radius guard). */
  serviceCount(): number;
  /** Instances of one service seen so far. */
  instanceCount(service: string): number;
  /**
   * The scored instances of one service with their latest risk: lets a zone be drawn around the
   * instance that explains a service's risk instead of the whole service. Without it zones name
   * what triggered them.
   */
  instances?(service: string): InstanceRisk[];
}

export interface InstanceRisk {
  key: string;
  subject: Extract<Subject, { kind: 'instance' }>;
  score: number;
  level: string;
  reasons: Reason[];
  /** Trace time of its latest score (epoch ms). */
  at: number;
}

// An instance counts as one of its service's live instances if it was scored this recently.
const LIVE_WINDOWS = 6;

function live(cfg: EngineConfig, list: InstanceRisk[], now: number): InstanceRisk[] {
  const since = now - LIVE_WINDOWS * cfg.risk.windowMs;
  return list.filter((i) => i.at >= since);
}

const byKey = (a: InstanceRisk, b: InstanceRisk): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The instances of `service` that explain its risk, when there are such: at least two live
 * instances, some at high risk or above, the others (the siblings) below it, and no more of them
 * than the instance share of the blast-radius guard. Risk spread over more instances than that is
 * the service's, and so is risk no instance carries: null.
 */
export function narrowMembers(cfg: EngineConfig, inv: Inventory, service: string, now: number): { hot: InstanceRisk[]; siblings: InstanceRisk[] } | null {
  const list = inv.instances?.(service);
  if (!list) return null;
  const all = live(cfg, list, now);
  if (all.length < 2) return null;
  const high = cfg.risk.levels.high;
  const hot = all.filter((i) => i.score >= high).sort((a, b) => b.score - a.score || byKey(a, b));
  if (hot.length === 0 || hot.length >= all.length) return null;
  if (hot.length > Math.floor(cfg.zones.blastRadius.maxInstanceShare * all.length)) return null;
  return { hot, siblings: all.filter((i) => i.score < high).sort(byKey) };
}

/**
 * Automation contains at most `maxInstanceShare` of one service's live instances one by one
 * (those already in `zone` count). Null when allowed, else why not.
 */
export function instanceShareGuard(cfg: EngineConfig, inv: Inventory, members: ZoneMember[], zone: Zone | undefined, now: number): string | null {
  const share = cfg.zones.blastRadius.maxInstanceShare;
  const inst = members.filter((m) => m.instance !== undefined);
  if (inst.length === 0) return null;
  if (zone?.members.some((m) => m.instance === undefined)) return null;
  const service = inst[0]!.service;
  const list = inv.instances?.(service);
  const n = list ? live(cfg, list, now).length : inv.instanceCount(service);
  if (n <= 1) return null;
  const contained = new Set([...(zone?.members ?? []), ...inst].map((m) => m.instance));
  if (contained.size <= Math.floor(share * n)) return null;
  return contained.size === 1 ? `containing one of ${n} instances of ${service} exceeds the share ${share}` : `containing ${contained.size} of ${n} instances of ${service} exceeds the share ${share}`;
}

/** Automation contains at most `maxMeshShare` of the mesh's services (at least one). */
export function meshShareGuard(cfg: EngineConfig, inv: Inventory, zones: Iterable<Zone>): string | null {
  const share = cfg.zones.blastRadius.maxMeshShare;
  const contained = new Set([...zones].filter((z) => z.type === 'containment' && z.origin === 'risk').map((z) => z.members[0]!.service));
  const total = inv.serviceCount();
  const allowed = Math.max(1, Math.floor(share * total));
  if (contained.size + 1 > allowed) return `${contained.size + 1} of ${total} services would be contained; the mesh share is ${share}`;
  return null;
}
