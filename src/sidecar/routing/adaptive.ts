import { LRUCache } from 'lru-cache';

/**
 * The per-principal detector of adaptive routing (after Medarametla et al.: a user who sends more
 * than 5 requests within a minute is likely a scraper and is routed to the safe version). It runs
 * inside the sidecar so a reroute takes effect on the very next request, without a round trip to
 * the zone manager; the manager can add its own verdicts (the `principals` resource), which are
 * merged here.
 *
 * A user's one request fans out into several internal calls that share one x-request-id, so a
 * request id is counted once per principal. State per principal is a fixed ring of timestamps
 * (threshold + 1 slots) in a bounded LRU: a flood of distinct principals evicts the least recent
 * ones instead of growing memory.
 */

export interface DetectorConfig {
  enabled?: boolean;
  /** Flag a principal that sends MORE than this many requests within windowMs. */
  threshold?: number;
  windowMs?: number;
  /** How long a flag lasts after the last request that tripped it. */
  ttlMs?: number;
  /** Principals tracked at once (LRU bound). */
  maxPrincipals?: number;
}

export const DETECTOR_DEFAULTS = { enabled: true, threshold: 5, windowMs: 60_000, ttlMs: 300_000, maxPrincipals: 100_000 } as const;

export const detectorSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    threshold: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    windowMs: { type: 'integer', minimum: 1 },
    ttlMs: { type: 'integer', minimum: 1 },
    maxPrincipals: { type: 'integer', minimum: 1, maximum: 10_000_000 },
  },
} as const;

/** A flag the zone manager set: `until` in epoch ms, absent = until the manager clears it. */
export interface RemoteFlag {
  principal: string;
  until?: number;
  reason?: string;
}

export interface FlaggedPrincipal {
  principal: string;
  until: number;
  source: 'local' | 'manager';
}

const ID_SLOTS = 8;

interface PrincipalState {
  times: Float64Array;
  next: number;
  filled: number;
  ids: (string | undefined)[];
  nextId: number;
  flaggedUntil: number;
}

export class PrincipalDetector {
  private threshold: number;
  private windowMs: number;
  private ttlMs: number;
  private states: LRUCache<string, PrincipalState>;
  private remote = new Map<string, number>();
  /** Called once when a principal becomes flagged locally (metrics, log). */
  onFlag: ((principal: string, until: number) => void) | undefined;

  constructor(cfg: DetectorConfig = {}) {
    this.threshold = cfg.threshold ?? DETECTOR_DEFAULTS.threshold;
    this.windowMs = cfg.windowMs ?? DETECTOR_DEFAULTS.windowMs;
    this.ttlMs = cfg.ttlMs ?? DETECTOR_DEFAULTS.ttlMs;
    this.states = new LRUCache({ max: cfg.maxPrincipals ?? DETECTOR_DEFAULTS.maxPrincipals });
  }

  /** A new config version: keep what was learnt, adopt new parameters. */
  reconfigure(cfg: DetectorConfig): void {
    this.threshold = cfg.threshold ?? DETECTOR_DEFAULTS.threshold;
    this.windowMs = cfg.windowMs ?? DETECTOR_DEFAULTS.windowMs;
    this.ttlMs = cfg.ttlMs ?? DETECTOR_DEFAULTS.ttlMs;
    const max = cfg.maxPrincipals ?? DETECTOR_DEFAULTS.maxPrincipals;
    if (max !== this.states.max) {
      const old = this.states;
      this.states = new LRUCache({ max });
      // Most recent last, so the LRU order survives the copy.
      for (const [k, v] of [...old.entries()].reverse()) this.states.set(k, v);
    }
  }

  get tracked(): number {
    return this.states.size;
  }

  /**
   * Count one request of `principal` (once per request id) and return whether it is flagged now
   * (by this detector or by the manager).
   */
  observe(principal: string, requestId: string | undefined, now: number): boolean {
    const slots = this.threshold + 1;
    const st = this.stateFor(principal);
    if (requestId !== undefined) {
      if (st.ids.includes(requestId)) return this.flaggedState(principal, st, now);
      st.ids[st.nextId] = requestId;
      st.nextId = (st.nextId + 1) % ID_SLOTS;
    }
    st.times[st.next] = now;
    st.next = (st.next + 1) % slots;
    if (st.filled < slots) st.filled++;
    // The slot about to be overwritten holds the oldest of the last threshold+1 requests.
    if (st.filled === slots && now - st.times[st.next]! <= this.windowMs) {
      const wasFlagged = st.flaggedUntil > now;
      st.flaggedUntil = now + this.ttlMs;
      if (!wasFlagged) this.onFlag?.(principal, st.flaggedUntil);
    }
    return this.flaggedState(principal, st, now);
  }

  private stateFor(principal: string): PrincipalState {
    const slots = this.threshold + 1;
    let st = this.states.get(principal);
    if (!st || st.times.length !== slots) {
      st = { times: new Float64Array(slots), next: 0, filled: 0, ids: new Array(ID_SLOTS), nextId: 0, flaggedUntil: st?.flaggedUntil ?? 0 };
      this.states.set(principal, st);
    }
    return st;
  }

  isFlagged(principal: string, now: number): boolean {
    const st = this.states.peek(principal);
    return this.flaggedState(principal, st, now);
  }

  private flaggedState(principal: string, st: PrincipalState | undefined, now: number): boolean {
    if (st && st.flaggedUntil > now) return true;
    if (this.remote.size === 0) return false;
    const r = this.remote.get(principal);
    return r !== undefined && r > now;
  }

  /** Replace the manager's verdicts (the whole `principals` resource arrives with each version). */
  setRemote(flags: readonly RemoteFlag[]): void {
    const m = new Map<string, number>();
    for (const f of flags) m.set(f.principal, f.until ?? Number.POSITIVE_INFINITY);
    this.remote = m;
  }

  /** Flag by hand (tests, operator tools). */
  flag(principal: string, now: number, ttlMs = this.ttlMs): void {
    const st = this.stateFor(principal);
    st.flaggedUntil = Math.max(st.flaggedUntil, now + ttlMs);
  }

  flagged(now: number): FlaggedPrincipal[] {
    const out: FlaggedPrincipal[] = [];
    for (const [p, st] of this.states.entries()) if (st.flaggedUntil > now) out.push({ principal: p, until: st.flaggedUntil, source: 'local' });
    for (const [p, until] of this.remote) if (until > now) out.push({ principal: p, until, source: 'manager' });
    return out;
  }
}
