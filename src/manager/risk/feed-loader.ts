import { readFile, stat } from 'node:fs/promises';
import type { Logger } from '../../core/logger.js';
import type { EngineConfig } from './config.js';
import type { RiskEngine } from './index.js';

/**
 * Loads the feed files of `risk.feeds` (Trivy reports, blocklists, STIX bundles) into a live
 * engine and re-reads each one when its modification time changes, so feeds are updated without
 * a restart. A file that fails to parse is reported and its previous content stays in force.
 */

export interface FeedStatus {
  file: string;
  ok: boolean;
  kind?: 'vuln' | 'intel';
  count?: number;
  error?: string;
}

export interface FeedReloader {
  /** Re-read changed files now (also what the timer does). */
  reload(): Promise<FeedStatus[]>;
  close(): void;
}

export function startFeedReloader(engine: RiskEngine, feeds: EngineConfig['risk']['feeds'], logger: Logger, opts: { now?: () => number } = {}): FeedReloader {
  const mtimes = new Map<string, number>();
  const now = opts.now ?? (() => Date.now());
  let running: Promise<FeedStatus[]> | null = null;

  async function once(): Promise<FeedStatus[]> {
    const out: FeedStatus[] = [];
    for (const f of feeds.files) {
      try {
        const st = await stat(f.file);
        if (mtimes.get(f.file) === st.mtimeMs) continue;
        const text = await readFile(f.file, 'utf8');
        const r = engine.loadFeed(text, { feed: f.file, ts: now(), ...(f.service ? { service: f.service } : {}), ...(f.source ? { source: f.source } : {}) });
        mtimes.set(f.file, st.mtimeMs);
        logger.info({ feed: f.file, kind: r.kind, count: r.count }, 'feed loaded');
        out.push({ file: f.file, ok: true, kind: r.kind, count: r.count });
      } catch (err) {
        const error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        logger.error({ feed: f.file, error }, 'feed not loaded; its previous content stays in force');
        out.push({ file: f.file, ok: false, error });
      }
    }
    return out;
  }

  const reload = () => {
    running ??= once().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = feeds.files.length ? setInterval(() => void reload(), feeds.reloadMs) : undefined;
  timer?.unref();
  void reload();
  return {
    reload,
    close() {
      if (timer) clearInterval(timer);
    },
  };
}
