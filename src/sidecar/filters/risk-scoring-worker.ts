import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { SlidingWindowCounter, thresholdScore } from '../../scoring/index.js';

/**
 * Piscina worker of the sidecar's inline risk scoring: per end-user principal, the same rule
 * detectors the zone manager uses (src/scoring: a sliding-window request count and a window of
 * failed requests), scored 0–100. All state lives here, in ONE thread, so batches apply in
 * order and the sidecar's event loop only pushes to an array. Returns the principals whose
 * score crossed the threshold (once per flag period, not on every batch).
 */

export interface RiskScoringSettings {
  /** Score 0–100 at which a principal is flagged. */
  threshold: number;
  windowMs: number;
  /** Requests within windowMs that score 100 (the score rises linearly from half of it). */
  maxRequests: number;
  /** Failed requests (401, 403, 429 or 5xx) within windowMs that score 100. */
  maxErrors: number;
  /** How long a flag lasts; a principal is reported again once half of it has passed. */
  ttlMs: number;
  maxPrincipals: number;
}

/** One batch in columns (cheap to structured-clone; no object per record). */
export interface ScoreTask {
  settingsId: number;
  settings?: RiskScoringSettings;
  principals: string[];
  ids: string[];
  statuses: number[];
  times: number[];
}

export interface ScoredPrincipal {
  principal: string;
  score: number;
  reason: string;
}

export interface ScoreReply {
  flagged: ScoredPrincipal[];
  /** Time the worker spent on the batch (for the event-loop comparison in tests and bench). */
  workerMs: number;
  tracked: number;
}

const ID_SLOTS = 8;

interface State {
  settings: RiskScoringSettings;
  requests: SlidingWindowCounter;
  errors: SlidingWindowCounter;
  /** Per principal: the last few request ids (a user request fans out into calls sharing one). */
  ids: LRUCache<string, { ids: string[]; next: number }>;
  reported: LRUCache<string, number>;
}

let state: State | null = null;
let current = -1;

function fresh(s: RiskScoringSettings): State {
  return {
    settings: s,
    requests: new SlidingWindowCounter({ limit: s.maxRequests, windowMs: s.windowMs, maxKeys: s.maxPrincipals }),
    errors: new SlidingWindowCounter({ limit: s.maxErrors, windowMs: s.windowMs, maxKeys: s.maxPrincipals }),
    ids: new LRUCache({ max: s.maxPrincipals }),
    reported: new LRUCache({ max: s.maxPrincipals }),
  };
}

function failed(status: number): boolean {
  return status === 401 || status === 403 || status === 429 || status >= 500 || status === 0;
}

function seen(st: State, principal: string, id: string): boolean {
  if (id === '') return false;
  let r = st.ids.get(principal);
  if (r === undefined) st.ids.set(principal, (r = { ids: [], next: 0 }));
  if (r.ids.includes(id)) return true;
  r.ids[r.next] = id;
  r.next = (r.next + 1) % ID_SLOTS;
  return false;
}

export default function run(task: ScoreTask): ScoreReply {
  const started = performance.now();
  if (task.settingsId !== current || state === null) {
    if (!task.settings) throw new Error('risk-scoring worker: the first batch of a settings version must carry them');
    state = fresh(task.settings);
    current = task.settingsId;
  }
  const st = state;
  const s = st.settings;
  const touched = new Map<string, number>();
  for (let i = 0; i < task.principals.length; i++) {
    const p = task.principals[i]!;
    const t = task.times[i]!;
    if (!seen(st, p, task.ids[i]!)) st.requests.hit(p, t);
    if (failed(task.statuses[i]!)) st.errors.hit(p, t);
    touched.set(p, t);
  }
  const flagged: ScoredPrincipal[] = [];
  for (const [p, t] of touched) {
    const rate = thresholdScore(st.requests.count(p, t), s.maxRequests / 2, s.maxRequests + 1);
    const err = thresholdScore(st.errors.count(p, t), s.maxErrors / 2, s.maxErrors + 1);
    const score = Math.round(100 * Math.max(rate, err));
    if (score < s.threshold) continue;
    const last = st.reported.get(p);
    if (last !== undefined && t - last < s.ttlMs / 2) continue;
    st.reported.set(p, t);
    const reason = rate >= err ? `more than ${s.maxRequests} requests within ${s.windowMs} ms` : `more than ${s.maxErrors} failed requests within ${s.windowMs} ms`;
    flagged.push({ principal: p, score, reason });
  }
  return { flagged, workerMs: performance.now() - started, tracked: st.requests.size };
}
