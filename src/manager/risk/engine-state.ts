import { LRUCache } from 'lru-cache';
import type { EngineConfig } from './config.js';
import { FEATURES, WindowAcc } from './features.js';
import { IntelIndex } from './feeds.js';
import { PrincipalTracker } from './principals.js';
import { Scorer, type ScoreBatch, type ScoreResult } from './scorer.js';
import type { EngineEvent, FlaggedPrincipal, Level, Reason, Subject, SubjectKind, SubjectScore, VulnFinding } from './types.js';
import { TrafficRecorder } from '../traffic/analyzer.js';
import { ZoneManager, type InstanceRisk, type ZoneSnapshot } from '../zones/manager.js';

// The engine's shared state lives in one base class so that ingestion, scoring and the operator
// surface can sit in separate files while still touching the same maps without copies.

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

export interface Slot {
  info: SubjectInfo;
  acc: WindowAcc;
}

/**
 * One open window. Subjects are reached through nested maps keyed by the record's own strings, so
 * the per-record path builds no key strings; the subject registry (an LRU) is touched once per
 * subject per window, when its slot is created.
 */
export interface Open {
  start: number;
  slots: Map<string, Slot>;
  services: Map<string, Slot>;
  instances: Map<string, Map<string, Slot>>;
  edges: Map<string, Map<string, Slot>>;
  /** Requests entering the mesh from outside (the load that drives everything else). */
  ingress: number;
  /** Request ids that met a mesh decision (a denial, an upstream the sidecar could not use) in this window. */
  meshIds: Set<string> | null;
  /**
   * Per destination service: requests not counted against it because the mesh refused them or
   * their caller is the suspect (a new edge, a caller at high risk), and from whom.
   */
  excluded: Map<string, { n: number; from: Set<string> }> | null;
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

export const MAX_SEEN = 256;

export class EngineState {
  readonly cfg: EngineConfig;
  readonly scorer: Scorer;
  readonly zones: ZoneManager;
  readonly traffic: TrafficRecorder;
  protected readonly listeners: Array<(e: EngineEvent) => void> = [];
  protected readonly subjects: LRUCache<string, SubjectInfo>;
  protected readonly principals: PrincipalTracker;
  protected readonly principalScores: LRUCache<string, SubjectScore>;
  protected readonly intel = new IntelIndex();
  protected readonly vulns = new Map<string, VulnFinding[]>();
  protected readonly instances = new Map<string, Set<string>>();
  protected readonly alerted: LRUCache<string, 1>;
  protected readonly open = new Map<number, Open>();
  protected nextWindow: number | null = null;
  protected watermark = -Infinity;
  protected ingressMean = 0;
  // Measured performance zones: smoothed per-service latency/volume and per-edge volume.
  protected readonly perf = new Map<string, { p95: number; rin: number; rout: number; edges: Map<string, number> }>();
  protected perfWindows = 0;
  protected ingressWindows = 0;
  protected started = false;
  protected busy = false;
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
      instances: (s) => this.instanceRisks(s),
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

  protected info(subject: Subject, key: string): SubjectInfo {
    let s = this.subjects.get(key);
    if (!s) {
      s = { key, subject, kind: subject.kind, windows: 0, score: 0, level: 'low', reasons: [], at: 0, warmingUp: true, features: null, seenDests: null, seenPaths: null, rateMean: 0 };
      this.subjects.set(key, s);
    }
    return s;
  }

  protected instanceRisks(service: string): InstanceRisk[] {
    const out: InstanceRisk[] = [];
    for (const name of this.instances.get(service) ?? []) {
      const s = this.subjects.peek(`instance:${service}/${name}`);
      if (!s || s.at === 0 || s.subject.kind !== 'instance') continue;
      out.push({ key: s.key, subject: s.subject, score: s.score, level: s.level, reasons: s.reasons, at: s.at });
      if (out.length >= 1000) break;
    }
    return out;
  }

  protected serviceCount(): number {
    let n = 0;
    for (const s of this.subjects.values()) if (s.kind === 'service' && s.key !== 'service:ingress') n++;
    return n;
  }

  levelOf(score: number): Level {
    const l = this.cfg.risk.levels;
    return score >= l.critical ? 'critical' : score >= l.high ? 'high' : score >= l.medium ? 'medium' : 'low';
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

export function instanceSubject(service: string, instance: string, version: string | undefined): Subject {
  return version === undefined ? { kind: 'instance', service, instance } : { kind: 'instance', service, instance, version };
}

export function stripPoints(r: Reason): Reason {
  const out: Reason = { detector: r.detector, detail: r.detail };
  if (r.feature !== undefined) out.feature = r.feature;
  if (r.points !== undefined) out.points = r.points;
  return out;
}

export function featureName(i: number): string {
  return FEATURES[i] ?? `f${i}`;
}

export function rankLevel(l: Level): number {
  return l === 'critical' ? 3 : l === 'high' ? 2 : l === 'medium' ? 1 : 0;
}
