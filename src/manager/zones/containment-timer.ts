import { Counter, Gauge, Histogram, type Registry } from '../../core/metrics.js';
import type { Logger } from '../../core/logger.js';
import type { AuditLog } from '../audit.js';
import type { ConfigHub } from '../pubsub/hub.js';
import type { Rollout } from '../pubsub/rollout.js';
import type { EngineEvent } from '../risk/types.js';

/**
 * Time to containment: from the first anomalous window of a risk-made containment zone
 * (`detectedAt`) to the moment every targeted sidecar has ACKed the first config version that
 * carries the zone. The engine aggregates records into windows and keeps no per-record time, so
 * the start of the first anomalous window is the earliest anomaly time it knows.
 *
 * Pending measurements live only in memory (a restart forgets them) and in a bounded map: a
 * flood of zones can cost at most `maxPending` entries, the oldest being dropped and counted.
 */

export type ContainmentOutcome = 'enforced' | 'dissolved' | 'nacked' | 'timeout' | 'evicted' | 'no_sidecars';

interface Pending {
  id: string;
  detectedAt: number;
  /** Wall clock when the engine created the zone: start of the push split. */
  createdAt: number;
  version?: number;
}

export interface ContainmentTimerOptions {
  hub: ConfigHub;
  metrics: Registry;
  audit: AuditLog;
  logger: Logger;
  maxPending?: number;
  /** A zone not in force this long after its creation is dropped as `timeout`. */
  timeoutMs?: number;
  now?: () => number;
}

// Seconds: a rollout to a few sidecars on one host takes tens of ms, detection adds windows of
// 10 s each, and beyond a minute the number only needs to say "too slow".
const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60];

export class ContainmentTimer {
  private readonly pending = new Map<string, Pending>();
  private readonly maxPending: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly total: Histogram;
  private readonly push: Histogram;
  private readonly last: Gauge;
  private readonly outcomes: Counter;
  private readonly onPublished = (version: number) => this.published(version);
  private readonly onRollout = (r: Rollout) => this.rolloutSettled(r);
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: ContainmentTimerOptions) {
    this.maxPending = o.maxPending ?? 256;
    this.timeoutMs = o.timeoutMs ?? 120_000;
    this.now = o.now ?? Date.now;
    const registers = [o.metrics];
    this.total = new Histogram({ name: 'etz_time_to_containment_seconds', help: 'From the first anomalous window of a containment zone to every targeted sidecar ACKing it', buckets: BUCKETS, registers });
    this.push = new Histogram({ name: 'etz_containment_push_seconds', help: 'From the engine creating a containment zone to every targeted sidecar ACKing it', buckets: BUCKETS, registers });
    this.last = new Gauge({ name: 'etz_last_time_to_containment_seconds', help: 'Time to containment of the most recently enforced containment zone', registers });
    this.outcomes = new Counter({ name: 'etz_containment_measurements_total', help: 'Containment zones tracked for time to containment, by how the measurement ended', labelNames: ['outcome'], registers });
    o.hub.on('published', this.onPublished);
    o.hub.on('rollout-complete', this.onRollout);
    // A sidecar that never answers produces no event that would end the measurement.
    this.timer = setInterval(() => this.sweep(), Math.min(this.timeoutMs, 10_000));
    this.timer.unref();
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /** Feed engine events (engine.on). */
  onEvent(e: EngineEvent): void {
    if (e.event === 'zone.dissolved') {
      if (this.pending.has(e.zone.id)) this.drop(e.zone.id, 'dissolved');
      return;
    }
    if (e.event !== 'zone.created') return;
    const z = e.zone;
    // Operator zones have no anomaly to measure from, and shadow zones are never enforced.
    if (z.type !== 'containment' || z.origin !== 'risk' || z.shadow || !z.detectedAt) return;
    const detectedAt = Date.parse(z.detectedAt);
    if (!Number.isFinite(detectedAt)) return;
    this.sweep();
    while (this.pending.size >= this.maxPending) this.drop(this.pending.keys().next().value!, 'evicted');
    this.pending.set(z.id, { id: z.id, detectedAt, createdAt: this.now() });
  }

  close(): void {
    clearInterval(this.timer);
    this.o.hub.off('published', this.onPublished);
    this.o.hub.off('rollout-complete', this.onRollout);
    this.pending.clear();
  }

  /** The first version whose `zones` resource carries the zone is the one that enforces it. */
  private published(version: number): void {
    this.sweep();
    let ids: Set<string> | undefined;
    for (const p of this.pending.values()) {
      if (p.version !== undefined) continue;
      ids ??= zoneIds(this.o.hub.get('mesh', 'zones'));
      if (ids.has(p.id)) p.version = version;
    }
  }

  private rolloutSettled(r: Rollout): void {
    for (const p of [...this.pending.values()]) {
      if (p.version !== r.version) continue;
      if (!r.inForce) this.drop(p.id, 'nacked');
      else if (Object.keys(r.targets).length === 0) this.drop(p.id, 'no_sidecars');
      else this.enforced(p, r);
    }
  }

  private enforced(p: Pending, r: Rollout): void {
    this.pending.delete(p.id);
    const at = r.completedAt ?? this.now();
    const seconds = Math.max(0, at - p.detectedAt) / 1000;
    const pushSeconds = Math.max(0, at - p.createdAt) / 1000;
    this.total.observe(seconds);
    this.push.observe(pushSeconds);
    this.last.set(seconds);
    this.outcomes.inc({ outcome: 'enforced' });
    void this.o.audit.record({
      actor: 'manager',
      action: 'zone.enforced',
      outcome: 'ok',
      target: p.id,
      reason: `contained ${seconds.toFixed(3)} s after the first anomalous window (push ${pushSeconds.toFixed(3)} s)`,
      details: { version: r.version, sidecars: r.counts.acked, detectedAt: new Date(p.detectedAt).toISOString(), timeToContainmentSeconds: seconds, pushSeconds },
    }).catch((err: Error) => this.o.logger.error({ err }, 'audit write failed'));
  }

  private sweep(): void {
    const limit = this.now() - this.timeoutMs;
    for (const p of [...this.pending.values()]) if (p.createdAt < limit) this.drop(p.id, 'timeout');
  }

  private drop(id: string, outcome: ContainmentOutcome): void {
    this.pending.delete(id);
    this.outcomes.inc({ outcome });
  }
}

function zoneIds(v: unknown): Set<string> {
  const list = (v as { zones?: Array<{ id?: unknown }> } | null | undefined)?.zones;
  return new Set(Array.isArray(list) ? list.map((z) => String(z.id)) : []);
}
