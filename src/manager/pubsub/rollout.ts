/**
 * Rollout state of each published change: which targeted sidecars have ACKed a version that
 * includes it, which NACKed, which are still pending. A change is "in force" when every target
 * has ACKed. Bounded: only the last `max` changes are kept.
 */

export type TargetState = 'pending' | 'acked' | 'nacked';

export interface Rollout {
  version: number;
  reason: string;
  startedAt: number;
  completedAt?: number;
  targets: Record<string, { state: TargetState; at?: number; error?: string }>;
  counts: { acked: number; nacked: number; pending: number };
  inForce: boolean;
}

export class RolloutTracker {
  private readonly items: Rollout[] = [];
  private readonly byVersion = new Map<number, Rollout>();

  constructor(private readonly max: number) {}

  start(version: number, reason: string, targets: string[], now: number): Rollout {
    const r: Rollout = {
      version,
      reason,
      startedAt: now,
      targets: Object.fromEntries(targets.map((t) => [t, { state: 'pending' as TargetState }])),
      counts: { acked: 0, nacked: 0, pending: targets.length },
      inForce: targets.length === 0,
    };
    if (r.inForce) r.completedAt = now;
    this.items.push(r);
    this.byVersion.set(version, r);
    while (this.items.length > this.max) this.byVersion.delete(this.items.shift()!.version);
    return r;
  }

  /** An ACK of `version` covers every change up to it. Returns rollouts that just came into force. */
  ack(id: string, version: number): Rollout[] {
    const done: Rollout[] = [];
    const now = Date.now();
    for (let i = this.items.length - 1; i >= 0; i--) {
      const r = this.items[i]!;
      if (r.version > version) continue;
      const t = r.targets[id];
      if (!t || t.state === 'acked') continue;
      if (t.state === 'pending') r.counts.pending--;
      else r.counts.nacked--;
      t.state = 'acked';
      t.at = now;
      delete t.error;
      r.counts.acked++;
      if (r.counts.pending === 0 && r.counts.nacked === 0 && !r.inForce) {
        r.inForce = true;
        r.completedAt = now;
        done.push(r);
      }
    }
    return done;
  }

  /** A NACK of `version` fails every pending change the sidecar had not yet ACKed. */
  nack(id: string, version: number, ackedVersion: number, error: string): Rollout[] {
    const settled: Rollout[] = [];
    for (const r of this.items) {
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
    return settled.filter((r) => !r.inForce);
  }

  list(): Rollout[] {
    return [...this.items].reverse();
  }

  get(version: number): Rollout | undefined {
    return this.byVersion.get(version);
  }
}
