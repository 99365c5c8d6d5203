import type { FlaggedPrincipal, SubjectScore } from './types.js';
import type { TrafficReport } from '../traffic/analyzer.js';
import { iso, publicZone, type CreateZoneRequest } from '../zones/manager.js';
import { featureName, normaliseKey, type EngineSnapshot, type Explanation } from './engine-state.js';
import { EngineScoring } from './scoring.js';

export { normaliseKey, subjectKey, type EngineSnapshot, type Explanation, type IngestResult, type ScoreFn, type SubjectInfo } from './engine-state.js';

/**
 * The Risk Assessment Engine's private core. Deterministic: no wall clock and no timers inside —
 * `ingest` takes records stamped with their own time and `advance(now)` moves the clock, closing
 * windows whose end is older than now − allowedLateness. `etz replay` drives it from the trace;
 * the live manager from a timer and sidecar telemetry. The public face is RiskEngine (index.ts).
 */

export class EngineCore extends EngineScoring {
  // ---------------------------------------------------------------------------------------- queries

  scores(): SubjectScore[] {
    const out: SubjectScore[] = [];
    for (const s of this.subjects.values()) {
      if (s.at === 0) continue;
      out.push({ subject: s.subject, key: s.key, score: s.score, level: s.level, reasons: s.reasons, at: s.at, warmingUp: s.warmingUp });
    }
    for (const p of this.principalScores.values()) out.push(p);
    return out.sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  explain(key: string): Explanation | null {
    const k = normaliseKey(key);
    const p = this.principalScores.get(k);
    if (p) {
      const e: Explanation = { ...p, features: null, zones: [] };
      const f = this.principals.list().find((x) => `principal:${x.principal}` === k);
      if (f) e.flagged = f;
      return e;
    }
    const s = this.subjects.get(k);
    if (!s) return null;
    const svc = s.subject.kind === 'edge' ? s.subject.source : s.subject.kind === 'principal' ? null : s.subject.service;
    return {
      subject: s.subject,
      key: s.key,
      score: s.score,
      level: s.level,
      reasons: s.reasons,
      at: s.at,
      warmingUp: s.warmingUp,
      features: s.features ? Object.fromEntries([...s.features].map((v, i) => [featureName(i), Math.round(v * 1000) / 1000])) : null,
      zones: svc ? this.zones.zonesOf(svc).map((z) => z.id) : [],
    };
  }

  flaggedPrincipals(): FlaggedPrincipal[] {
    return this.principals.list();
  }

  trafficReport(windowMs: number): TrafficReport {
    return this.traffic.report(windowMs, this.now);
  }

  // ------------------------------------------------------------------------------------- operators

  createZone(req: CreateZoneRequest, now = this.now) {
    return publicZone(this.zones.create(req, now));
  }
  dissolveZone(id: string, reason: string, now = this.now) {
    return publicZone(this.zones.dissolve(id, reason, now));
  }
  pinZone(id: string, pinned: boolean, reason: string, now = this.now) {
    return publicZone(this.zones.pin(id, pinned, reason, now));
  }
  extendZone(id: string, ttlMs: number, reason: string, now = this.now) {
    return publicZone(this.zones.extend(id, ttlMs, reason, now));
  }
  clearPrincipal(principal: string, reason: string, now = this.now): boolean {
    const f = this.principals.clear(principal);
    if (!f) return false;
    this.principalScores.delete(`principal:${principal}`);
    this.emit({ ts: iso(now), event: 'principal.cleared', principal, reason });
    return true;
  }

  // -------------------------------------------------------------------------------------- snapshot

  snapshot(opts: { baselines?: boolean; allSubjects?: boolean } = {}): EngineSnapshot {
    const subjects: EngineSnapshot['subjects'] = [];
    // By default only what a restart must not forget: subjects carrying risk or holding a zone.
    // Quiet subjects re-learn after a restart (warm-up), which keeps the snapshot small enough to
    // persist on every zone change.
    const triggers = new Set(this.zones.list().flatMap((z) => z.triggers));
    for (const s of this.subjects.values()) {
      if (!opts.allSubjects && !opts.baselines && s.score === 0 && !triggers.has(s.key)) continue;
      subjects.push({ key: s.key, subject: s.subject, windows: s.windows, score: s.score, level: s.level, reasons: s.reasons, at: s.at, dests: s.seenDests ? [...s.seenDests] : [] });
    }
    const snap: EngineSnapshot = {
      version: 1,
      watermark: this.watermark,
      nextWindow: this.nextWindow,
      zones: this.zones.snapshot(),
      principals: this.principals.list(),
      subjects: subjects.reverse(),
      vulns: [...this.vulns],
    };
    if (opts.baselines) snap.baselines = this.scorer.exportBaselines();
    return snap;
  }

  restore(snap: EngineSnapshot): void {
    if (!snap || snap.version !== 1) throw new Error('unsupported engine snapshot version');
    this.watermark = snap.watermark;
    this.nextWindow = snap.nextWindow;
    this.started = snap.nextWindow !== null;
    this.zones.restore(snap.zones);
    this.principals.restore(snap.principals);
    for (const x of snap.subjects) {
      const s = this.info(x.subject, x.key);
      s.windows = x.windows;
      s.score = x.score;
      s.level = x.level;
      s.reasons = x.reasons;
      s.at = x.at;
      s.warmingUp = x.windows < this.cfg.risk.warmupWindows;
      if (x.dests.length) s.seenDests = new Map(x.dests);
    }
    for (const [svc, f] of snap.vulns) this.vulns.set(svc, f);
    if (snap.baselines) this.scorer.importBaselines(snap.baselines);
  }
}
