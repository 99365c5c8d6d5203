/**
 * The detector contract shared by the Risk Assessment Engine (manager), `etz detect`, `etz replay`
 * and the sidecars' inline per-principal scoring. Every detector is streaming and causal: the
 * score for observation i depends only on observations 0..i, and randomness is seeded, so the
 * same input always gives the same output.
 */

/** One univariate series: feed values in time order, get an anomaly score in [0, 1]. */
export interface SeriesDetector {
  /** `t` is epoch milliseconds of the observation (from the data, never the wall clock). */
  update(value: number, t: number): number;
  /** Why the last score was what it was (optional; the engine shows it in risk explanations). */
  explain?(): DetectorExplanation;
}

/** The numbers behind a detector's last score, in the units of the series. */
export interface DetectorExplanation {
  /** The detector's own statistic (e.g. EWMA deviation in σ, CUSUM sum, test statistic). */
  statistic: number;
  /** The expected value the observation was compared with. */
  baseline: number;
  /** The spread used to standardise (σ or equivalent); 0 while warming up. */
  spread: number;
}

/** Multivariate: a feature vector per observation (e.g. a subject's window of features). */
export interface VectorDetector {
  update(features: Float64Array | number[], t: number): number;
}

export interface SeriesDetectorFactory {
  readonly name: string;
  readonly description: string;
  create(options?: Record<string, unknown>): SeriesDetector;
}

export interface VectorDetectorFactory {
  readonly name: string;
  readonly description: string;
  /** `dimensions` is the length of every feature vector this detector will be given. */
  create(dimensions: number, options?: Record<string, unknown>): VectorDetector;
}
