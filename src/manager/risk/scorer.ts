import { LRUCache } from 'lru-cache';
import { getSeriesDetector, getVectorDetector, type SeriesDetector, type VectorDetector } from '../../scoring/index.js';
import type { EngineConfig } from './config.js';
import { F, FEATURES, NF } from './features.js';
import type { Reason, SubjectKind } from './types.js';

/**
 * The batch scoring step: closed-window feature vectors in, scores with reasons out. It owns every
 * piece of learned state (baselines, control charts, the multivariate model), holds no reference to
 * the engine and takes plain data, so the live manager can run it inside a worker thread
 * (score-worker.ts) while `etz replay` runs the very same class inline.
 */

export interface ScoreItem {
  key: string;
  kind: SubjectKind;
  features: Float64Array;
  /** Labels such as `sensitive` weigh data-volume anomalies more. */
  sensitive: boolean;
  /** Reasons computed by the engine from priors (vulnerabilities, intel) and novelty names. */
  priors: Reason[];
  newEdges?: string[];
}

export interface ScoreBatch {
  /** Window end, epoch ms. */
  at: number;
  /** Mesh-wide load relative to its baseline: volume features are judged relative to it. */
  meshFactor: number;
  items: ScoreItem[];
}

export interface ScoreResult {
  key: string;
  score: number;
  reasons: Reason[];
  warmingUp: boolean;
}

type Spec = { f: number; kind: 'volume' | 'rate'; floor: number; max: number; normalise: boolean };

// How much each feature may contribute on its own (points out of 100). Single-feature anomalies
// stay below the isolation threshold on purpose: a zone needs corroborating evidence.
const SPECS: Spec[] = [
  { f: F.requestsIn, kind: 'volume', floor: 5, max: 40, normalise: true },
  { f: F.requestsOut, kind: 'volume', floor: 5, max: 45, normalise: true },
  { f: F.errorRate, kind: 'rate', floor: 0.2, max: 40, normalise: false },
  { f: F.clientErrorRate, kind: 'rate', floor: 0.3, max: 25, normalise: false },
  { f: F.authFailures, kind: 'volume', floor: 3, max: 35, normalise: false },
  { f: F.latencyP95, kind: 'volume', floor: 5, max: 20, normalise: false },
  { f: F.bytesIn, kind: 'volume', floor: 10_000, max: 35, normalise: true },
  { f: F.bytesOut, kind: 'volume', floor: 10_000, max: 70, normalise: true },
  { f: F.fanOut, kind: 'volume', floor: 2, max: 30, normalise: false },
  { f: F.principals, kind: 'volume', floor: 5, max: 25, normalise: true },
  { f: F.errorLogs, kind: 'volume', floor: 3, max: 25, normalise: false },
];

// Features the per-subject control charts and change-point detectors watch.
const CHARTED = [F.requestsIn, F.requestsOut, F.errorRate, F.latencyP95, F.bytesOut];
const SENSITIVE_BYTES = 1.3;

interface SubjectModel {
  n: number;
  mean: Float64Array;
  var: Float64Array;
  charts: SeriesDetector[] | null;
  cps: SeriesDetector[] | null;
}

export class Scorer {
  private readonly cfg: EngineConfig;
  private readonly models: LRUCache<string, SubjectModel>;
  private readonly hst = new Map<SubjectKind, VectorDetector>();
  private readonly rel = new Float64Array(NF);
  private readonly norm = new Float64Array(NF);

  constructor(cfg: EngineConfig) {
    this.cfg = cfg;
    this.models = new LRUCache({ max: cfg.risk.maxSubjects });
  }

  get size(): number {
    return this.models.size;
  }

  scoreBatch(batch: ScoreBatch): ScoreResult[] {
    const out: ScoreResult[] = new Array(batch.items.length);
    for (let i = 0; i < batch.items.length; i++) out[i] = this.scoreOne(batch.items[i]!, batch.at, batch.meshFactor);
    return out;
  }

  /** Forget a subject's learned baseline (operator reset, or an instance that is gone). */
  forget(key: string): void {
    this.models.delete(key);
  }

  private model(key: string): SubjectModel {
    let m = this.models.get(key);
    if (!m) {
      m = { n: 0, mean: new Float64Array(NF), var: new Float64Array(NF), charts: null, cps: null };
      const d = this.cfg.detectors;
      const warmup = this.cfg.risk.warmupWindows;
      if (d.controlChart.enabled) m.charts = CHARTED.map(() => getSeriesDetector(d.controlChart.detector, { warmup }));
      if (d.changePoint.enabled) m.cps = CHARTED.map(() => getSeriesDetector(d.changePoint.detector, { warmup }));
      this.models.set(key, m);
    }
    return m;
  }

  private scoreOne(item: ScoreItem, at: number, meshFactor: number): ScoreResult {
    const cfg = this.cfg;
    const m = this.model(item.key);
    const x = item.features;
    const warm = m.n >= cfg.risk.warmupWindows;
    const reasons: Reason[] = item.priors.slice();
    let flagged = 0;
    const mf = meshFactor > 1 ? meshFactor : 1;
    const norm = this.norm;
    for (let f = 0; f < NF; f++) norm[f] = x[f]!;
    for (const s of SPECS) if (s.normalise) norm[s.f] = x[s.f]! / mf;

    if (warm) {
      const { minRatio, minZ } = cfg.risk.spike;
      for (const s of SPECS) {
        const v = norm[s.f]!;
        const mean = m.mean[s.f]!;
        const sd = Math.sqrt(m.var[s.f]!);
        let pts = 0;
        let detail = '';
        if (s.kind === 'volume') {
          const base = Math.max(mean, s.floor);
          const ratio = v / base;
          const z = (v - mean) / Math.max(sd, s.floor * 0.25);
          if (ratio >= minRatio && z >= minZ) {
            const mag = Math.log(ratio / minRatio) / Math.log(20 / minRatio);
            pts = s.max * Math.min(1, 0.5 + 0.5 * Math.max(0, mag));
            detail = `${FEATURES[s.f]} ${fmt(x[s.f]!)} is ${fmt(ratio)}× its baseline ${fmt(mean)}${s.normalise && mf > 1 ? ` (mesh load ${fmt(mf)}× discounted)` : ''}`;
          }
        } else if (x[F.requestsIn]! >= 10) {
          const delta = v - mean;
          const z = delta / Math.max(sd, 0.02);
          if (delta >= s.floor && z >= minZ) {
            pts = s.max * Math.min(1, 0.5 + delta);
            detail = `${FEATURES[s.f]} ${fmt(v * 100)}% against a baseline of ${fmt(mean * 100)}%`;
          }
        }
        if (pts > 0) {
          if (item.sensitive && (s.f === F.bytesOut || s.f === F.bytesIn)) {
            pts = Math.min(100, pts * SENSITIVE_BYTES);
            detail += ' from a sensitive service';
          }
          reasons.push({ detector: 'baseline', feature: FEATURES[s.f]!, detail, points: round(pts) });
          flagged |= 1 << s.f;
        }
      }
      const ne = x[F.newEdges]!;
      if (ne > 0) {
        const pts = ne >= 3 ? 70 : ne === 2 ? 60 : 45;
        const names = item.newEdges?.length ? `: ${item.newEdges.slice(0, 5).join(', ')}` : '';
        reasons.push({ detector: 'baseline', feature: 'newEdges', detail: `${ne} edge${ne > 1 ? 's' : ''} never seen in the baseline${names}`, points: pts });
      }
      const np = x[F.newPaths]!;
      if (np > 0) {
        reasons.push({ detector: 'baseline', feature: 'newPaths', detail: `${np} path${np > 1 ? 's' : ''} never seen in the baseline`, points: np >= 3 ? 20 : np === 2 ? 15 : 10 });
      }
    }

    for (const r of cfg.risk.rules) {
      if (r.subject !== item.kind) continue;
      const v = x[F[r.feature as keyof typeof F]]!;
      if (v > r.above) reasons.push({ detector: 'rules', feature: r.feature, detail: `rule ${r.name}: ${r.feature} ${fmt(v)} > ${r.above}`, points: r.points });
    }

    // Control charts and change points learn from the first window but only vote once warm; each
    // votes only on strong evidence so that ordinary noise cannot add up to a zone.
    if (m.charts || m.cps) {
      const d = cfg.detectors;
      for (let c = 0; c < CHARTED.length; c++) {
        const f = CHARTED[c]!;
        const v = norm[f]!;
        if (m.charts) {
          const s = m.charts[c]!.update(v, at);
          if (warm && s > 0.99 && v > m.mean[f]!) {
            reasons.push({ detector: `control-chart:${d.controlChart.detector}`, feature: FEATURES[f]!, detail: `${FEATURES[f]} outside its control limits (score ${fmt(s)})`, points: round(d.controlChart.weight * Math.min(1, (s - 0.99) / 0.009)) });
          }
        }
        if (m.cps) {
          const s = m.cps[c]!.update(v, at);
          if (warm && s > 0.5 && v > m.mean[f]!) {
            reasons.push({ detector: `change-point:${d.changePoint.detector}`, feature: FEATURES[f]!, detail: `sustained shift in ${FEATURES[f]} (score ${fmt(s)})`, points: round(d.changePoint.weight * Math.min(1, (s - 0.5) * 2)) });
          }
        }
      }
    }

    if (cfg.detectors.multivariate.enabled && item.kind !== 'principal') {
      // One population model per subject kind over features relative to each subject's own
      // baseline: it learns what "unusual for itself" looks like across the mesh, at the cost of
      // one model per kind instead of one per subject.
      let h = this.hst.get(item.kind);
      if (!h) {
        h = getVectorDetector(NF, 'half-space-trees', { seed: cfg.detectors.multivariate.seed + item.kind.length, window: 256, trees: 15, depth: 8 });
        this.hst.set(item.kind, h);
      }
      const rel = this.rel;
      for (let f = 0; f < NF; f++) rel[f] = Math.log1p(norm[f]!) - Math.log1p(m.mean[f]!);
      const s = h.update(rel, at);
      if (warm && s > 0.8) {
        const top = topDeviation(rel);
        reasons.push({ detector: 'multivariate:half-space-trees', feature: FEATURES[top]!, detail: `unusual combination of features (score ${fmt(s)}), mostly ${FEATURES[top]}`, points: round(cfg.detectors.multivariate.weight * Math.min(1, (s - 0.8) / 0.2)) });
      }
    }

    // Combine as independent evidence (noisy-OR): two moderate signals outweigh one, none alone
    // reaches 100, and adding a reason never lowers the score.
    let keep = 1;
    for (const r of reasons) keep *= 1 - Math.min(100, Math.max(0, r.points ?? 0)) / 100;
    const score = round(100 * (1 - keep));
    reasons.sort((a, b) => (b.points ?? 0) - (a.points ?? 0));

    this.learn(m, norm, score, flagged);
    return { key: item.key, score, reasons, warmingUp: !warm };
  }

  private learn(m: SubjectModel, x: Float64Array, score: number, flagged: number): void {
    m.n++;
    // Anomalous evidence teaches the baseline ten times more slowly (per feature, and for the
    // whole window when the score is high), so an attack cannot become the new normal — nor
    // inflate the variance it is judged against — within a few windows.
    let a = Math.max(this.cfg.risk.baselineAlpha, 1 / m.n);
    if (score >= this.cfg.risk.levels.high && m.n > this.cfg.risk.warmupWindows) a /= 10;
    for (let f = 0; f < NF; f++) {
      const af = flagged & (1 << f) ? a / 10 : a;
      const d = x[f]! - m.mean[f]!;
      const inc = af * d;
      m.mean[f] = m.mean[f]! + inc;
      m.var[f] = (1 - af) * (m.var[f]! + d * inc);
    }
  }

  /** Learned baselines, for snapshots (detector internals are re-learned after a restore). */
  exportBaselines(): Array<[string, number, number[], number[]]> {
    const out: Array<[string, number, number[], number[]]> = [];
    for (const [k, m] of this.models.entries()) out.push([k, m.n, Array.from(m.mean), Array.from(m.var)]);
    return out.reverse();
  }

  importBaselines(rows: Array<[string, number, number[], number[]]>): void {
    for (const [k, n, mean, v] of rows) {
      const m = this.model(k);
      m.n = n;
      m.mean.set(mean.slice(0, NF));
      m.var.set(v.slice(0, NF));
    }
  }
}

function topDeviation(rel: Float64Array): number {
  let best = 0;
  for (let f = 1; f < rel.length; f++) if (Math.abs(rel[f]!) > Math.abs(rel[best]!)) best = f;
  return best;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

export function fmt(x: number): string {
  if (Math.abs(x) >= 100) return String(Math.round(x));
  return String(Math.round(x * 10) / 10);
}
