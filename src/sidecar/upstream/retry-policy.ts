import { ConfigError } from '../../core/errors.js';

/**
 * Retry policy of a route (Envoy's retry_policy): how many attempts, which failures are worth a
 * second try, a timeout per try, jittered exponential backoff. Retries multiply load exactly when
 * an upstream is weakest, so two brakes apply: only idempotent methods are retried unless the
 * route says otherwise (a POST is never sent twice by default), and a budget (RetryBudget) caps
 * retries to a fraction of the requests.
 */

export type RetryOn =
  | 'connect-failure'
  | 'reset'
  | '5xx'
  | 'gateway-error'
  | '503'
  | 'retriable-4xx'
  | 'retriable-status-codes'
  | 'timeout';

export interface RetryConfig {
  /** Retries after the first try (Envoy's num_retries); 0 turns retries off. */
  attempts?: number;
  perTryTimeoutMs?: number;
  retryOn?: RetryOn[];
  retriableStatusCodes?: number[];
  /** Also retry methods that are not idempotent (POST, PATCH). Off by default. */
  retryNonIdempotent?: boolean;
  backoff?: { baseMs?: number; maxMs?: number };
}

export const RETRY_DEFAULTS = {
  attempts: 2,
  retryOn: ['connect-failure', 'reset', '503'] as RetryOn[],
  backoff: { baseMs: 25, maxMs: 250 },
};

export const retrySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    attempts: { type: 'integer', minimum: 0, maximum: 10 },
    perTryTimeoutMs: { type: 'integer', minimum: 1 },
    retryOn: {
      type: 'array',
      items: { enum: ['connect-failure', 'reset', '5xx', 'gateway-error', '503', 'retriable-4xx', 'retriable-status-codes', 'timeout'] },
    },
    retriableStatusCodes: { type: 'array', items: { type: 'integer', minimum: 100, maximum: 599 } },
    retryNonIdempotent: { type: 'boolean' },
    backoff: {
      type: 'object',
      additionalProperties: false,
      properties: { baseMs: { type: 'integer', minimum: 0 }, maxMs: { type: 'integer', minimum: 0 } },
    },
  },
} as const;

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How one try ended, as the router saw it. */
export type AttemptOutcome =
  | { kind: 'response'; status: number }
  /** The connection could not be made: nothing reached the upstream. */
  | { kind: 'connect-failure' }
  /** The connection closed or reset after the request (or part of it) was sent. */
  | { kind: 'reset' }
  | { kind: 'timeout' };

export class RetryPolicy {
  readonly attempts: number;
  readonly perTryTimeoutMs: number | undefined;
  private readonly on: Set<RetryOn>;
  private readonly codes: Set<number>;
  private readonly nonIdempotent: boolean;
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(cfg: RetryConfig = {}, file = 'routes', field = '/retries') {
    this.attempts = cfg.attempts ?? RETRY_DEFAULTS.attempts;
    this.perTryTimeoutMs = cfg.perTryTimeoutMs;
    this.on = new Set(cfg.retryOn ?? RETRY_DEFAULTS.retryOn);
    this.codes = new Set(cfg.retriableStatusCodes ?? []);
    if (this.on.has('retriable-status-codes') && this.codes.size === 0) {
      throw new ConfigError(file, `${field}/retriableStatusCodes`, "is required when retryOn has 'retriable-status-codes'");
    }
    this.nonIdempotent = cfg.retryNonIdempotent ?? false;
    this.baseMs = cfg.backoff?.baseMs ?? RETRY_DEFAULTS.backoff.baseMs;
    this.maxMs = Math.max(this.baseMs, cfg.backoff?.maxMs ?? RETRY_DEFAULTS.backoff.maxMs);
  }

  /** Whether this outcome of a try is worth another one (budget and attempt count aside). */
  retriable(method: string, outcome: AttemptOutcome): boolean {
    // A connect failure sent nothing, so even a POST is safe to try elsewhere.
    if (outcome.kind === 'connect-failure') return this.on.has('connect-failure');
    if (!this.nonIdempotent && !IDEMPOTENT.has(method)) return false;
    switch (outcome.kind) {
      case 'reset':
        return this.on.has('reset');
      case 'timeout':
        return this.on.has('timeout');
      case 'response': {
        const s = outcome.status;
        if (s >= 500) {
          if (this.on.has('5xx')) return true;
          if (s === 503 && this.on.has('503')) return true;
          if ((s === 502 || s === 503 || s === 504) && this.on.has('gateway-error')) return true;
        }
        if (s === 409 && this.on.has('retriable-4xx')) return true;
        return this.codes.has(s);
      }
    }
  }

  /** Full-jitter exponential backoff before retry number `n` (1-based), in ms. */
  backoffMs(n: number, random: () => number = Math.random): number {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** Math.max(0, n - 1));
    return Math.floor(random() * cap);
  }
}

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/**
 * Retry budget (Finagle's): every request deposits `percent`/100 of a token, every retry
 * withdraws one, deposits expire after `ttlMs`; a small floor of retries per second keeps rare
 * retries possible at low traffic. Under a total outage this bounds extra load to `percent`% plus
 * the floor, instead of multiplying it by the attempt count.
 */
export interface RetryBudgetConfig {
  percent?: number;
  minRetriesPerSec?: number;
  ttlMs?: number;
}

export const retryBudgetSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    percent: { type: 'number', minimum: 0, maximum: 1000 },
    minRetriesPerSec: { type: 'number', minimum: 0 },
    ttlMs: { type: 'integer', minimum: 1000 },
  },
} as const;

const BUCKETS = 10;

export class RetryBudget {
  private readonly ratio: number;
  private readonly floor: number;
  private readonly bucketMs: number;
  // Per time bucket: requests seen and retries spent; a ring of BUCKETS covering ttlMs.
  private readonly reqs = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);
  private epoch = -1;

  constructor(cfg: RetryBudgetConfig = {}) {
    this.ratio = (cfg.percent ?? 20) / 100;
    const ttl = cfg.ttlMs ?? 10_000;
    this.floor = (cfg.minRetriesPerSec ?? 3) * (ttl / 1000);
    this.bucketMs = ttl / BUCKETS;
  }

  private roll(now: number): number {
    const e = Math.floor(now / this.bucketMs);
    if (this.epoch < 0) this.epoch = e;
    if (e - this.epoch >= BUCKETS) {
      this.reqs.fill(0);
      this.retries.fill(0);
    } else {
      for (let x = this.epoch + 1; x <= e; x++) {
        this.reqs[x % BUCKETS] = 0;
        this.retries[x % BUCKETS] = 0;
      }
    }
    if (e > this.epoch) this.epoch = e;
    return e % BUCKETS;
  }

  /** Count a first try. */
  onRequest(now: number): void {
    this.reqs[this.roll(now)]! += 1;
  }

  /** Take a token for one retry if the budget allows; false means do not retry. */
  tryRetry(now: number): boolean {
    const i = this.roll(now);
    let r = 0;
    let q = 0;
    for (let k = 0; k < BUCKETS; k++) {
      r += this.reqs[k]!;
      q += this.retries[k]!;
    }
    if (q + 1 > this.floor + this.ratio * r) return false;
    this.retries[i]! += 1;
    return true;
  }
}
