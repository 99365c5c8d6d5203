import { Scorer, type ScoreBatch, type ScoreResult } from './scorer.js';
import type { EngineConfig } from './config.js';

/**
 * Piscina worker: the scoring step of the live manager, off the event loop. The learned state
 * (baselines, control charts, the multivariate model) lives here, so the pool runs ONE thread and
 * every batch lands on it in order; the manager's loop only accumulates windows and applies
 * results. A new config id starts a fresh scorer.
 */

export type WorkerTask =
  | { op: 'score'; configId: number; config?: EngineConfig; batch: ScoreBatch }
  | { op: 'export' }
  | { op: 'import'; configId: number; config: EngineConfig; baselines: Array<[string, number, number[], number[]]> };

let scorer: Scorer | null = null;
let current = -1;

export default function run(task: WorkerTask): ScoreResult[] | Array<[string, number, number[], number[]]> | null {
  switch (task.op) {
    case 'score':
      if (task.configId !== current || !scorer) {
        if (!task.config) throw new Error('scoring worker: first batch of a config must carry it');
        scorer = new Scorer(task.config);
        current = task.configId;
      }
      return scorer.scoreBatch(task.batch);
    case 'export':
      return scorer ? scorer.exportBaselines() : [];
    case 'import':
      scorer = new Scorer(task.config);
      current = task.configId;
      scorer.importBaselines(task.baselines);
      return null;
  }
}
