import { LRUCache } from 'lru-cache';
import type { EngineConfig } from './config.js';
import { F, FEATURES, NF, WindowAcc } from './features.js';
import { IntelIndex } from './feeds.js';
import { PrincipalTracker, type PrincipalVerdict } from './principals.js';
import { Scorer, type ScoreBatch, type ScoreItem, type ScoreResult } from './scorer.js';
import type { EngineEvent, FlaggedPrincipal, IntelRecord, Level, LogRecord, Reason, RequestRecord, Subject, SubjectKind, SubjectScore, TelemetryRecord, VulnFinding, VulnRecord } from './types.js';
import { TrafficRecorder, type TrafficReport } from '../traffic/analyzer.js';
import { ZoneManager, iso, label, publicZone, type CreateZoneRequest, type ZoneSnapshot } from '../zones/manager.js';

/**
 * The Risk Assessment Engine's private core. Deterministic: no wall clock and no timers inside —
 * `ingest` takes records stamped with their own time and `advance(now)` moves the clock, closing
 * windows whose end is older than now − allowedLateness. `etz replay` drives it from the trace;
 * the live manager from a timer and sidecar telemetry. The public face is RiskEngine (index.ts).
 */

export interface SubjectInfo {
  key: string;
  subject: Subject;
  kind: SubjectKind;
  /** Closed windows in which the subject was active. */
  windows: number;
  score: number;
  level: Level;
  reasons: Reason[];
  at: number;
  warmingUp: boolean;
  features: Float64Array | null;
  /** Service subjects: destinations seen (novelty), and when each new one was first seen. */
  seenDests: Map<string, number> | null;
  seenPaths: Set<string> | null;
  /** Service subjects: EWMA of inbound requests per window, for the mesh load factor. */
  rateMean: number;
}

interface Slot {
  info: SubjectInfo;
  acc: WindowAcc;
}

/**
 * One open window. Subjects are reached through nested maps keyed by the record's own strings, so
 * the per-record path builds no key strings; the subject registry (an LRU) is touched once per
 * subject per window, when its slot is created.
 */
interface Open {
  start: number;
  slots: Map<string, Slot>;
  services: Map<string, Slot>;
  instances: Map<string, Map<string, Slot>>;
  edges: Map<string, Map<string, Slot>>;
  /** Requests entering the mesh from outside (the load that drives everything else). */
  ingress: number;
}

export type ScoreFn = (batch: ScoreBatch) => ScoreResult[] | Promise<ScoreResult[]>;

export interface IngestResult {
  ok: boolean;
  /** Why a record was not used (late: its window has already been scored). */
  reason?: 'late';
}

export interface Explanation extends SubjectScore {
  features: Record<string, number> | null;
  zones: string[];
  flagged?: FlaggedPrincipal;
}

export interface EngineSnapshot {
  version: 1;
  watermark: number;
  nextWindow: number | null;
  zones: ZoneSnapshot;
  principals: FlaggedPrincipal[];
  subjects: Array<{ key: string; subject: Subject; windows: number; score: number; level: Level; reasons: Reason[]; at: number; dests: Array<[string, number]> }>;
  baselines?: Array<[string, number, number[], number[]]>;
  vulns: Array<[string, VulnFinding[]]>;
}

const MAX_SEEN = 256;
const NOVELTY_WINDOWS = 6;
const SEVERITY_FACTOR = { LOW: 0.1, MEDIUM: 0.35, HIGH: 0.7, CRITICAL: 1 } as const;
const INTEL_FACTOR = { low: 0.15, medium: 0.4, high: 0.75, critical: 1 } as const;

export class EngineCore {
  readonly cfg: EngineConfig;
  readonly scorer: Scorer;
  readonly zones: ZoneManager;
  readonly traffic: TrafficRecorder;
  private readonly listeners: Array<(e: EngineEvent) => void> = [];
  private readonly subjects: LRUCache<string, SubjectInfo>;
  private readonly principals: PrincipalTracker;
  private readonly principalScores: LRUCache<string, SubjectScore>;
  private readonly intel = new IntelIndex();
  private readonly vulns = new Map<string, VulnFinding[]>();
  private readonly instances = new Map<string, Set<string>>();
  private readonly alerted: LRUCache<string, 1>;
  private readonly open = new Map<number, Open>();
  private nextWindow: number | null = null;
  private watermark = -Infinity;
  private ingressMean = 0;
  // Measured performance zones: smoothed per-service latency/volume and per-edge volume.
  private readonly perf = new Map<string, { p95: number; rin: number; rout: number; edges: Map<string, number> }>();
  private perfWindows = 0;
  private ingressWindows = 0;
  private started = false;
  private busy = false;
  readonly counters = { records: 0, late: 0, windows: 0, scored: 0 };

  constructor(cfg: EngineConfig) {
    this.cfg = cfg;
    this.scorer = new Scorer(cfg);
    this.subjects = new LRUCache({ max: cfg.risk.maxSubjects });
    this.principals = new PrincipalTracker(cfg.risk.principals, cfg.detectors.priors.intelWeight);
    this.principalScores = new LRUCache({ max: cfg.risk.principals.maxTracked });
    this.alerted = new LRUCache({ max: 10_000 });
    this.traffic = new TrafficRecorder(cfg.risk.windowMs);
    this.zones = new ZoneManager(cfg, (e) => this.emit(e), {
      serviceCount: () => this.serviceCount(),
      instanceCount: (s) => this.instances.get(s)?.size ?? 0,
    });
  }

  on(fn: (e: EngineEvent) => void): () => void {
    this.listeners.push(fn);
    return () => {
      const i = this.listeners.indexOf(fn);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  emit(e: EngineEvent): void {
    if (e.event === 'risk') this.traffic.noteAnomaly(e);
    for (const fn of this.listeners) fn(e);
  }

  get now(): number {
    return this.watermark + this.cfg.risk.allowedLatenessMs;
  }

  // ---------------------------------------------------------------------------------------- ingest

  ingest(rec: TelemetryRecord): IngestResult {
    if (!this.started) this.start(rec.ts);
    const W = this.cfg.risk.windowMs;
    const start = rec.ts - (((rec.ts % W) + W) % W);
    if (this.nextWindow !== null && start < this.nextWindow) {
      this.counters.late++;
      return { ok: false, reason: 'late' };
    }
    this.counters.records++;
    switch (rec.kind) {
      case 'request':
        this.onRequest(rec, start);
        break;
      case 'log':
        this.onLog(rec, start);
        break;
      case 'vuln':
        this.vulns.set(rec.service, rec.findings);
        this.touch({ kind: 'service', service: rec.service }, start);
        break;
      case 'intel':
        for (const ind of rec.indicators) this.intel.add(ind);
        for (const ind of rec.indicators) {
          if (ind.type === 'principal') {
            const pts = Math.round(this.cfg.detectors.priors.intelWeight * INTEL_FACTOR[ind.severity]);
            this.applyVerdict({ principal: ind.value, action: 'block', reason: `principal is on threat-intel list ${ind.source ?? ''}`.trim(), score: pts, reasons: [{ detector: 'intel', detail: `threat-intel indicator (${ind.severity})`, points: pts }] }, rec.ts);
          }
        }
        break;
    }
    return { ok: true };
  }

  /** Replace what a named feed (a file, an API upload) said before with its new content. */
  replaceFeed(feed: string, rec: IntelRecord | VulnRecord): void {
    if (rec.kind === 'vuln') {
      this.ingest(rec);
      return;
    }
    this.intel.removeFeed(feed);
    for (const ind of rec.indicators) this.intel.add(ind, feed);
  }

  private start(ts: number): void {
    this.started = true;
    const W = this.cfg.risk.windowMs;
    this.nextWindow = ts - (((ts % W) + W) % W);
    this.zones.applyPolicies(ts);
  }

  private window(start: number): Open {
    let w = this.open.get(start);
    if (!w) {
      w = { start, slots: new Map(), services: new Map(), instances: new Map(), edges: new Map(), ingress: 0 };
      this.open.set(start, w);
    }
    return w;
  }

  private info(subject: Subject, key: string): SubjectInfo {
    let s = this.subjects.get(key);
    if (!s) {
      s = { key, subject, kind: subject.kind, windows: 0, score: 0, level: 'low', reasons: [], at: 0, warmingUp: true, features: null, seenDests: null, seenPaths: null, rateMean: 0 };
      this.subjects.set(key, s);
    }
    return s;
  }

  private slot(w: Open, subject: Subject): Slot {
    const key = subjectKey(subject);
    let sl = w.slots.get(key);
    if (!sl) {
      sl = { info: this.info(subject, key), acc: new WindowAcc() };
      w.slots.set(key, sl);
    }
    return sl;
  }

  private service(w: Open, name: string): Slot {
    let sl = w.services.get(name);
    if (!sl) {
      sl = this.slot(w, { kind: 'service', service: name });
      w.services.set(name, sl);
    }
    return sl;
  }

  private instance(w: Open, service: string, instance: string, version: string | undefined): Slot {
    let m = w.instances.get(service);
    if (!m) {
      m = new Map();
      w.instances.set(service, m);
    }
    let sl = m.get(instance);
    if (!sl) {
      this.noteInstance(service, instance);
      sl = this.slot(w, instanceSubject(service, instance, version));
      m.set(instance, sl);
    }
    return sl;
  }

  private edge(w: Open, src: string, dst: string): Slot {
    let m = w.edges.get(src);
    if (!m) {
      m = new Map();
      w.edges.set(src, m);
    }
    let sl = m.get(dst);
    if (!sl) {
      sl = this.slot(w, { kind: 'edge', source: src, destination: dst });
      m.set(dst, sl);
    }
    return sl;
  }

  private touch(subject: Subject, start: number): WindowAcc {
    return this.slot(this.window(start), subject).acc;
  }

  private onRequest(r: RequestRecord, start: number): void {
    this.traffic.record(r, start);
    const src = r.source.service;
    const dst = r.destination.service;
    const status = r.status;
    const is5xx = status >= 500 || status === 0;
    const is4xx = status >= 400 && status < 500;
    const auth = status === 401 || status === 403;
    const bi = r.bytesIn ?? 0;
    const bo = r.bytesOut ?? 0;

    const inbound = (a: WindowAcc) => {
      a.requestsIn++;
      if (is5xx) a.err5xx++;
      if (is4xx) a.err4xx++;
      if (auth) a.authFailures++;
      a.bytesIn += bi;
      a.bytesOut += bo;
      a.latency(r.durationMs);
    };

    const w = this.window(start);
    if (src === 'ingress') w.ingress++;

    // Destination service (inbound behaviour) with path novelty.
    const d = this.service(w, dst);
    const dInfo = d.info;
    const dAcc = d.acc;
    inbound(dAcc);
    if (r.principal !== undefined) dAcc.addPrincipal(r.principal);
    if (dAcc.addPath(r.path)) {
      if (dInfo.windows >= this.cfg.risk.warmupWindows && dInfo.seenPaths && !dInfo.seenPaths.has(r.path) && dInfo.seenPaths.size < MAX_SEEN * 2) dAcc.newPaths++;
    }
    if (r.destination.instance !== undefined) inbound(this.instance(w, dst, r.destination.instance, r.destination.version).acc);

    // Source service (outbound behaviour) with edge novelty; traffic from outside has no source subject.
    if (src !== 'ingress') {
      const sl = this.service(w, src);
      const sInfo = sl.info;
      const sAcc = sl.acc;
      sAcc.requestsOut++;
      if (sAcc.addDest(dst) && sInfo.windows >= this.cfg.risk.warmupWindows) {
        // -1 marks destinations learned during warm-up. A destination first seen after warm-up
        // stays "new" for a few windows, so hysteresis can see it more than once, and for as long
        // as the caller stays at high risk, so an attack cannot make its own edges familiar.
        const first = sInfo.seenDests?.get(dst);
        if (first === undefined || (first >= 0 && (start - first < NOVELTY_WINDOWS * this.cfg.risk.windowMs || sInfo.score >= this.cfg.risk.levels.high))) (sAcc.newDests ??= []).push(dst);
      }
      if (r.source.instance !== undefined) {
        const ia = this.instance(w, src, r.source.instance, r.source.version).acc;
        ia.requestsOut++;
        ia.addDest(dst);
      }
    }

    // Edge.
    inbound(this.edge(w, src, dst).acc);

    // Threat intel on the caller, and per-request principal rules.
    const now = r.ts;
    if (this.intel.size > 0) {
      const idHit = this.intel.matchIdentity(r.source.identity, now);
      if (idHit && src !== 'ingress') this.alertOnce(`intel-id:${src}`, idHit.severity === 'critical' ? 'critical' : 'high', `${src} presents identity ${r.source.identity} which is on a threat-intel list`, { kind: 'service', service: src }, now);
    }
    if (r.principal !== undefined) {
      const ipHit = this.intel.size > 0 ? this.intel.matchIp(r.source.ip, now) : undefined;
      const pHit = this.intel.size > 0 ? this.intel.matchPrincipal(r.principal, now) : undefined;
      const v = this.principals.onRequest(r, ipHit, pHit);
      if (v) this.applyVerdict(v, now);
    } else if (this.intel.size > 0 && r.source.ip !== undefined) {
      const ipHit = this.intel.matchIp(r.source.ip, now);
      if (ipHit) this.alertOnce(`intel-ip:${r.source.ip}`, ipHit.severity === 'critical' ? 'critical' : 'high', `request to ${dst} from ${r.source.ip}, which matches threat-intel indicator ${ipHit.value}`, { kind: 'service', service: dst }, now);
    }
  }

  private onLog(r: LogRecord, start: number): void {
    if (r.level !== 'error' && r.level !== 'fatal') {
      this.touch({ kind: 'service', service: r.service }, start);
      return;
    }
    this.touch({ kind: 'service', service: r.service }, start).errorLogs++;
    if (r.instance !== undefined) this.touch(instanceSubject(r.service, r.instance, undefined), start).errorLogs++;
  }

  private noteInstance(service: string, instance: string): void {
    let s = this.instances.get(service);
    if (!s) {
      s = new Set();
      this.instances.set(service, s);
    }
    if (s.size < 10_000) s.add(instance);
  }

  private applyVerdict(v: PrincipalVerdict, now: number): void {
    const subject: Subject = { kind: 'principal', principal: v.principal };
    const key = subjectKey(subject);
    const prev = this.principalScores.get(key);
    const level = this.levelOf(v.score);
    if (!prev || prev.score < v.score) {
      const s: SubjectScore = { subject, key, score: v.score, level, reasons: v.reasons, at: now, warmingUp: false };
      this.principalScores.set(key, s);
      const prevLevel = prev?.level ?? 'low';
      if (prevLevel !== level) this.emit({ ts: iso(now), event: 'risk', subject, score: v.score, level, previous: prevLevel, reasons: v.reasons });
    }
    if (this.principals.flag(v, now)) {
      const e: EngineEvent = { ts: iso(now), event: 'principal.flagged', principal: v.principal, action: v.action, reason: v.reason };
      if (v.to) e.to = v.to;
      this.emit(e);
      if (rankLevel(level) >= rankLevel(this.cfg.alerts.minLevel)) this.emit({ ts: iso(now), event: 'alert', severity: level === 'critical' ? 'critical' : 'high', message: `principal ${v.principal} flagged (${v.action}): ${v.reason}`, subject });
    }
  }

  private alertOnce(key: string, severity: 'high' | 'critical', message: string, subject: Subject, now: number): void {
    if (this.alerted.has(key)) return;
    this.alerted.set(key, 1);
    this.emit({ ts: iso(now), event: 'alert', severity, message, subject });
  }

  private serviceCount(): number {
    let n = 0;
    for (const s of this.subjects.values()) if (s.kind === 'service' && s.key !== 'service:ingress') n++;
    return n;
  }

  levelOf(score: number): Level {
    const l = this.cfg.risk.levels;
    return score >= l.critical ? 'critical' : score >= l.high ? 'high' : score >= l.medium ? 'medium' : 'low';
  }

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
    // Mesh load factor: the median service's load against its own baseline. A load change across
    // the mesh moves the median; one misbehaving service does not.
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

export function subjectKey(s: Subject): string {
  switch (s.kind) {
    case 'service':
      return `service:${s.service}`;
    case 'instance':
      return `instance:${s.service}/${s.instance}`;
    case 'edge':
      return `edge:${s.source}->${s.destination}`;
    case 'principal':
      return `principal:${s.principal}`;
  }
}

/** Accepts `service:x`, `edge:a->b`, `instance:svc/inst`, `principal:p`, or a bare service name. */
export function normaliseKey(key: string): string {
  if (/^(service|instance|edge|principal):/.test(key)) return key;
  if (key.includes('->')) return `edge:${key}`;
  return `service:${key}`;
}

function instanceSubject(service: string, instance: string, version: string | undefined): Subject {
  return version === undefined ? { kind: 'instance', service, instance } : { kind: 'instance', service, instance, version };
}

function stripPoints(r: Reason): Reason {
  const out: Reason = { detector: r.detector, detail: r.detail };
  if (r.feature !== undefined) out.feature = r.feature;
  if (r.points !== undefined) out.points = r.points;
  return out;
}

function featureName(i: number): string {
  return FEATURES[i] ?? `f${i}`;
}

function rankLevel(l: Level): number {
  return l === 'critical' ? 3 : l === 'high' ? 2 : l === 'medium' ? 1 : 0;
}
