import { LRUCache } from 'lru-cache';

/**
 * Rule helpers: "more than N events within W ms" per key, and plain thresholds. Time comes from the
 * events themselves (record timestamps), never from the wall clock, so replays behave like live.
 */

export interface SlidingWindowCounterOptions {
  /** The rule fires when MORE than this many events fall within `windowMs`. */
  limit: number;
  windowMs: number;
  /** Keys tracked at most; the least recently seen key is forgotten first. */
  maxKeys?: number;
}

/**
 * Per key, a ring of the last limit+1 event times is all that is needed to decide "more than
 * `limit` within the window": the rule holds iff the oldest of them is still inside the window.
 * Memory is bounded by maxKeys × (limit+1) numbers.
 */
export class SlidingWindowCounter {
  readonly limit: number;
  readonly windowMs: number;
  private readonly keys: LRUCache<string, { ring: Float64Array; head: number; n: number }>;

  constructor(opts: SlidingWindowCounterOptions) {
    if (!(Number.isInteger(opts.limit) && opts.limit >= 0)) throw new RangeError('limit must be an integer >= 0');
    if (!(opts.windowMs > 0)) throw new RangeError('windowMs must be > 0');
    this.limit = opts.limit;
    this.windowMs = opts.windowMs;
    this.keys = new LRUCache({ max: opts.maxKeys ?? 10_000 });
  }

  /** Records one event for `key` at time `t` (ms); returns true when the rule now holds. */
  hit(key: string, t: number): boolean {
    let e = this.keys.get(key);
    if (!e) {
      e = { ring: new Float64Array(this.limit + 1), head: 0, n: 0 };
      this.keys.set(key, e);
    }
    e.ring[e.head] = t;
    e.head = (e.head + 1) % e.ring.length;
    if (e.n < e.ring.length) e.n++;
    return this.holds(e, t);
  }

  /** Events of `key` within the window ending at `t`, capped at limit+1. */
  count(key: string, t: number): number {
    const e = this.keys.peek(key);
    if (!e) return 0;
    let c = 0;
    for (let i = 0; i < e.n; i++) if (e.ring[i]! > t - this.windowMs && e.ring[i]! <= t) c++;
    return c;
  }

  /** Whether the rule holds for `key` at time `t` without recording an event. */
  exceeded(key: string, t: number): boolean {
    const e = this.keys.peek(key);
    return e ? this.holds(e, t) : false;
  }

  get size(): number {
    return this.keys.size;
  }

  private holds(e: { ring: Float64Array; head: number; n: number }, t: number): boolean {
    if (e.n < e.ring.length) return false;
    // head now points at the oldest of the last limit+1 events.
    return e.ring[e.head]! > t - this.windowMs;
  }
}

/** Threshold rule: 0 below `warn`, rising linearly to 1 at `critical` (e.g. an error-rate budget). */
export function thresholdScore(value: number, warn: number, critical: number): number {
  if (!(critical > warn)) throw new RangeError('critical must be greater than warn');
  if (value <= warn) return 0;
  if (value >= critical) return 1;
  return (value - warn) / (critical - warn);
}
