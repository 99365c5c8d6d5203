import { EngineCore, normaliseKey, subjectKey, type EngineSnapshot, type Explanation, type ScoreFn } from './engine.js';
import { defaultEngineConfig, type EngineConfig } from './config.js';
import { parseFeedText } from './feeds.js';
import { parseRecord } from './records.js';
import type { EngineEvent, FlaggedPrincipal, PublicZone, SubjectScore, TelemetryRecord } from './types.js';
import type { CreateZoneRequest } from '../zones/manager.js';
import { publicZone } from '../zones/manager.js';
import { createScoringPool, type ScoringPool } from './score-pool.js';
import type { TrafficReport } from '../traffic/analyzer.js';

/**
 * The Risk Assessment Engine and zone manager as one deterministic object. Time enters only
 * through record timestamps and `advance(nowMs)`; the live manager calls advance from a timer with
 * Date.now(), `etz replay` with the trace's clock. A thin public class over EngineCore.
 */
export interface EngineOptions {
  /**
   * Run the batch scoring step in a piscina worker (the live manager): advance() then hands each
   * closed window to the worker and applies the scores when they come back, so detectors never
   * run on the caller's event loop. Call close() to stop the worker. Replay and tests score inline.
   */
  worker?: boolean;
  /** Where a failed background scoring step is reported (worker mode). */
  onError?: (err: unknown) => void;
}

export class RiskEngine {
  readonly #core: EngineCore;
  readonly #pool: ScoringPool | undefined;
  readonly #onError: (err: unknown) => void;
  #pending: Promise<void> | null = null;

  constructor(config: EngineConfig = defaultEngineConfig(), opts: EngineOptions = {}) {
    this.#core = new EngineCore(config);
    if (opts.worker) this.#pool = createScoringPool(config);
    this.#onError = opts.onError ?? (() => {});
  }

  /** Stop the scoring worker (worker mode); waits for the batch in flight. */
  async close(): Promise<void> {
    if (this.#pending) await this.#pending;
    await this.#pool?.close();
  }

  /** Resolves when the background scoring step in flight (worker mode) has been applied. */
  async settled(): Promise<void> {
    while (this.#pending) await this.#pending;
  }

  get config(): EngineConfig {
    return this.#core.cfg;
  }

  /** Trace/engine time: the latest `advance` argument (epoch ms). */
  get now(): number {
    return this.#core.now;
  }

  get counters(): Readonly<{ records: number; late: number; windows: number; scored: number }> {
    return this.#core.counters;
  }

  /** Subscribe to replay-contract events; returns an unsubscribe function. */
  on(listener: (e: EngineEvent) => void): () => void {
    return this.#core.on(listener);
  }

  /** Feed one validated record. Records older than the last closed window are refused as late. */
  ingest(record: TelemetryRecord): { ok: boolean; reason?: 'late' } {
    return this.#core.ingest(record);
  }

  /** Validate an untrusted decoded JSON value and feed it; throws RecordError naming the field. */
  ingestJson(value: unknown): { ok: boolean; reason?: 'late' } {
    return this.#core.ingest(parseRecord(value));
  }

  /**
   * Load a feed document: a Trivy JSON report (give `service`), a STIX 2.1 bundle, an indicator
   * list `{ indicators: [...] }` or a plain IP/CIDR blocklist. Throws RecordError when invalid.
   * With `feed` (a file path, an upload name) the feed's previous content is replaced.
   */
  loadFeed(text: string, opts: { service?: string; source?: string; ts?: number; feed?: string } = {}): { kind: 'vuln' | 'intel'; count: number } {
    const rec = parseFeedText(text, { ts: opts.ts ?? this.now, ...(opts.service ? { service: opts.service } : {}), ...(opts.source ? { source: opts.source } : {}) });
    if (!Number.isFinite(rec.ts)) rec.ts = 0;
    // A named feed replaces its previous content (reload); an anonymous one adds to what is known.
    if (opts.feed !== undefined) this.#core.replaceFeed(opts.feed, rec);
    else this.#core.ingest(rec);
    return rec.kind === 'vuln' ? { kind: 'vuln', count: rec.findings.length } : { kind: 'intel', count: rec.indicators.length };
  }

  /** Move the clock: close windows, score inline, run hysteresis, cool-downs and TTLs. */
  advance(nowMs: number): void {
    if (!this.#pool) {
      this.#core.advance(nowMs);
      return;
    }
    // Worker mode: one step in flight at a time; a tick that finds one running is skipped (the
    // next tick covers its windows), so nothing queues up behind a slow step.
    if (this.#pending) return;
    this.#pending = this.#core
      .advanceAsync(nowMs, this.#pool.score)
      .catch((err: unknown) => this.#onError(err))
      .finally(() => {
        this.#pending = null;
      });
  }

  /**
   * As advance(), with the batch scoring step run by `score` (e.g. a worker pool: see
   * createScoringPool). Concurrent calls while one is in flight are ignored.
   */
  advanceAsync(nowMs: number, score: ScoreFn): Promise<void> {
    return this.#core.advanceAsync(nowMs, score);
  }

  scores(): SubjectScore[] {
    return this.#core.scores();
  }

  explain(subject: string): Explanation | null {
    return this.#core.explain(subject);
  }

  zones(): PublicZone[] {
    return this.#core.zones.list().map(publicZone);
  }

  /** Full zone records (with triggers and calm state), for compileZoneResources and persistence. */
  zoneRecords() {
    return this.#core.zones.list();
  }

  flaggedPrincipals(): FlaggedPrincipal[] {
    return this.#core.flaggedPrincipals();
  }

  traffic(windowMs: number): TrafficReport {
    return this.#core.trafficReport(windowMs);
  }

  createZone(req: CreateZoneRequest, nowMs?: number): PublicZone {
    return this.#core.createZone(req, nowMs);
  }

  dissolveZone(id: string, reason: string, nowMs?: number): PublicZone {
    return this.#core.dissolveZone(id, reason, nowMs);
  }

  pinZone(id: string, reason: string, nowMs?: number, pinned = true): PublicZone {
    return this.#core.pinZone(id, pinned, reason, nowMs);
  }

  extendZone(id: string, ttlMs: number, reason: string, nowMs?: number): PublicZone {
    return this.#core.extendZone(id, ttlMs, reason, nowMs);
  }

  clearPrincipal(principal: string, reason: string, nowMs?: number): boolean {
    return this.#core.clearPrincipal(principal, reason, nowMs);
  }

  /**
   * Durable state: zones, flags, vulnerability findings and the subjects carrying risk (small:
   * persist it on every zone change). `allSubjects` adds every tracked subject with the edges it
   * has called; `baselines` adds those and the learned baselines of the inline scorer.
   */
  snapshot(opts?: { baselines?: boolean; allSubjects?: boolean }): EngineSnapshot {
    return this.#core.snapshot(opts);
  }

  restore(snapshot: EngineSnapshot): void {
    this.#core.restore(snapshot);
  }
}

export function createEngine(config?: EngineConfig, opts?: EngineOptions): RiskEngine {
  return new RiskEngine(config, opts);
}

export { subjectKey, normaliseKey };
export type { EngineSnapshot, Explanation, ScoreFn };
export * from './config.js';
export * from './types.js';
export { parseRecord, parseRecordLine, parseTimestamp, RecordError } from './records.js';
export { parseTrivyReport, parseBlocklist, parseStixBundle, parseFeedText, IntelIndex } from './feeds.js';
export type { CreateZoneRequest } from '../zones/manager.js';
export type { TrafficReport } from '../traffic/analyzer.js';
export { createScoringPool, type ScoringPool };
export { riskList, riskExplain, trafficReport } from './api.js';
export { startFeedReloader, type FeedReloader, type FeedStatus } from './feed-loader.js';
