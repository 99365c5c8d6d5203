import { LRUCache } from 'lru-cache';
import { SlidingWindowCounter } from '../../scoring/index.js';
import type { EngineConfig } from './config.js';
import type { FlagAction, FlaggedPrincipal, Indicator, Reason, RequestRecord } from './types.js';
import { isUserAuthFailure, meshCause } from './attribution.js';

/**
 * End-user behaviour, judged per request as records arrive (not per window): the paper's "more
 * than N requests within a minute" and credential stuffing (a burst of 401/403). A page view fans
 * out into several records sharing one requestId; a user's request is counted once per id.
 */

export interface PrincipalVerdict {
  principal: string;
  action: FlagAction;
  reason: string;
  score: number;
  reasons: Reason[];
  to?: { service: string; version: string };
}

const RING = 16;
const INTEL_POINTS = { low: 15, medium: 40, high: 70, critical: 90 } as const;

export class PrincipalTracker {
  private readonly cfg: EngineConfig['risk']['principals'];
  private readonly scraping: SlidingWindowCounter;
  private readonly auth: SlidingWindowCounter;
  // Per principal, the last few request ids (and which of them failed auth): the records of one
  // request's fan-out arrive together, so a short ring is enough to count each request once.
  private readonly recent: LRUCache<string, { ids: string[]; auth: string[]; head: number; aHead: number }>;
  private readonly flags = new Map<string, FlaggedPrincipal>();

  private readonly intelScale: number;

  constructor(cfg: EngineConfig['risk']['principals'], intelWeight = 90) {
    this.cfg = cfg;
    this.intelScale = intelWeight / 90;
    this.scraping = new SlidingWindowCounter({ limit: cfg.scraping.maxRequests, windowMs: cfg.scraping.windowMs, maxKeys: cfg.maxTracked });
    this.auth = new SlidingWindowCounter({ limit: cfg.authFailures.maxFailures, windowMs: cfg.authFailures.windowMs, maxKeys: cfg.maxTracked });
    this.recent = new LRUCache({ max: Math.max(1000, cfg.maxTracked) });
  }

  /** Judge one request; returns a verdict when the principal crosses a rule now. */
  onRequest(rec: RequestRecord, ipHit: Indicator | undefined, principalHit: Indicator | undefined): PrincipalVerdict | null {
    const p = rec.principal!;
    if (principalHit) return this.intelVerdict(p, principalHit, `principal ${p} is on threat-intel list ${principalHit.source ?? ''}`.trim());
    if (ipHit && (ipHit.severity === 'high' || ipHit.severity === 'critical')) {
      return this.intelVerdict(p, ipHit, `requests from ${rec.source.ip} which matches threat-intel indicator ${ipHit.value}`);
    }
    let first = true;
    // Only a refusal of the user's own request counts: a zone, network policy or unreachable
    // upstream further down the call chain is the mesh's doing, not the user's.
    const enabled = this.cfg.authFailures.enabled;
    const auth = enabled && isUserAuthFailure(rec.status, rec.reason);
    if (rec.requestId !== undefined) {
      let st = this.recent.get(p);
      if (!st) {
        st = { ids: [], auth: [], head: 0, aHead: 0 };
        this.recent.set(p, st);
      }
      first = !st.ids.includes(rec.requestId);
      if (first) st.ids[st.head++ & (RING - 1)] = rec.requestId;
      // An auth failure anywhere in the chain counts once per request; a request the mesh itself
      // refused somewhere is settled without counting, so the 403 an application passes up the
      // chain after it does not count either.
      if (enabled && (auth || meshCause(rec.reason) === 'deny')) {
        if (st.auth.includes(rec.requestId)) return null;
        st.auth[st.aHead++ & (RING - 1)] = rec.requestId;
        if (auth && this.auth.hit(p, rec.ts)) return this.authVerdict(p);
      }
      if (!first) return null;
    } else if (auth && this.auth.hit(p, rec.ts)) {
      return this.authVerdict(p);
    }
    if (this.cfg.scraping.enabled && this.scraping.hit(p, rec.ts)) {
      const s = this.cfg.scraping;
      const v: PrincipalVerdict = {
        principal: p,
        action: s.action,
        reason: `more than ${s.maxRequests} requests within ${s.windowMs / 1000} s`,
        score: 60,
        reasons: [{ detector: 'rules', feature: 'requests', detail: `more than ${s.maxRequests} requests within ${s.windowMs / 1000} s (counted once per request id)`, points: 60 }],
      };
      if (s.action === 'route') v.to = { ...s.to };
      return v;
    }
    return null;
  }

  private authVerdict(p: string): PrincipalVerdict {
    const a = this.cfg.authFailures;
    const reason = `more than ${a.maxFailures} authentication failures (401/403) within ${a.windowMs / 1000} s`;
    const v: PrincipalVerdict = { principal: p, action: a.action, reason, score: 85, reasons: [{ detector: 'rules', feature: 'authFailures', detail: reason, points: 85 }] };
    if (a.action === 'route') v.to = { ...this.cfg.scraping.to };
    return v;
  }

  private intelVerdict(p: string, ind: Indicator, reason: string): PrincipalVerdict {
    const pts = Math.round(INTEL_POINTS[ind.severity] * this.intelScale);
    return { principal: p, action: 'block', reason, score: pts, reasons: [{ detector: 'intel', detail: reason, points: pts }] };
  }

  /** Record a flag (or extend it). Returns true when the principal was not flagged before. */
  flag(v: PrincipalVerdict, now: number): boolean {
    const prev = this.flags.get(v.principal);
    const expiresAt = now + this.cfg.flagTtlMs;
    // A stronger action replaces a weaker one; a repeat only extends.
    if (prev && rank(prev.action) >= rank(v.action)) {
      prev.expiresAt = Math.max(prev.expiresAt, expiresAt);
      return false;
    }
    const f: FlaggedPrincipal = { principal: v.principal, action: v.action, reason: v.reason, flaggedAt: now, expiresAt };
    if (v.to) f.to = v.to;
    this.flags.delete(v.principal);
    this.flags.set(v.principal, f);
    if (this.flags.size > this.cfg.maxTracked) this.flags.delete(this.flags.keys().next().value!);
    return true;
  }

  /** Flags whose TTL passed while the rules no longer hold; removed and returned. */
  expire(now: number): FlaggedPrincipal[] {
    const out: FlaggedPrincipal[] = [];
    for (const f of this.flags.values()) {
      if (f.expiresAt > now) continue;
      if (this.scraping.exceeded(f.principal, now) || this.auth.exceeded(f.principal, now)) {
        f.expiresAt = now + this.cfg.flagTtlMs;
        continue;
      }
      out.push(f);
    }
    for (const f of out) this.flags.delete(f.principal);
    return out;
  }

  clear(principal: string): FlaggedPrincipal | undefined {
    const f = this.flags.get(principal);
    if (f) this.flags.delete(principal);
    return f;
  }

  list(): FlaggedPrincipal[] {
    return [...this.flags.values()].map((f) => ({ ...f }));
  }

  restore(flags: FlaggedPrincipal[]): void {
    this.flags.clear();
    for (const f of flags) this.flags.set(f.principal, { ...f });
  }
}

function rank(a: FlagAction): number {
  return a === 'block' ? 3 : a === 'ratelimit' ? 2 : 1;
}
