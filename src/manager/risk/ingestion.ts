import { ERR_4XX, ERR_5XX, ERR_AUTH, WindowAcc } from './features.js';
import { isUserAuthFailure, meshCause } from './attribution.js';
import type { PrincipalVerdict } from './principals.js';
import type { EngineEvent, IntelRecord, LogRecord, RequestRecord, Subject, SubjectScore, TelemetryRecord, VulnRecord } from './types.js';
import { iso } from '../zones/manager.js';
import { EngineState, MAX_SEEN, instanceSubject, rankLevel, subjectKey, type IngestResult, type Open, type Slot, type SubjectInfo } from './engine-state.js';

const NOVELTY_WINDOWS = 6;
const MAX_MESH_IDS = 4096;
const INTEL_FACTOR = { low: 0.15, medium: 0.4, high: 0.75, critical: 1 } as const;

// Record intake is the hot path; it only accumulates into open windows and raises the per-request
// intel and principal verdicts, leaving every per-window decision to the scoring step.
export class EngineIngest extends EngineState {
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
      w = { start, slots: new Map(), services: new Map(), instances: new Map(), edges: new Map(), ingress: 0, meshIds: null, excluded: null };
      this.open.set(start, w);
    }
    return w;
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
    const cause = meshCause(r.reason);
    const is5xx = status >= 500 || status === 0;
    const is4xx = status >= 400 && status < 500;
    const auth = isUserAuthFailure(status, r.reason);
    const flags = (is5xx ? ERR_5XX : 0) | (is4xx ? ERR_4XX : 0) | (auth ? ERR_AUTH : 0);
    const bi = r.bytesIn ?? 0;
    const bo = r.bytesOut ?? 0;
    const id = r.requestId;

    const w = this.window(start);
    if (src === 'ingress') w.ingress++;
    if (cause !== null && id !== undefined) {
      w.meshIds ??= new Set();
      if (w.meshIds.size < MAX_MESH_IDS) w.meshIds.add(id);
    }
    // An error whose request met a mesh decision further down the call chain is that decision's
    // consequence, not this subject's doing; one that arrives before the decision's record is
    // settled when the window closes.
    const meshIds = w.meshIds;
    const excusedNow = flags !== 0 && cause === null && id !== undefined && meshIds !== null && meshIds.has(id);
    const inbound = (a: WindowAcc) => {
      a.requestsIn++;
      if (excusedNow) a.excused++;
      else if (flags !== 0) {
        if (is5xx) a.err5xx++;
        if (is4xx) a.err4xx++;
        if (auth) a.authFailures++;
        if (cause === null && id !== undefined) a.noteError(id, flags);
      }
      a.bytesIn += bi;
      a.bytesOut += bo;
      a.latency(r.durationMs);
    };

    // Source (outbound behaviour) first: its service and, when the record names it, the instance
    // that made the call — new edges, fan-out and data sent belong to the workload that sent them.
    // Traffic from outside has no source subject.
    let suspect = false;
    if (src !== 'ingress') {
      const sl = this.service(w, src);
      const sInfo = sl.info;
      const sAcc = sl.acc;
      const high = this.cfg.risk.levels.high;
      sAcc.requestsOut++;
      sAcc.bytesOut += bi;
      const novel = this.novel(sInfo, dst, start, sInfo.score);
      if (sAcc.addDest(dst) && novel) (sAcc.newDests ??= []).push(dst);
      // The calling instance, when the record names it, answers for its own calls: its siblings'
      // traffic is not suspect because the service's score is high on its account.
      suspect = novel || (r.source.instance === undefined && sInfo.score >= high);
      if (r.source.instance !== undefined) {
        const il = this.instance(w, src, r.source.instance, r.source.version);
        const ia = il.acc;
        ia.requestsOut++;
        ia.bytesOut += bi;
        // Novel for the instance means never called by its service during the baseline: a fresh
        // instance calling what its siblings call is not news.
        const inovel = this.novel(sInfo, dst, start, il.info.score);
        if (ia.addDest(dst) && inovel) (ia.newDests ??= []).push(dst);
        if (inovel || il.info.score >= high) suspect = true;
      }
    }

    // Destination (inbound behaviour) with path novelty. A call the mesh refused never reached
    // it, and traffic from a suspect caller is judged on the caller: a victim flooded by a
    // compromised workload is not the one to contain.
    if (cause === 'deny' || suspect) {
      w.excluded ??= new Map();
      let x = w.excluded.get(dst);
      if (!x && w.excluded.size < MAX_SEEN) w.excluded.set(dst, (x = { n: 0, from: new Set() }));
      if (x) {
        x.n++;
        if (x.from.size < 8) x.from.add(r.source.instance ?? src);
      }
    } else {
      const d = this.service(w, dst);
      const dInfo = d.info;
      const dAcc = d.acc;
      inbound(dAcc);
      if (r.principal !== undefined) dAcc.addPrincipal(r.principal);
      if (dAcc.addPath(r.path)) {
        if (dInfo.windows >= this.cfg.risk.warmupWindows && dInfo.seenPaths && !dInfo.seenPaths.has(r.path) && dInfo.seenPaths.size < MAX_SEEN * 2) dAcc.newPaths++;
      }
      if (r.destination.instance !== undefined) inbound(this.instance(w, dst, r.destination.instance, r.destination.version).acc);
    }

    // Edge: the pair's behaviour, whatever became of the call.
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

  /**
   * Whether `dst` is a destination `caller` (a service's info) never called during its baseline.
   * -1 marks destinations learned during warm-up. A destination first seen after warm-up stays
   * "new" for a few windows, so hysteresis can see it more than once, and for as long as the
   * subject calling it (`score`: the service's or the instance's) stays at high risk, so an
   * attack cannot make its own edges familiar.
   */
  private novel(caller: SubjectInfo, dst: string, start: number, score: number): boolean {
    if (caller.windows < this.cfg.risk.warmupWindows) return false;
    const first = caller.seenDests?.get(dst);
    return first === undefined || (first >= 0 && (start - first < NOVELTY_WINDOWS * this.cfg.risk.windowMs || score >= this.cfg.risk.levels.high));
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
}
