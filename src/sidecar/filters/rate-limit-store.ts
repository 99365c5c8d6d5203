import { LRUCache } from 'lru-cache';

/**
 * GCRA (the generic cell rate algorithm, a token bucket kept as one number per key): each key
 * stores its theoretical arrival time (TAT). A request at `now` conforms when
 * TAT - burst·interval ≤ now, and then advances TAT by one interval. One float per key, no timer,
 * exact Retry-After. Keys live in a bounded LRU: an attacker rotating keys (source ports, fake
 * users) evicts the least recently seen keys instead of growing memory; an evicted key starts
 * from a full bucket, which is the conservative direction for memory and the documented trade.
 */

export interface GcraParams {
  /** Requests allowed per period, sustained. */
  requests: number;
  periodMs: number;
  /** Requests allowed at once from a full bucket; default = requests. */
  burst?: number;
  /** LRU bound on keys. */
  maxKeys?: number;
}

export interface GcraVerdict {
  allowed: boolean;
  /** Requests left right now after this one. */
  remaining: number;
  /** Until another request would conform (0 when allowed). */
  retryAfterMs: number;
  /** Until the bucket is full again. */
  resetMs: number;
}

export class GcraStore {
  readonly requests: number;
  readonly periodMs: number;
  readonly burst: number;
  private readonly interval: number;
  private readonly tolerance: number;
  private readonly tats: LRUCache<string, number>;
  /** Decisions so far, exported by the metrics collector (a prom-client inc per request costs more than the check). */
  allowed = 0;
  limited = 0;

  constructor(p: GcraParams) {
    this.requests = p.requests;
    this.periodMs = p.periodMs;
    this.burst = p.burst ?? p.requests;
    this.interval = p.periodMs / p.requests;
    this.tolerance = this.interval * this.burst;
    this.tats = new LRUCache<string, number>({ max: p.maxKeys ?? 100_000 });
  }

  get size(): number {
    return this.tats.size;
  }

  get maxKeys(): number {
    return this.tats.max;
  }

  /** Same parameters (so a new config version may keep this store and its state). */
  sameAs(p: GcraParams): boolean {
    return this.requests === p.requests && this.periodMs === p.periodMs && this.burst === (p.burst ?? p.requests) && this.tats.max === (p.maxKeys ?? 100_000);
  }

  /** Check one request; with `commit` false nothing is recorded (a stricter limit may still deny). */
  check(key: string, now: number, commit = true): GcraVerdict {
    const tat = Math.max(this.tats.get(key) ?? now, now);
    const next = tat + this.interval;
    const allowAt = next - this.tolerance;
    if (allowAt > now) {
      return { allowed: false, remaining: 0, retryAfterMs: allowAt - now, resetMs: tat - now };
    }
    if (commit) this.tats.set(key, next);
    return { allowed: true, remaining: Math.floor((now - allowAt) / this.interval), retryAfterMs: 0, resetMs: next - now };
  }

  /** Record a request already checked with commit=false. */
  commit(key: string, now: number): void {
    const tat = Math.max(this.tats.get(key) ?? now, now);
    this.tats.set(key, tat + this.interval);
  }
}
