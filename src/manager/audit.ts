import { COLL, type Store } from './store/store.js';

/**
 * The audit log: who did what, when, and whether it was allowed. Entries are store writes, so an
 * entry the API reports is durable; keys are zero-padded sequence numbers so that insertion order
 * is also key order. Retention is bounded by store.auditRetain (oldest dropped at compaction).
 */

export interface AuditEntry {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  outcome: 'ok' | 'denied' | 'failed';
  target?: string;
  reason?: string;
  details?: Record<string, unknown>;
}

export class AuditLog {
  private seq: number;

  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {
    const last = store.list<AuditEntry>(COLL.audit).at(-1);
    this.seq = last ? last[1].seq : 0;
  }

  async record(e: Omit<AuditEntry, 'seq' | 'ts'>): Promise<AuditEntry> {
    const entry: AuditEntry = { seq: ++this.seq, ts: new Date(this.now()).toISOString(), ...e };
    await this.store.put(COLL.audit, String(entry.seq).padStart(12, '0'), entry);
    return entry;
  }

  /** Newest first; `before` pages backwards by sequence number. */
  page(opts: { limit?: number; before?: number; action?: string } = {}): { entries: AuditEntry[]; next?: number } {
    const limit = Math.min(Math.max(opts.limit ?? 50, 1), 1000);
    const all = this.store.list<AuditEntry>(COLL.audit);
    const out: AuditEntry[] = [];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const e = all[i]![1];
      if (opts.before !== undefined && e.seq >= opts.before) continue;
      if (opts.action && !e.action.startsWith(opts.action)) continue;
      out.push(e);
    }
    const last = out.at(-1);
    return { entries: out, ...(out.length === limit && last && last.seq > 1 ? { next: last.seq } : {}) };
  }
}
