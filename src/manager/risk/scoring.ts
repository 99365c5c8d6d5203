import { F, NF, WindowAcc } from './features.js';
import { siblingReasons } from './attribution.js';
import type { ScoreBatch, ScoreItem, ScoreResult } from './scorer.js';
import type { Level, Reason, Subject } from './types.js';
import { iso, label } from '../zones/manager.js';
import { EngineIngest } from './ingestion.js';
import { MAX_SEEN, rankLevel, stripPoints, type ScoreFn, type SubjectInfo } from './engine-state.js';

const SEVERITY_FACTOR = { LOW: 0.1, MEDIUM: 0.35, HIGH: 0.7, CRITICAL: 1 } as const;

// Closing windows is kept apart from intake because it may run its scoring step in a worker pool
// (advanceAsync) while records keep arriving.
export class EngineScoring extends EngineIngest {
  // --------------------------------------------------------------------------------------- advance

  /** Close every window that can no longer receive records, score it, and run the zone lifecycle. */
  advance(now: number, scoreFn?: ScoreFn): void {
    this.advanceWith(now, scoreFn ?? ((b) => this.scorer.scoreBatch(b)), false);
  }

  /** The same as advance() with a scoring step that may run elsewhere (a worker pool). */
  async advanceAsync(now: number, scoreFn: ScoreFn): Promise<void> {
    await this.advanceWith(now, scoreFn, true);
  }

  private advanceWith(now: number, scoreFn: ScoreFn, async: boolean): void | Promise<void> {
    if (this.busy) return;
    const wm = now - this.cfg.risk.allowedLatenessMs;
    if (wm > this.watermark) this.watermark = wm;
    if (this.nextWindow === null) return;
    const W = this.cfg.risk.windowMs;
    const steps: number[] = [];
    let emptyRun = 0;
    const maxEmpty = Math.ceil(Math.max(this.cfg.zones.containment.coolDownMs, this.cfg.zones.isolation.coolDownMs) / W) + 2;
    let start = this.nextWindow;
    while (start + W <= this.watermark) {
      if (this.open.has(start)) {
        emptyRun = 0;
        steps.push(start);
      } else if (emptyRun < maxEmpty && this.hasElevated()) {
        emptyRun++;
        steps.push(start);
      } else {
        // Nothing to score until the next window with data: jump there.
        const later = [...this.open.keys()].filter((s) => s > start).sort((a, b) => a - b)[0];
        const limit = this.watermark - W;
        start = later !== undefined && later <= limit ? later : Math.floor(limit / W) * W + W;
        if (start > limit) break;
        continue;
      }
      start += W;
    }
    if (start > this.nextWindow) this.nextWindow = Math.max(this.nextWindow, start);
    if (!async) {
      for (const s of steps) {
        const batch = this.closeWindow(s);
        this.applyResults(batch, scoreFn(batch) as ScoreResult[]);
      }
      this.housekeeping(this.watermark);
      return;
    }
    this.busy = true;
    return (async () => {
      try {
        for (const s of steps) {
          const batch = this.closeWindow(s);
          this.applyResults(batch, await scoreFn(batch));
        }
        this.housekeeping(this.watermark);
      } finally {
        this.busy = false;
      }
    })();
  }

  private hasElevated(): boolean {
    for (const z of this.zones.list()) if (z.origin === 'risk') return true;
    for (const s of this.subjects.values()) if (s.score > 0) return true;
    return false;
  }

  private closeWindow(start: number): ScoreBatch & { keys: SubjectInfo[] } {
    const W = this.cfg.risk.windowMs;
    const at = start + W;
    const w = this.open.get(start);
    this.open.delete(start);
    const active = new Map<string, WindowAcc>();
    if (w) for (const [k, sl] of w.slots) active.set(k, sl.acc);
    if (w?.meshIds) settleExcused(active.values(), w.meshIds);
    const accs = new Map(active);
    // Subjects still carrying risk are scored in quiet windows too, so they can calm down.
    for (const s of this.subjects.values()) if (s.score > 0 && !accs.has(s.key)) accs.set(s.key, new WindowAcc());
    for (const z of this.zones.list()) for (const k of z.triggers) if (!accs.has(k) && this.subjects.has(k)) accs.set(k, new WindowAcc());
    const items: ScoreItem[] = [];
    const keys: SubjectInfo[] = [];
    let ratios: number[] = [];
    const warm = this.cfg.risk.warmupWindows;
    for (const [key, a] of accs) {
      const info = this.subjects.get(key);
      if (!info) continue;
      const features = a.features(new Float64Array(NF));
      const priors = this.priorsOf(info);
      if (a.excused > 0) priors.push({ detector: 'attribution', feature: 'errorRate', detail: `${a.excused} error${a.excused > 1 ? 's' : ''} not counted: the request met a mesh decision further down the call chain`, points: 0 });
      if (info.kind === 'service') {
        const x = w?.excluded?.get((info.subject as { service: string }).service);
        if (x) priors.push({ detector: 'attribution', feature: 'requestsIn', detail: `${x.n} request${x.n > 1 ? 's' : ''} judged on the caller, not here (refused by the mesh, or from a suspect caller: ${[...x.from].join(', ')})`, points: 0 });
      }
      const item: ScoreItem = { key, kind: info.kind, features, sensitive: this.isSensitive(info.subject), priors };
      if (a.newDests) item.newEdges = a.newDests;
      items.push(item);
      keys.push(info);
      if (info.kind === 'service') {
        if (active.has(key) && info.windows >= warm && info.rateMean >= 5) ratios.push(features[F.requestsIn]! / info.rateMean);
        const alpha = Math.max(this.cfg.risk.baselineAlpha, 1 / (info.windows + 1));
        info.rateMean += alpha * (features[F.requestsIn]! - info.rateMean);
        if (a.dests) {
          info.seenDests ??= new Map();
          for (const d of a.dests) if (!info.seenDests.has(d) && info.seenDests.size < MAX_SEEN) info.seenDests.set(d, info.windows >= warm ? start : -1);
        }
        if (a.paths) {
          info.seenPaths ??= new Set();
          for (const p of a.paths) if (info.seenPaths.size < MAX_SEEN * 2) info.seenPaths.add(p);
        }
      }
      if (active.has(key)) info.windows++;
    }
    this.compareSiblings(items, keys);
    // Mesh load factor: traffic entering the mesh against its baseline, or else the median
    // service's load against its own. A load change across the mesh moves both; one misbehaving
    // service moves neither.
    let meshFactor = 1;
    const ingress = w?.ingress ?? 0;
    if (this.ingressWindows >= warm && this.ingressMean >= 5) meshFactor = ingress / this.ingressMean;
    else if (ratios.length >= 3) meshFactor = ratios.sort((x, y) => x - y)[Math.floor(ratios.length / 2)]!;
    if (w) {
      this.ingressWindows++;
      this.ingressMean += Math.max(this.cfg.risk.baselineAlpha, 1 / this.ingressWindows) * (ingress - this.ingressMean);
    }
    this.counters.windows++;
    return { at, meshFactor, items, keys };
  }

  /**
   * Instances of one service judged against each other: what one instance sends that none of its
   * siblings does points at that instance, not at the service.
   */
  private compareSiblings(items: ScoreItem[], keys: SubjectInfo[]): void {
    const byService = new Map<string, number[]>();
    for (let i = 0; i < keys.length; i++) {
      const s = keys[i]!.subject;
      if (s.kind !== 'instance') continue;
      const l = byService.get(s.service);
      if (l) l.push(i);
      else byService.set(s.service, [i]);
    }
    const warm = this.cfg.risk.warmupWindows;
    for (const [service, idx] of byService) {
      if (idx.length < 2 || (this.subjects.peek(`service:${service}`)?.windows ?? 0) < warm) continue;
      const views = idx.map((i) => ({ instance: (keys[i]!.subject as { instance: string }).instance, features: items[i]!.features }));
      for (let j = 0; j < idx.length; j++) {
        const r = siblingReasons(views[j]!, views.filter((_, k) => k !== j), this.cfg.risk.spike.minRatio);
        if (r.length) items[idx[j]!]!.priors.push(...r);
      }
    }
  }

  private priorsOf(info: SubjectInfo): Reason[] {
    if (info.kind !== 'service') return [];
    const out: Reason[] = [];
    const findings = this.vulns.get((info.subject as { service: string }).service);
    if (findings && findings.length) {
      let worst = findings[0]!;
      let f = 0;
      for (const x of findings) {
        const v = x.cvss !== undefined ? x.cvss / 10 : SEVERITY_FACTOR[x.severity];
        if (v > f) {
          f = v;
          worst = x;
        }
      }
      const pts = Math.round(this.cfg.detectors.priors.vulnWeight * f * 10) / 10;
      if (pts > 0) out.push({ detector: 'vuln', detail: `${findings.length} finding${findings.length > 1 ? 's' : ''}, worst ${worst.id} (${worst.severity}${worst.cvss !== undefined ? `, CVSS ${worst.cvss}` : ''})`, points: pts });
    }
    return out;
  }

  private isSensitive(s: Subject): boolean {
    const svc = s.kind === 'service' || s.kind === 'instance' ? s.service : s.kind === 'edge' ? s.destination : null;
    if (svc === null) return false;
    const labels = this.cfg.risk.services[svc]?.labels;
    return !!labels && labels.some((l) => this.cfg.zones.isolation.labels.includes(l));
  }

  private applyResults(batch: ScoreBatch & { keys: SubjectInfo[] }, results: ScoreResult[]): void {
    const at = batch.at;
    const scored: Array<{ key: string; subject: Subject; score: number; level: Level; reasons: Reason[] }> = [];
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      const info = batch.keys[i]!;
      const level = this.levelOf(r.score);
      const prev = info.level;
      info.score = r.score;
      info.level = level;
      info.reasons = r.reasons;
      info.at = at;
      info.warmingUp = r.warmingUp;
      info.features = batch.items[i]!.features;
      this.counters.scored++;
      if (level !== prev) {
        this.emit({ ts: iso(at), event: 'risk', subject: info.subject, score: r.score, level, previous: prev, reasons: r.reasons.map(stripPoints) });
        if (rankLevel(level) > rankLevel(prev) && rankLevel(level) >= rankLevel(this.cfg.alerts.minLevel)) {
          this.emit({ ts: iso(at), event: 'alert', severity: level === 'critical' ? 'critical' : 'high', message: `${label(info.subject)} risk ${r.score} (${level}): ${r.reasons.slice(0, 3).map((x) => x.detail).join('; ')}`, subject: info.subject });
        }
      }
      scored.push({ key: info.key, subject: info.subject, score: r.score, level, reasons: r.reasons });
    }
    this.zones.onScores(scored, at, (k) => this.subjects.peek(k)?.score ?? 0);
    if (this.cfg.zones.performance.enabled && this.cfg.zones.performance.measured) this.measurePerformance(batch, at);
    this.traffic.closeWindow(at - this.cfg.risk.windowMs, at);
    this.housekeeping(at);
  }

  private measurePerformance(batch: ScoreBatch & { keys: SubjectInfo[] }, at: number): void {
    const a = 0.2;
    const p = this.cfg.zones.performance;
    const get = (svc: string) => {
      let e = this.perf.get(svc);
      if (!e) {
        if (this.perf.size >= 10_000) return undefined;
        e = { p95: 0, rin: 0, rout: 0, edges: new Map() };
        this.perf.set(svc, e);
      }
      return e;
    };
    const seen = new Set<string>();
    batch.items.forEach((it, i) => {
      const subj = batch.keys[i]!.subject;
      const f = it.features;
      if (subj.kind === 'service') {
        const e = get(subj.service);
        if (!e) return;
        seen.add(subj.service);
        e.p95 += a * (f[F.latencyP95]! - e.p95);
        e.rin += a * (f[F.requestsIn]! - e.rin);
        e.rout += a * (f[F.requestsOut]! - e.rout);
      } else if (subj.kind === 'edge' && subj.source !== 'ingress') {
        const e = get(subj.source);
        if (!e) return;
        const cur = e.edges.get(subj.destination) ?? 0;
        if (e.edges.size < 256 || e.edges.has(subj.destination)) e.edges.set(subj.destination, cur + a * (f[F.requestsIn]! - cur));
      }
    });
    // Quiet services and edges decay too.
    for (const [svc, e] of this.perf) {
      if (!seen.has(svc)) {
        e.p95 *= 1 - a;
        e.rin *= 1 - a;
        e.rout *= 1 - a;
      }
    }
    if (++this.perfWindows % 6 !== 0) return;
    const labelled = new Set(Object.entries(this.cfg.risk.services).filter(([, s]) => s.labels.some((l) => p.labels.includes(l))).map(([n]) => n));
    const critical = (svc: string) => {
      const e = this.perf.get(svc);
      return !!e && e.rin >= p.minRequestsPerWindow && e.p95 > 0 && e.p95 <= p.maxP95Ms;
    };
    // Union-find over edges a→b where a sends at least minShare of its calls to b and both ends
    // are latency-critical (measured or labelled).
    const parent = new Map<string, string>();
    const find = (x: string): string => {
      let r = x;
      while (parent.get(r) !== r) r = parent.get(r)!;
      parent.set(x, r);
      return r;
    };
    for (const [src, e] of this.perf) {
      if (!(critical(src) || labelled.has(src)) || e.rout <= 0) continue;
      for (const [dst, rate] of e.edges) {
        if (rate / e.rout < p.minShare || !(critical(dst) || labelled.has(dst))) continue;
        if (!parent.has(src)) parent.set(src, src);
        if (!parent.has(dst)) parent.set(dst, dst);
        const ra = find(src);
        const rb = find(dst);
        if (ra !== rb) parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb);
      }
    }
    const groups = new Map<string, string[]>();
    for (const k of [...parent.keys()].sort()) {
      const r = find(k);
      const g = groups.get(r);
      if (g) g.push(k);
      else groups.set(r, [k]);
    }
    this.zones.syncMeasuredPerformance([...groups.values()].filter((g) => g.length >= 2), at);
  }

  private housekeeping(now: number): void {
    this.zones.tick(now);
    for (const f of this.principals.expire(now)) {
      const key = `principal:${f.principal}`;
      const prev = this.principalScores.get(key)?.level;
      this.principalScores.delete(key);
      this.emit({ ts: iso(now), event: 'principal.cleared', principal: f.principal, reason: `no rule has held for ${Math.round(this.cfg.risk.principals.flagTtlMs / 1000)} s` });
      if (prev !== undefined && prev !== 'low') this.emit({ ts: iso(now), event: 'risk', subject: { kind: 'principal', principal: f.principal }, score: 0, level: 'low', previous: prev, reasons: [] });
    }
  }
}

/** Errors whose request id met a mesh decision later in the window are taken back now. */
function settleExcused(accs: Iterable<WindowAcc>, meshIds: ReadonlySet<string>): void {
  for (const a of accs) {
    const ids = a.errIds;
    if (!ids) continue;
    const flags = a.errFlags!;
    for (let i = 0; i < ids.length; i++) if (meshIds.has(ids[i]!)) a.excuse(flags[i]!);
    a.errIds = null;
    a.errFlags = null;
  }
}
