/**
 * The manager's durable state behind one small interface. The embedded default is a local
 * write-ahead log (wal-store.ts); a shared backend for several manager replicas implements the
 * same interface, keeping the same in-memory read view fed by its change stream.
 *
 * Reads are synchronous from the in-memory view (the API and pub/sub read on every request);
 * writes resolve only once durable, so "acknowledged" always means "survives kill -9".
 */

export type StoreOp =
  | { op: 'put'; coll: string; key: string; value: unknown }
  | { op: 'del'; coll: string; key: string };

export interface Store {
  get<T = unknown>(coll: string, key: string): T | undefined;
  /** Entries of a collection in insertion order (re-putting a key keeps its place). */
  list<T = unknown>(coll: string): Array<[string, T]>;
  size(coll: string): number;
  put(coll: string, key: string, value: unknown): Promise<void>;
  delete(coll: string, key: string): Promise<boolean>;
  /** All ops become durable together or not at all. */
  batch(ops: StoreOp[]): Promise<void>;
  /** Called after each durable change, in commit order. */
  onChange(listener: (ops: readonly StoreOp[]) => void): void;
  close(): Promise<void>;
}

/** Collections the manager keeps. */
export const COLL = {
  policies: 'policies',
  zones: 'zones',
  enrollments: 'enrollments',
  tokens: 'tokens',
  audit: 'audit',
  meta: 'meta',
  resources: 'resources',
} as const;
