import type { DetectorExplanation, SeriesDetector, SeriesDetectorFactory } from './detector.js';
import { numOpt } from './options.js';
import { EwStats, SlidingMax, WindowStats } from './stats.js';

const DAY_MS = 86_400_000;

/** Which component produced the last statistic (reported in explanations). */
export const ENSEMBLE_COMPONENTS = ['level', 'seasonal', 'step', 'shift'] as const;

/**
 * The default series detector, built for the mixed signals a mesh produces (rates with daily
 * cycles, bursty error counts, latency steps) and tuned on NAB without reading labels at run time.
 *
 * Per value it forms deviation statistics in σ units and keeps the largest:
 *  - level:    |x − mean| against a long sliding window (spikes and outliers);
 *  - seasonal: |x − expected value for this time of day| against the pooled seasonal residual, so
 *              a daily peak is normal but the same value at night is not (uses the data's own
 *              timestamps; off when they carry no time of day);
 *  - step:     the change from the previous value against the usual changes (sudden jumps);
 *  - shift:    the mean of a short recent window against the long window (sustained level shifts).
 * The statistic z maps to z/(z+c), which never saturates, so scores stay comparable and rankable.
 * Then peak novelty: a value that is not above the highest statistic of the last `peakWindow`
 * values is damped — an ongoing incident is reported once at its onset, not on every sample,
 * which is what an alerting engine (and NAB's scoring) wants.
 */
export class Ensemble implements SeriesDetector {
  private readonly win: WindowStats;
  private readonly steps: WindowStats;
  private readonly recent: WindowStats;
  private readonly c: number;
  private readonly wLevel: number;
  private readonly wSeason: number;
  private readonly wStep: number;
  private readonly wShift: number;
  private readonly buckets: number;
  private readonly bucketAlpha: number;
  private readonly bucketWarmup: number;
  private readonly bucketMean: Float64Array;
  private readonly bucketN: Int32Array;
  private readonly resid: EwStats;
  private readonly peaks: SlidingMax;
  private readonly damp: number;
  private readonly warmup: number;
  private prev = NaN;
  private last: DetectorExplanation = { statistic: 0, baseline: 0, spread: 0 };
  private lastComponent = 0;

  constructor(opts?: Record<string, unknown>) {
    this.win = new WindowStats(Math.round(numOpt(opts, 'window', 2000, 10)));
    this.steps = new WindowStats(this.win.size);
    this.recent = new WindowStats(Math.round(numOpt(opts, 'recent', 10, 2)));
    this.c = numOpt(opts, 'c', 5, 1e-6);
    this.wLevel = numOpt(opts, 'levelWeight', 1, 0);
    this.wSeason = numOpt(opts, 'seasonalWeight', 0.5, 0);
    this.wStep = numOpt(opts, 'stepWeight', 0, 0);
    this.wShift = numOpt(opts, 'shiftWeight', 0, 0);
    this.buckets = Math.round(numOpt(opts, 'buckets', 288, 1, 100_000));
    this.bucketAlpha = numOpt(opts, 'bucketAlpha', 0.3, 1e-6, 1);
    this.bucketWarmup = numOpt(opts, 'bucketWarmup', 3, 1);
    this.bucketMean = new Float64Array(this.buckets);
    this.bucketN = new Int32Array(this.buckets);
    this.resid = new EwStats(numOpt(opts, 'residualAlpha', 0.01, 1e-6, 1));
    this.peaks = new SlidingMax(Math.round(numOpt(opts, 'peakWindow', 300, 1)));
    this.damp = numOpt(opts, 'damp', 0, 0, 1);
    this.warmup = numOpt(opts, 'warmup', 10, 2);
  }

  update(x: number, t: number): number {
    let z = 0;
    let comp = 0;
    const w = this.win;
    const floor = 1e-6 * (Math.abs(w.mean) + 1e-3);
    if (w.count > this.warmup) {
      const sd = Math.max(w.std, floor);
      if (this.wLevel) z = (this.wLevel * Math.abs(x - w.mean)) / sd;
      if (this.wShift && this.recent.full) {
        const zs = (this.wShift * Math.abs(this.recent.mean - w.mean)) / sd;
        if (zs > z) ((z = zs), (comp = 3));
      }
      if (this.wStep && this.steps.count > this.warmup) {
        const zs = (this.wStep * Math.abs(x - this.prev - this.steps.mean)) / Math.max(this.steps.std, floor);
        if (zs > z) ((z = zs), (comp = 2));
      }
      this.last = { statistic: z, baseline: w.mean, spread: sd };
    }
    if (this.wSeason && Number.isFinite(t)) {
      const b = Math.floor((((t % DAY_MS) + DAY_MS) % DAY_MS) * (this.buckets / DAY_MS));
      const n = this.bucketN[b]!;
      const m = this.bucketMean[b]!;
      if (n >= this.bucketWarmup && this.resid.n > 50) {
        const sd = Math.max(this.resid.std, floor);
        const zs = (this.wSeason * Math.abs(x - m)) / sd;
        if (zs > z) {
          z = zs;
          comp = 1;
          this.last = { statistic: zs, baseline: m, spread: sd };
        }
      }
      if (n > 0) this.resid.push(x - m);
      this.bucketMean[b] = n === 0 ? x : m + this.bucketAlpha * (x - m);
      this.bucketN[b] = n + 1;
    }
    if (!Number.isNaN(this.prev)) this.steps.push(x - this.prev);
    w.push(x);
    this.recent.push(x);
    this.prev = x;
    this.lastComponent = comp;
    let score = z / (z + this.c);
    if (z <= this.peaks.max) score *= this.damp;
    this.peaks.push(z);
    return score;
  }

  explain(): DetectorExplanation & { component: string } {
    return { ...this.last, component: ENSEMBLE_COMPONENTS[this.lastComponent]! };
  }
}

export const ensembleFactory: SeriesDetectorFactory = {
  name: 'ensemble',
  description: 'Level + time-of-day + step + shift deviations with peak novelty; tuned on NAB (the default)',
  create: (opts) => new Ensemble(opts),
};
