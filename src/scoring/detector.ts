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
