/**
 * A port of the Numenta Anomaly Benchmark scoring (NAB v1.x `sweeper.py`, `optimizer`, `scorer`,
 * normalisation in `runner.py`). Semantics kept exactly, including NAB's quirks: the `+ 1` in the
 * position inside a window, true positives divided by the maximum sigmoid value, one threshold
 * per profile optimised over the whole corpus, and rows in the probationary period dropped.
 */

export interface CostProfile {
  tpWeight: number;
  fpWeight: number;
  fnWeight: number;
  tnWeight: number;
}

/** NAB's config/profiles.json. */
export const PROFILES: Record<string, CostProfile> = {
  standard: { tpWeight: 1.0, fpWeight: 0.11, fnWeight: 1.0, tnWeight: 1.0 },
  reward_low_FP_rate: { tpWeight: 1.0, fpWeight: 0.22, fnWeight: 1.0, tnWeight: 1.0 },
  reward_low_FN_rate: { tpWeight: 1.0, fpWeight: 0.11, fnWeight: 2.0, tnWeight: 1.0 },
};

export const PROBATION_PERCENT = 0.15;

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** −1 at the far right of the scale, ≈0.98661 at the left edge of a window, 0 at its right edge. */
export function scaledSigmoid(relativePositionInWindow: number): number {
  if (relativePositionInWindow >= 3.0) return -1.0;
  return 2 * sigmoid(-5 * relativePositionInWindow) - 1.0;
}

export function probationaryLength(numRows: number, probationPercent = PROBATION_PERCENT): number {
  return Math.min(Math.floor(probationPercent * numRows), probationPercent * 5000);
}

/** One scored row: `windowName` is null outside windows, 'probationary' inside the probation period. */
export interface AnomalyPoint {
  anomalyScore: number;
  sweepScore: number;
  windowName: string | null;
}

export interface ThresholdScore {
  threshold: number;
  score: number;
  tp: number;
  tn: number;
  fp: number;
  fn: number;
  total: number;
}

const PROBATIONARY = 'probationary';

/**
 * The sweep score of every row of one data file: what detecting at that row would earn (inside a
 * window) or cost (outside). `windows` are [startIndex, endIndex] pairs into the rows, in order.
 */
export function calcSweepScore(
  anomalyScores: ArrayLike<number>,
  windows: ReadonlyArray<readonly [number, number]>,
  dataSetName: string,
  profile: CostProfile,
  probationPercent = PROBATION_PERCENT,
): AnomalyPoint[] {
  const n = anomalyScores.length;
  const maxTP = scaledSigmoid(-1.0);
  const probation = probationaryLength(n, probationPercent);
  const pending = windows.slice();
  const out: AnomalyPoint[] = new Array(n);
  let curName: string | null = null;
  let curRight = -1;
  let curWidth = 0;
  let inWindow = false;
  let prevRight: number | null = null;
  let prevWidth = 0;
  for (let i = 0; i < n; i++) {
    if (pending.length > 0 && i === pending[0]![0]) {
      const w = pending.shift()!;
      inWindow = true;
      curName = `${dataSetName}|${w[0]}`;
      curRight = w[1];
      curWidth = w[1] - w[0] + 1;
    }
    let weighted: number;
    if (inWindow) {
      const positionInWindow = -(curRight - i + 1) / curWidth;
      weighted = (scaledSigmoid(positionInWindow) * profile.tpWeight) / maxTP;
    } else {
      const positionPastWindow = prevRight === null ? 3.0 : Math.abs(prevRight - i) / (prevWidth - 1);
      weighted = scaledSigmoid(positionPastWindow) * profile.fpWeight;
    }
    out[i] = { anomalyScore: anomalyScores[i]!, sweepScore: weighted, windowName: i >= probation ? curName : PROBATIONARY };
    if (inWindow && i === curRight) {
      prevRight = i;
      prevWidth = curWidth;
      inWindow = false;
      curName = null;
    }
  }
  return out;
}

/**
 * Scores for every distinct threshold, from above the maximum (nothing detected) down to the
 * minimum score (everything detected). A window counts once, by its best (earliest) detection;
 * every false positive counts.
 */
export function calcScoreByThreshold(anomalyList: readonly AnomalyPoint[], profile: CostProfile): ThresholdScore[] {
  const scorable = anomalyList.filter((x) => x.windowName !== PROBATIONARY);
  // NAB sorts with Python's stable sort, descending by score.
  scorable.sort((a, b) => b.anomalyScore - a.anomalyScore);
  const parts = new Map<string, number>();
  for (const row of scorable) if (row.windowName !== null) parts.set(row.windowName, -profile.fnWeight);
  let fpPart = 0;
  let windowPart = -profile.fnWeight * parts.size;
  const result: ThresholdScore[] = [];
  let curThreshold = 1.1;
  let tn = 0;
  let fn = 0;
  for (const x of scorable) (x.windowName === null ? tn++ : fn++);
  let tp = 0;
  let fp = 0;
  for (const p of scorable) {
    if (p.anomalyScore !== curThreshold) {
      result.push({ threshold: curThreshold, score: fpPart + windowPart, tp, tn, fp, fn, total: tp + tn + fp + fn });
      curThreshold = p.anomalyScore;
    }
    if (p.windowName !== null) {
      tp++;
      fn--;
      const old = parts.get(p.windowName)!;
      if (p.sweepScore > old) {
        parts.set(p.windowName, p.sweepScore);
        windowPart += p.sweepScore - old;
      }
    } else {
      fp++;
      tn--;
      fpPart += p.sweepScore;
    }
  }
  result.push({ threshold: curThreshold, score: fpPart + windowPart, tp, tn, fp, fn, total: tp + tn + fp + fn });
  return result;
}

/** NAB's scoreDataSet: the row for `threshold` (points with score ≥ threshold are detections). */
export function scoreAtThreshold(byThreshold: readonly ThresholdScore[], threshold: number): ThresholdScore {
  let prev: ThresholdScore | undefined;
  for (const row of byThreshold) {
    if (row.threshold === threshold) return row;
    if (row.threshold < threshold) return prev ?? row;
    prev = row;
  }
  // Threshold below every score: everything is a detection, which is the last row.
  return byThreshold[byThreshold.length - 1]!;
}

export interface DataFile {
  name: string;
  scores: ArrayLike<number>;
  windows: ReadonlyArray<readonly [number, number]>;
}

export interface ProfileResult {
  profile: string;
  threshold: number;
  rawScore: number;
  nullScore: number;
  perfectScore: number;
  normalized: number;
  tp: number;
  fp: number;
  fn: number;
  perFile: { name: string; score: number; tp: number; fp: number; fn: number }[];
}

/** Raw corpus score per threshold: all files' rows swept together, as NAB's optimizer does. */
export function optimizeThreshold(files: readonly DataFile[], profile: CostProfile): { threshold: number; score: number } {
  const all: AnomalyPoint[] = [];
  for (const f of files) for (const p of calcSweepScore(f.scores, f.windows, f.name, profile)) all.push(p);
  const rows = calcScoreByThreshold(all, profile);
  let best = rows[0]!;
  // Highest score wins; NAB's stable sort keeps the first (highest) threshold among ties.
  for (const r of rows) if (r.score > best.score) best = r;
  return { threshold: best.threshold, score: best.score };
}

/** Scores a corpus at a given threshold: per-file rows and their sum. */
export function scoreCorpus(files: readonly DataFile[], profile: CostProfile, threshold: number) {
  let raw = 0;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  const perFile = files.map((f) => {
    const row = scoreAtThreshold(calcScoreByThreshold(calcSweepScore(f.scores, f.windows, f.name, profile), profile), threshold);
    raw += row.score;
    tp += row.tp;
    fp += row.fp;
    fn += row.fn;
    return { name: f.name, score: row.score, tp: row.tp, fp: row.fp, fn: row.fn };
  });
  return { raw, tp, fp, fn, perFile };
}

/** Null detector: a constant score. Perfect detector: 1 on the first row of each window, else 0. */
export function nullScores(f: DataFile): Float64Array {
  return new Float64Array(f.scores.length).fill(0.5);
}

export function perfectScores(f: DataFile): Float64Array {
  const s = new Float64Array(f.scores.length);
  for (const [a] of f.windows) s[a] = 1;
  return s;
}

/** Optimise, score, and normalise one detector's results against the null and perfect detectors. */
export function evaluate(files: readonly DataFile[], profileName: string): ProfileResult {
  const profile = PROFILES[profileName];
  if (!profile) throw new Error(`unknown NAB profile ${profileName}`);
  const baseline = (mk: (f: DataFile) => Float64Array) => {
    const fs = files.map((f) => ({ ...f, scores: mk(f) }));
    return scoreCorpus(fs, profile, optimizeThreshold(fs, profile).threshold).raw;
  };
  const nullScore = baseline(nullScores);
  const perfectScore = baseline(perfectScores);
  const { threshold } = optimizeThreshold(files, profile);
  const s = scoreCorpus(files, profile, threshold);
  const normalized = (100 * (s.raw - nullScore)) / (perfectScore - nullScore);
  return { profile: profileName, threshold, rawScore: s.raw, nullScore, perfectScore, normalized, tp: s.tp, fp: s.fp, fn: s.fn, perFile: s.perFile };
}
