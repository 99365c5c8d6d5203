import { F, FEATURES } from './features.js';
import { fmt } from './scorer.js';
import type { Reason } from './types.js';

/**
 * Who a record's evidence belongs to. The sidecar says in `reason` which local reply it gave
 * instead of the upstream's answer; the mesh's own decisions (a zone or network policy refusing a
 * call, an upstream it could not reach) are evidence about the caller or the destination's
 * health, never about the end user or about services further up the call chain. Only refusals of
 * the user's own credentials or permissions count against the user.
 */

export type MeshCause = 'deny' | 'upstream';

// The mesh refused the call: it never reached the destination's application.
const DENIED = new Set(['ETZ_ERR_ZONE_DENIED', 'ETZ_ERR_NETWORK_POLICY_DENIED', 'ETZ_ERR_THREAT_INTEL_BLOCKED', 'ETZ_ERR_RATE_LIMITED', 'ETZ_ERR_TRUST_DOMAIN_MISMATCH']);
// The sidecar answered for an upstream it could not use.
const UPSTREAM = new Set(['ETZ_ERR_UPSTREAM_UNAVAILABLE', 'ETZ_ERR_UPSTREAM_TIMEOUT', 'ETZ_ERR_UPSTREAM_RESET', 'ETZ_ERR_UPSTREAM_OVERFLOW', 'ETZ_ERR_UPSTREAM_TLS', 'ETZ_ERR_NO_ROUTE', 'ETZ_ERR_DRAINING']);

/** What mesh decision a record's local reply stands for, or null (the application answered, or the user's own request was at fault). */
export function meshCause(reason: string | undefined): MeshCause | null {
  if (reason === undefined) return null;
  if (DENIED.has(reason)) return 'deny';
  if (UPSTREAM.has(reason)) return 'upstream';
  return null;
}

/** A 401/403 that refused the user's own request (an application, an authorization policy, a token check). */
export function isUserAuthFailure(status: number, reason: string | undefined): boolean {
  return (status === 401 || status === 403) && meshCause(reason) === null;
}

export interface SiblingView {
  instance: string;
  features: Float64Array;
}

// Outbound behaviour one instance shows and its siblings do not: each sibling runs the same build
// and sees the same share of traffic, so the busiest sibling is a baseline that exists from the
// first window of a fresh instance and moves with the load.
const SIBLING_SPECS = [
  { f: F.bytesOut, floor: 10_000, points: 40 },
  { f: F.requestsOut, floor: 5, points: 30 },
  { f: F.fanOut, floor: 2, points: 20 },
] as const;

/** Reasons for `self` standing out from every sibling instance by at least `minRatio`. */
export function siblingReasons(self: SiblingView, siblings: readonly SiblingView[], minRatio: number): Reason[] {
  if (siblings.length === 0) return [];
  const out: Reason[] = [];
  for (const s of SIBLING_SPECS) {
    let top = siblings[0]!;
    for (const x of siblings) if (x.features[s.f]! > top.features[s.f]!) top = x;
    const base = top.features[s.f]!;
    const v = self.features[s.f]!;
    const ratio = v / Math.max(base, s.floor);
    if (ratio < minRatio) continue;
    // Half the weight at minRatio, full weight at 5× minRatio, as the baseline detector scales.
    const pts = s.points * Math.min(1, 0.5 + 0.5 * Math.log(ratio / minRatio) / Math.log(5));
    out.push({
      detector: 'siblings',
      feature: FEATURES[s.f]!,
      detail: `${FEATURES[s.f]} ${fmt(v)} is ${fmt(ratio)}× the busiest sibling instance (${top.instance}: ${fmt(base)})`,
      points: Math.round(pts * 10) / 10,
    });
  }
  return out;
}
