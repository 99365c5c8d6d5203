import { open, readFile, rename, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { EtzError } from '../../core/errors.js';
import type { Store, StoreOp } from './store.js';

/**
 * The embedded store: an in-memory view, an append-only write-ahead log and a periodic snapshot.
 *
 * Why this and not a database: node:sqlite does not exist on Node 20 and a native module must
 * build offline from the package alone; the manager's state is small (policies, zones,
 * enrollments, tokens, a bounded audit log) and is read far more than written, so a log that is
 * replayed at start is simple to reason about and has exactly the guarantees needed.
 *
 * Durability: every write is a line `<crc32> <json>\n` in wal.jsonl; a write is acknowledged
 * only after fdatasync. Writes arriving while a sync is in flight are committed together in the
 * next one (group commit), so a burst costs one fsync per batch, not per write.
 * Crash safety: a torn tail (kill -9 or power loss mid-append) fails its CRC or lacks its newline;
 * it was never acknowledged, so recovery drops it and truncates there. A bad line followed by good
 * ones is corruption, not a torn write, and the store refuses to open.
 * Compaction: when the log passes `compactBytes`, the view is written to snapshot.json.tmp,
 * fsynced, renamed over snapshot.json and the directory fsynced; only then is the log truncated.
 * Each log line carries a sequence number and the snapshot records the last one it includes, so a
 * crash between the rename and the truncation replays nothing twice.
 */

export interface WalStoreOptions {
  dir: string;
  /** Compact when the log grows past this many bytes (default 8 MiB). */
  compactBytes?: number;
  /** Bound on entries kept per collection; the oldest are dropped at compaction (e.g. audit). */
  retain?: Record<string, number>;
}

interface Pending {
  line: string;
  ops: StoreOp[];
  resolve: () => void;
  reject: (err: Error) => void;
}

const SNAPSHOT = 'snapshot.json';
const WAL = 'wal.jsonl';

export class WalStore implements Store {
  static async open(opts: WalStoreOptions): Promise<WalStore> {
    const s = new WalStore(opts);
    await s.recover();
    return s;
  }

  private readonly dir: string;
  private readonly compactBytes: number;
  private readonly retain: Record<string, number>;
  private readonly colls = new Map<string, Map<string, unknown>>();
  private readonly listeners: Array<(ops: readonly StoreOp[]) => void> = [];
  private wal!: FileHandle;
  private walBytes = 0;
  private seq = 0;
  private queue: Pending[] = [];
  private flushing = false;
  private closed = false;
  private failed: Error | undefined;

  private constructor(opts: WalStoreOptions) {
    this.dir = opts.dir;
    this.compactBytes = opts.compactBytes ?? 8 * 1024 * 1024;
    this.retain = opts.retain ?? {};
  }

  // ---- reads ----
  get<T>(coll: string, key: string): T | undefined {
    return this.colls.get(coll)?.get(key) as T | undefined;
  }

  list<T>(coll: string): Array<[string, T]> {
    const m = this.colls.get(coll);
    return m ? ([...m.entries()] as Array<[string, T]>) : [];
  }

  size(coll: string): number {
    return this.colls.get(coll)?.size ?? 0;
  }

  onChange(listener: (ops: readonly StoreOp[]) => void): void {
    this.listeners.push(listener);
  }

  // ---- writes ----
  put(coll: string, key: string, value: unknown): Promise<void> {
    return this.batch([{ op: 'put', coll, key, value }]);
  }

  async delete(coll: string, key: string): Promise<boolean> {
    if (!this.colls.get(coll)?.has(key)) return false;
    await this.batch([{ op: 'del', coll, key }]);
    return true;
  }

  batch(ops: StoreOp[]): Promise<void> {
    if (this.closed) return Promise.reject(new EtzError('ETZ_ERR_STORE', 'store is closed'));
    if (this.failed) return Promise.reject(this.failed);
    if (ops.length === 0) return Promise.resolve();
    // Serialise now: the caller may mutate its value objects after this call returns.
    const json = JSON.stringify({ s: 0, ops });
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line: json, ops: JSON.parse(json).ops as StoreOp[], resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        let text = '';
        for (const p of batch) {
          const line = `{"s":${++this.seq},${p.line.slice('{"s":0,'.length)}`;
          text += `${crc32(line).toString(16).padStart(8, '0')} ${line}\n`;
        }
        try {
          const buf = Buffer.from(text, 'utf8');
          await this.wal.write(buf, 0, buf.length, this.walBytes);
          await this.wal.datasync();
          this.walBytes += buf.length;
        } catch (err) {
          // A log we cannot write is a log whose tail we no longer know: stop accepting writes
          // rather than acknowledge something that may not be there after a restart.
          this.failed = new EtzError('ETZ_ERR_STORE', `write-ahead log write failed: ${(err as Error).message}`, { cause: err });
          for (const p of batch) p.reject(this.failed);
          for (const p of this.queue) p.reject(this.failed);
          this.queue = [];
          return;
        }
        for (const p of batch) {
          this.applyOps(p.ops);
          for (const l of this.listeners) {
            try {
              l(p.ops);
            } catch {
              // A listener's failure must not undo or block a durable write.
            }
          }
          p.resolve();
        }
        if (this.walBytes >= this.compactBytes) await this.compact();
      }
    } finally {
      this.flushing = false;
    }
  }

  private applyOps(ops: readonly StoreOp[]): void {
    for (const o of ops) {
      let m = this.colls.get(o.coll);
      if (o.op === 'put') {
        if (!m) this.colls.set(o.coll, (m = new Map()));
        m.set(o.key, o.value);
      } else {
        m?.delete(o.key);
      }
    }
  }

  /** Write the view to a new snapshot, then truncate the log. Runs inside the flush loop. */
  private async compact(): Promise<void> {
    for (const [coll, max] of Object.entries(this.retain)) {
      const m = this.colls.get(coll);
      if (!m || m.size <= max) continue;
      let drop = m.size - max;
      for (const k of m.keys()) {
        if (drop-- <= 0) break;
        m.delete(k);
      }
    }
    const data: Record<string, Array<[string, unknown]>> = {};
    for (const [coll, m] of this.colls) data[coll] = [...m.entries()];
    const tmp = join(this.dir, `${SNAPSHOT}.tmp`);
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ format: 1, seq: this.seq, data }));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, SNAPSHOT));
    await fsyncDir(this.dir);
    await this.wal.truncate(0);
    await this.wal.sync();
    this.walBytes = 0;
  }

  private async recover(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    let snapSeq = 0;
    const snapText = await readFile(join(this.dir, SNAPSHOT), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (snapText !== undefined) {
      let snap: { seq: number; data: Record<string, Array<[string, unknown]>> };
      try {
        snap = JSON.parse(snapText);
      } catch (err) {
        // Snapshots are only ever renamed into place complete, so this is damage, not a crash.
        throw new EtzError('ETZ_ERR_STORE_CORRUPT', `${join(this.dir, SNAPSHOT)} is not valid JSON`, { cause: err });
      }
      for (const [coll, entries] of Object.entries(snap.data)) this.colls.set(coll, new Map(entries));
      snapSeq = this.seq = snap.seq;
    }
    const walPath = join(this.dir, WAL);
    const text = await readFile(walPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return Buffer.alloc(0);
      throw err;
    });
    let offset = 0;
    let good = 0;
    while (offset < text.length) {
      const nl = text.indexOf(0x0a, offset);
      const entry = nl < 0 ? undefined : parseLine(text.subarray(offset, nl).toString('utf8'));
      if (!entry) {
        // Only the tail may be torn. Anything valid after a bad line means real corruption.
        const rest = nl < 0 ? Buffer.alloc(0) : text.subarray(nl + 1);
        if (hasValidLine(rest)) {
          throw new EtzError('ETZ_ERR_STORE_CORRUPT', `${walPath}: damaged entry at byte ${offset} followed by valid entries`);
        }
        break;
      }
      if (entry.s > snapSeq) {
        this.applyOps(entry.ops);
        this.seq = entry.s;
      }
      offset = nl + 1;
      good = offset;
    }
    this.wal = await open(walPath, 'a+', 0o600);
    if (good < text.length) {
      await this.wal.truncate(good);
      await this.wal.sync();
    }
    // Positional writes at walBytes: 'a+' appends regardless, and the offset keeps them honest.
    this.walBytes = good;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.queue.length) await new Promise((r) => setTimeout(r, 1));
    this.closed = true;
    await this.wal.close();
  }
}

function parseLine(line: string): { s: number; ops: StoreOp[] } | undefined {
  const sp = line.indexOf(' ');
  if (sp !== 8) return undefined;
  const body = line.slice(9);
  if (crc32(body).toString(16).padStart(8, '0') !== line.slice(0, 8)) return undefined;
  try {
    const e = JSON.parse(body) as { s: number; ops: StoreOp[] };
    return typeof e.s === 'number' && Array.isArray(e.ops) ? e : undefined;
  } catch {
    return undefined;
  }
}

function hasValidLine(buf: Buffer): boolean {
  for (const l of buf.toString('utf8').split('\n')) if (parseLine(l)) return true;
  return false;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
