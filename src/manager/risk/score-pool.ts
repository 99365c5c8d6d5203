import { Piscina } from 'piscina';
import type { EngineConfig } from './config.js';
import type { ScoreBatch, ScoreResult } from './scorer.js';
import type { WorkerTask } from './score-worker.js';

/**
 * The live manager's scoring step in a piscina worker:
 *
 *   const pool = createScoringPool(config);
 *   setInterval(() => engine.advanceAsync(Date.now(), pool.score), 250);
 *
 * One thread, because scoring state is per subject and batches must be applied in window order;
 * the point is keeping detector work off the manager's event loop (API, pub/sub, telemetry
 * intake), and the same Scorer class runs inline in `etz replay`, so both give the same scores.
 */
export interface ScoringPool {
  score(batch: ScoreBatch): Promise<ScoreResult[]>;
  exportBaselines(): Promise<Array<[string, number, number[], number[]]>>;
  importBaselines(rows: Array<[string, number, number[], number[]]>): Promise<void>;
  close(): Promise<void>;
}

let configIds = 0;

export function createScoringPool(config: EngineConfig): ScoringPool {
  const pool = new Piscina({
    filename: new URL('./score-worker.js', import.meta.url).href,
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: Number.MAX_SAFE_INTEGER,
    // Bounded: if scoring ever falls behind, advanceAsync skips ticks rather than queueing them.
    maxQueue: 64,
  });
  const id = ++configIds;
  let sentConfig = false;
  return {
    async score(batch) {
      const task: WorkerTask = { op: 'score', configId: id, batch, ...(sentConfig ? {} : { config }) };
      sentConfig = true;
      return (await pool.run(task)) as ScoreResult[];
    },
    async exportBaselines() {
      return (await pool.run({ op: 'export' } satisfies WorkerTask)) as Array<[string, number, number[], number[]]>;
    },
    async importBaselines(baselines) {
      await pool.run({ op: 'import', configId: id, config, baselines } satisfies WorkerTask);
      sentConfig = true;
    },
    async close() {
      await pool.destroy();
    },
  };
}
