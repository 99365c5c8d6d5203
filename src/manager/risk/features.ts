/**
 * Per-subject window accumulators and the feature vector they close into. One accumulator per
 * subject per open window; closing it yields a fixed-length Float64Array so the scoring step can
 * run over typed arrays (and be shipped to a worker without object graphs).
 */

import { reservoirOffer } from '../../scoring/stats.js';

export const FEATURES = [
  'requestsIn',
  'requestsOut',
  'errorRate',
  'clientErrorRate',
  'authFailures',
  'latencyP50',
  'latencyP95',
  'bytesIn',
  'bytesOut',
  'fanOut',
  'newEdges',
  'newPaths',
  'principals',
  'errorLogs',
] as const;

export type FeatureName = (typeof FEATURES)[number];
export const F = Object.fromEntries(FEATURES.map((n, i) => [n, i])) as { [K in FeatureName]: number };
export const NF = FEATURES.length;

const RESERVOIR = 64;
const MAX_SET = 256;
// Error records kept per accumulator until the window closes, to excuse the ones whose request met
// a mesh decision further down the call chain (that record may arrive later in the window).
const MAX_ERR_IDS = 128;

/** Which error counters one record raised (so an excused record can be taken back exactly). */
export const ERR_5XX = 1;
export const ERR_4XX = 2;
export const ERR_AUTH = 4;

export class WindowAcc {
  requestsIn = 0;
  requestsOut = 0;
  err5xx = 0;
  err4xx = 0;
  authFailures = 0;
  bytesIn = 0;
  bytesOut = 0;
  errorLogs = 0;
  latencies: number[] = [];
  private latSeen = 0;
  dests: Set<string> | null = null;
  newDests: string[] | null = null;
  paths: Set<string> | null = null;
  newPaths = 0;
  newPathNames: string[] | null = null;
  principals: Set<string> | null = null;
  /** Errors not counted because their request met a mesh decision downstream. */
  excused = 0;
  errIds: string[] | null = null;
  errFlags: number[] | null = null;

  latency(ms: number): void {
    reservoirOffer(this.latencies, this.latSeen++, ms, RESERVOIR);
  }

  addDest(d: string): boolean {
    if (!this.dests) this.dests = new Set();
    if (this.dests.has(d) || this.dests.size >= MAX_SET) return false;
    this.dests.add(d);
    return true;
  }

  addPrincipal(p: string): void {
    if (!this.principals) this.principals = new Set();
    if (this.principals.size < MAX_SET * 4) this.principals.add(p);
  }

  /** Remember an error record's request id until the window closes (bounded). */
  noteError(id: string, flags: number): void {
    if (!this.errIds) {
      this.errIds = [];
      this.errFlags = [];
    }
    if (this.errIds.length >= MAX_ERR_IDS) return;
    this.errIds.push(id);
    this.errFlags!.push(flags);
  }

  /** Take back one error record's counts: its cause was a mesh decision, not this subject. */
  excuse(flags: number): void {
    if (flags & ERR_5XX) this.err5xx--;
    if (flags & ERR_4XX) this.err4xx--;
    if (flags & ERR_AUTH) this.authFailures--;
    this.excused++;
  }

  addPath(p: string): boolean {
    if (!this.paths) this.paths = new Set();
    if (this.paths.has(p) || this.paths.size >= MAX_SET) return false;
    this.paths.add(p);
    return true;
  }

  /** Close the window into a feature vector. */
  features(out: Float64Array = new Float64Array(NF)): Float64Array {
    const inbound = this.requestsIn;
    out[F.requestsIn] = inbound;
    out[F.requestsOut] = this.requestsOut;
    out[F.errorRate] = inbound > 0 ? this.err5xx / inbound : 0;
    out[F.clientErrorRate] = inbound > 0 ? this.err4xx / inbound : 0;
    out[F.authFailures] = this.authFailures;
    const [p50, p95] = percentiles(this.latencies);
    out[F.latencyP50] = p50;
    out[F.latencyP95] = p95;
    out[F.bytesIn] = this.bytesIn;
    out[F.bytesOut] = this.bytesOut;
    out[F.fanOut] = this.dests ? this.dests.size : 0;
    out[F.newEdges] = this.newDests ? this.newDests.length : 0;
    out[F.newPaths] = this.newPaths;
    out[F.principals] = this.principals ? this.principals.size : 0;
    out[F.errorLogs] = this.errorLogs;
    return out;
  }
}

function percentiles(xs: number[]): [number, number] {
  if (xs.length === 0) return [0, 0];
  const s = xs.slice().sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return [at(0.5), at(0.95)];
}

/** Sorted-sample quantile used by traffic analysis as well. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
