/**
 * Rollout state of each published change: which targeted sidecars have ACKed a version that
 * includes it, which NACKed, which are still pending. A change is "in force" when every target
 * has ACKed. Bounded: only the last `max` changes are kept.
 *
 * ACKs arrive once per sidecar per push, so their cost decides how a rollout to a thousand
 * sidecars scales: an ACK visits only the rollouts not yet in force (usually one), never the
 * whole history.
 */

export type TargetState = 'pending' | 'acked' | 'nacked';

export interface TargetStatus { state: TargetState; at?: number; error?: string }

export interface Rollout {
  version: number;
  reason: string;
  startedAt: number;
  completedAt?: number;
  targets: Record<string, TargetStatus>;
  counts: { acked: number; nacked: number; pending: number };
  inForce: boolean;
}

export class RolloutTracker {
  private readonly items: Rollout[] = [];
  private readonly byVersion = new Map<number, Rollout>();
  /** Rollouts not yet in force, oldest first: the only ones an ACK or NACK can change. */
  private readonly open = new Set<Rollout>();

  constructor(private readonly max: number) {}

  start(version: number, reason: string, targets: string[], now: number): Rollout {
    // A null-prototype object: no inherited keys to collide with instance names, and a
    // thousand inserts cost a fraction of Object.fromEntries over pairs.
    const t = Object.create(null) as Record<string, TargetStatus>;
    for (const id of targets) t[id] = { state: 'pending' };
    const r: Rollout = {
      version,
      reason,
      startedAt: now,
      targets: t,
      counts: { acked: 0, nacked: 0, pending: targets.length },
      inForce: targets.length === 0,
    };
    if (r.inForce) r.completedAt = now;
    else this.open.add(r);
    this.items.push(r);
    this.byVersion.set(version, r);
    while (this.items.length > this.max) {
      const old = this.items.shift()!;
      this.byVersion.delete(old.version);
      this.open.delete(old);
    }
    return r;
  }

  /** An ACK of `version` covers every change up to it. Returns rollouts that just came into force. */
  ack(id: string, version: number): Rollout[] {
    const done: Rollout[] = [];
    if (this.open.size === 0) return done;
    const now = Date.now();
    for (const r of this.open) {
      if (r.version > version) continue;
      const t = r.targets[id];
      if (!t || t.state === 'acked') continue;
      if (t.state === 'pending') r.counts.pending--;
      else r.counts.nacked--;
      t.state = 'acked';
      t.at = now;
      delete t.error;
      r.counts.acked++;
      if (r.counts.pending === 0 && r.counts.nacked === 0) {
        r.inForce = true;
        r.completedAt = now;
        this.open.delete(r);
        done.push(r);
      }
    }
    // Newest first, as the history walk used to report them.
    return done.reverse();
  }

  /** A NACK of `version` fails every pending change the sidecar had not yet ACKed. */
  nack(id: string, version: number, ackedVersion: number, error: string): Rollout[] {
    const settled: Rollout[] = [];
    for (const r of this.open) {
      if (r.version > version || r.version <= ackedVersion) continue;
      const t = r.targets[id];
      if (!t || t.state !== 'pending') continue;
      t.state = 'nacked';
      t.at = Date.now();
      t.error = error.slice(0, 512);
      r.counts.pending--;
      r.counts.nacked++;
      if (r.counts.pending === 0) settled.push(r);
    }
    return settled;
  }

  list(): Rollout[] {
    return [...this.items].reverse();
  }

  get(version: number): Rollout | undefined {
    return this.byVersion.get(version);
  }
}
