import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { EwStats, SlidingMax, WindowStats } from './stats.js';

const DAY_MS = 86_400_000;

/** The components, in the order of their statistics (reported in explanations). */
export const ENSEMBLE_COMPONENTS = ['level', 'seasonal', 'step', 'shift', 'local', 'likelihood', 'extreme'] as const;
export type EnsembleComponent = (typeof ENSEMBLE_COMPONENTS)[number];

/**
 * The default series detector, built for the mixed signals a mesh produces (rates with daily
 * cycles, bursty error counts, latency steps) and tuned on NAB without reading labels at run time.
 *
 * Per value it forms deviation statistics in σ units, one per component:
 *  - level:    |x − mean| against a long sliding window (spikes and outliers);
 *  - seasonal: |x − expected value for this time of day| against the pooled seasonal residual, so
 *              a daily peak is normal but the same value at night is not (uses the data's own
 *              timestamps; off when they carry no time of day);
 *  - step:     the change from the previous value against the usual changes (sudden jumps);
 *  - shift:    the mean of a short recent window against the long window (sustained level shifts);
 *  - local:    the one-step prediction error of an exponentially weighted local level;
 *  - likelihood: the recent average of the bounded statistic against its own long-run
 *              distribution (HTM's anomaly likelihood): a run of moderately surprising values.
 * The largest weighted statistic wins; z maps to z/(z+c), which never saturates, so scores stay
 * rankable. Then peak novelty: a value whose z is not clearly above a decaying recent peak is
 * damped — an ongoing incident is reported at its onset, not on every sample, which is what an
 * alerting engine (and NAB's scoring) wants. Finally extremes: a value beyond the whole range seen
 * so far (and at least `extremeMinZ` σ out) scores as a `extremeZ` deviation, at most once per
 * `extremeGap` values.
 */
export class Ensemble implements SeriesDetector {
  private readonly win: WindowStats;
  private readonly steps: WindowStats;
  private readonly recent: WindowStats;
  private readonly weights: Float64Array;
  private readonly zc = new Float64Array(5);
  private readonly c: number;
  private readonly buckets: number;
  private readonly bucketAlpha: number;
  private readonly periodMs: number;
  private readonly bucketWarmup: number;
  private readonly bucketMean: Float64Array;
  private readonly bucketN: Int32Array;
  private readonly resid: EwStats;
  private readonly localLevel: EwStats;
  private readonly localResid: EwStats;
  private readonly peaks: SlidingMax;
  private readonly peakDecay: number;
  private readonly peakRatio: number;
  private decayedPeak = 0;
  private readonly likWeight: number;
  private readonly likScale: number;
  private readonly likWarmup: number;
  private readonly likWin: WindowStats;
  private readonly likHist: EwStats;
  private readonly extremeTol: number;
  private readonly extremeWarmup: number;
  private readonly extremeZ: number;
  private readonly extremeMinZ: number;
  private readonly extremeGap: number;
  private lastExtreme = -Infinity;
  private hi = 0;
  private lo = 0;
  private seen = 0;
  private readonly damp: number;
  private readonly warmup: number;
  private prev = NaN;
  private last: DetectorExplanation & { component: EnsembleComponent } = { statistic: 0, baseline: 0, spread: 0, component: 'level' };
  private readonly baselines = new Float64Array(ENSEMBLE_COMPONENTS.length);
  private readonly spreads = new Float64Array(ENSEMBLE_COMPONENTS.length);

  constructor(opts?: Record<string, unknown>) {
    this.win = new WindowStats(Math.round(numOpt(opts, 'window', 4000, 10)));
    this.steps = new WindowStats(this.win.size);
    this.recent = new WindowStats(Math.round(numOpt(opts, 'recent', 10, 2)));
    this.weights = Float64Array.from([
      numOpt(opts, 'levelWeight', 1, 0),
      numOpt(opts, 'seasonalWeight', 0.5, 0),
      numOpt(opts, 'stepWeight', 0, 0),
      numOpt(opts, 'shiftWeight', 0, 0),
      numOpt(opts, 'localWeight', 0, 0),
    ]);
    this.c = numOpt(opts, 'c', 5, 1e-6);
    this.buckets = Math.round(numOpt(opts, 'buckets', 288, 1, 100_000));
    this.periodMs = DAY_MS * numOpt(opts, 'periodDays', 1, 1 / 24, 28);
    this.bucketAlpha = numOpt(opts, 'bucketAlpha', 0.3, 1e-6, 1);
    this.bucketWarmup = numOpt(opts, 'bucketWarmup', 3, 1);
    this.bucketMean = new Float64Array(this.buckets);
    this.bucketN = new Int32Array(this.buckets);
    this.resid = new EwStats(numOpt(opts, 'residualAlpha', 0.01, 1e-6, 1));
    this.localLevel = new EwStats(numOpt(opts, 'localAlpha', 0.2, 1e-6, 1));
    this.localResid = new EwStats(numOpt(opts, 'localResidAlpha', 0.01, 1e-6, 1));
    this.peaks = new SlidingMax(Math.round(numOpt(opts, 'peakWindow', 300, 1)));
    this.peakDecay = numOpt(opts, 'peakDecay', 0.995, 0, 1);
    this.peakRatio = numOpt(opts, 'peakRatio', 1.3, 0);
    this.likWeight = numOpt(opts, 'likelihoodWeight', 1, 0);
    this.likScale = numOpt(opts, 'likelihoodScale', 3, 1e-6);
    this.likWarmup = numOpt(opts, 'likelihoodWarmup', 300, 1);
    this.likWin = new WindowStats(Math.round(numOpt(opts, 'likelihoodShort', 5, 1)));
    this.likHist = new EwStats(numOpt(opts, 'likelihoodAlpha', 0.0005, 1e-7, 1));
    this.extremeTol = numOpt(opts, 'extremeTolerance', 0.02, 0);
    this.extremeWarmup = numOpt(opts, 'extremeWarmup', 150, 0);
    this.extremeZ = numOpt(opts, 'extremeZ', 10, 0);
    this.extremeMinZ = numOpt(opts, 'extremeMinZ', 4, 0);
    this.extremeGap = numOpt(opts, 'extremeGap', 100, 0);
    this.damp = numOpt(opts, 'damp', 0, 0, 1);
    this.warmup = numOpt(opts, 'warmup', 10, 2);
  }

  update(x: number, t: number): number {
    const zc = this.zc.fill(0);
    const wt = this.weights;
    const w = this.win;
    const floor = 1e-6 * (Math.abs(w.mean) + 1e-3);
    if (w.count > this.warmup) {
      const sd = Math.max(w.std, floor);
      this.note(0, w.mean, sd);
      zc[0] = Math.abs(x - w.mean) / sd;
      if (wt[3] && this.recent.full) {
        this.note(3, w.mean, sd);
        zc[3] = Math.abs(this.recent.mean - w.mean) / sd;
      }
      if (wt[2] && this.steps.count > this.warmup) {
        const ssd = Math.max(this.steps.std, floor);
        this.note(2, this.prev + this.steps.mean, ssd);
        zc[2] = Math.abs(x - this.prev - this.steps.mean) / ssd;
      }
    }
    if (wt[1] && Number.isFinite(t)) this.seasonal(x, t, floor);
    if (wt[4]) {
      const lv = this.localLevel;
      const r = this.localResid;
      if (lv.n > this.warmup && r.n > this.warmup) {
        const sd = Math.max(r.std, floor);
        this.note(4, lv.mean, sd);
        zc[4] = Math.abs(x - lv.mean) / sd;
      }
      if (lv.n > 0) r.push(x - lv.mean);
      lv.push(x);
    }
    if (!Number.isNaN(this.prev)) this.steps.push(x - this.prev);
    w.push(x);
    this.recent.push(x);
    this.prev = x;

    let z = 0;
    let best = 0;
    let top = 0;
    for (let i = 0; i < zc.length; i++) {
      const v = wt[i]! * zc[i]!;
      if (v > top) ((top = v), (best = i));
    }
    z = top;
    this.last = { statistic: z, baseline: this.baselines[best]!, spread: this.spreads[best]!, component: ENSEMBLE_COMPONENTS[best]! };

    if (this.likWeight > 0) {
      // Anomaly likelihood (as in HTM): is the recent average of the bounded per-value score
      // unusually high compared with its own long-run distribution? Catches a run of moderately
      // surprising values that no single value would flag.
      this.likWin.push(z / (z + this.likScale));
      const h = this.likHist;
      if (this.likWin.full) {
        const avg = this.likWin.mean;
        if (h.n > this.likWarmup) {
          const zl = (this.likWeight * (avg - h.mean)) / Math.max(h.std, 0.01);
          if (zl > z) {
            z = zl;
            this.last = { statistic: zl, baseline: h.mean, spread: h.std, component: 'likelihood' };
          }
        }
        h.push(avg);
      }
    }
    // A new all-time extreme well beyond the range seen so far is anomalous whatever σ says
    // (σ over a long window can be inflated by the very regime the value breaks out of).
    let extreme = false;
    if (this.extremeTol > 0) {
      const range = this.hi - this.lo;
      if (this.seen > this.extremeWarmup && range > 0) {
        const tol = range * this.extremeTol;
        extreme = (x > this.hi + tol || x < this.lo - tol) && z >= this.extremeMinZ;
      }
      if (x > this.hi || this.seen === 0) this.hi = x;
      if (x < this.lo || this.seen === 0) this.lo = x;
    }
    this.seen++;
    let score = z / (z + this.c);
    const ref = this.peakDecay < 1 ? this.decayedPeak : this.peaks.max;
    if (z <= ref * this.peakRatio) score *= this.damp;
    this.peaks.push(z);
    this.decayedPeak = Math.max(this.decayedPeak * this.peakDecay, z);
    if (extreme) {
      // Extremes bypass the statistical novelty test but are rate-limited on their own: a ramp
      // of successive new highs is one incident.
      if (this.seen - this.lastExtreme > this.extremeGap) {
        this.lastExtreme = this.seen;
        const se = this.extremeZ / (this.extremeZ + this.c);
        if (se > score) {
          score = se;
          this.last = { statistic: this.extremeZ, baseline: this.hi, spread: this.hi - this.lo, component: 'extreme' };
        }
      }
    }
    return score;
  }

  // Time-of-day profile: an EW mean per bucket of the day and one pooled residual spread (a
  // per-bucket spread would need weeks of data before it could be trusted).
  private seasonal(x: number, t: number, floor: number): void {
    const P = this.periodMs;
    const b = Math.floor((((t % P) + P) % P) * (this.buckets / P));
    const n = this.bucketN[b]!;
    const m = this.bucketMean[b]!;
    if (n >= this.bucketWarmup && this.resid.n > 50) {
      const sd = Math.max(this.resid.std, floor);
      this.note(1, m, sd);
      this.zc[1] = Math.abs(x - m) / sd;
    }
    if (n > 0) this.resid.push(x - m);
    this.bucketMean[b] = n === 0 ? x : m + this.bucketAlpha * (x - m);
    this.bucketN[b] = n + 1;
  }

  private note(i: number, baseline: number, spread: number): void {
    this.baselines[i] = baseline;
    this.spreads[i] = spread;
  }

  explain(): DetectorExplanation & { component: EnsembleComponent } {
    return this.last;
  }
}

export const ensembleFactory: SeriesDetectorFactory = {
  name: 'ensemble',
  description: 'Level, time-of-day, likelihood and all-time-extreme deviations with peak novelty; tuned on NAB',
  create: (opts) => new Ensemble(opts),
};
