import { Piscina } from 'piscina';
import type { Logger } from '../../core/logger.js';
import type { Counter, Registry } from '../../core/metrics.js';
import type { FilterFactory, HttpFilter, RequestContext } from '../filter.js';
import { passThrough } from '../chain.js';
import { counter, instanceState, onInstanceClose } from '../routing/instance-state.js';
import { detectorFor } from '../routing/filter.js';
import type { RiskScoringSettings, ScoreReply, ScoreTask } from './risk-scoring-worker.js';

/**
 * The risk-scoring filter (the `riskScoring` resource, off unless `enabled: true`): inline
 * per-principal scoring with the zone manager's detector code, in a one-thread piscina pool.
 *
 * Per request the event loop does one thing: onComplete pushes (principal, request id, status,
 * time) onto four column arrays. Every `flushMs`, or once `batchSize` records are waiting, the
 * columns go to the worker as one task; it returns the principals whose score crossed the
 * threshold, and they are flagged in the routing filter's per-principal detector — the same
 * mechanism its own rate detector uses — so the next request of that user takes the route's
 * suspicious destination (and the gateway passes the verdict on in x-etz-suspicious).
 *
 * A resource rather than a static section: like routes and rate limits it is switched per
 * config version without a restart. The pool and the learned state belong to the sidecar
 * instance and survive versions; a version with new settings starts the worker's state afresh.
 * One batch is in flight at a time; while it is, records queue up to `maxQueued` and the excess
 * is dropped and counted, so a slow worker can never grow memory.
 */

export interface RiskScoringConfig extends Partial<RiskScoringSettings> {
  enabled?: boolean;
  flushMs?: number;
  batchSize?: number;
  maxQueued?: number;
}

export const RISK_SCORING_DEFAULTS = {
  threshold: 80,
  windowMs: 60_000,
  maxRequests: 100,
  maxErrors: 20,
  ttlMs: 300_000,
  maxPrincipals: 100_000,
  flushMs: 100,
  batchSize: 2_000,
  maxQueued: 50_000,
} as const;

const int = (min: number, max?: number) => ({ type: 'integer', minimum: min, ...(max !== undefined ? { maximum: max } : {}) });

export const riskScoringSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    enabled: { type: 'boolean' },
    threshold: { type: 'number', minimum: 1, maximum: 100 },
    windowMs: int(1),
    maxRequests: int(1, 1_000_000),
    maxErrors: int(1, 1_000_000),
    ttlMs: int(1),
    maxPrincipals: int(1, 10_000_000),
    flushMs: int(1, 60_000),
    batchSize: int(1, 1_000_000),
    maxQueued: int(1, 10_000_000),
  },
} as const;

/** The per-instance scoring engine: batch columns, the pool, the flush timer. */
export class RiskScorer {
  readonly #pool: Piscina;
  readonly #logger: Logger;
  readonly #flag: (principal: string, ttlMs: number) => void;
  readonly #flaggedTotal: Counter<string>;
  readonly #dropped: Counter<string>;
  #settings: RiskScoringSettings;
  #settingsId = 0;
  #sent = -1;
  #flushMs: number;
  #batchSize: number;
  #maxQueued: number;
  #principals: string[] = [];
  #ids: string[] = [];
  #statuses: number[] = [];
  #times: number[] = [];
  #timer: NodeJS.Timeout | null = null;
  #inFlight: Promise<void> | null = null;
  #closed = false;
  /** The last reply, for tests and the admin dump. */
  last: ScoreReply | undefined;

  constructor(registry: Registry, logger: Logger, flag: (principal: string, ttlMs: number) => void) {
    this.#pool = new Piscina({
      filename: new URL('./risk-scoring-worker.js', import.meta.url).href,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      maxQueue: 4,
    });
    this.#logger = logger;
    this.#flag = flag;
    this.#flaggedTotal = counter(registry, 'etz_risk_scoring_flagged_total', 'End-user principals flagged by the sidecar\'s inline risk scoring.', []);
    this.#dropped = counter(registry, 'etz_risk_scoring_dropped_total', 'Request records not scored because the scoring worker fell behind.', []);
    this.#settings = settingsOf({});
    this.#flushMs = RISK_SCORING_DEFAULTS.flushMs;
    this.#batchSize = RISK_SCORING_DEFAULTS.batchSize;
    this.#maxQueued = RISK_SCORING_DEFAULTS.maxQueued;
  }

  /** Adopt a version's settings (called when that version serves its first request). */
  configure(cfg: RiskScoringConfig): void {
    const s = settingsOf(cfg);
    if (JSON.stringify(s) !== JSON.stringify(this.#settings)) {
      this.#settings = s;
      this.#settingsId++;
    }
    this.#flushMs = cfg.flushMs ?? RISK_SCORING_DEFAULTS.flushMs;
    this.#batchSize = cfg.batchSize ?? RISK_SCORING_DEFAULTS.batchSize;
    this.#maxQueued = cfg.maxQueued ?? RISK_SCORING_DEFAULTS.maxQueued;
  }

  get threads(): number {
    return this.#pool.threads.length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The hot path: four array pushes, and a timer armed once per batch. */
  record(principal: string, id: string, status: number, t: number): void {
    const n = this.#principals.length;
    if (n >= this.#maxQueued || this.#closed) {
      this.#dropped.inc();
      return;
    }
    this.#principals.push(principal);
    this.#ids.push(id);
    this.#statuses.push(status);
    this.#times.push(t);
    if (n + 1 >= this.#batchSize) this.#kick();
    else if (this.#timer === null) this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#kick();
    }, this.#flushMs);
    this.#timer.unref();
  }

  #kick(): void {
    if (this.#inFlight !== null || this.#principals.length === 0 || this.#closed) return;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const task: ScoreTask = {
      settingsId: this.#settingsId,
      ...(this.#sent !== this.#settingsId ? { settings: this.#settings } : {}),
      principals: this.#principals,
      ids: this.#ids,
      statuses: this.#statuses,
      times: this.#times,
    };
    this.#sent = this.#settingsId;
    this.#principals = [];
    this.#ids = [];
    this.#statuses = [];
    this.#times = [];
    const ttlMs = this.#settings.ttlMs;
    this.#inFlight = (this.#pool.run(task) as Promise<ScoreReply>).then(
      (reply) => {
        this.last = reply;
        for (const f of reply.flagged) {
          this.#flag(f.principal, ttlMs);
          this.#flaggedTotal.inc();
        }
        if (reply.flagged.length > 0) {
          this.#logger.warn({ flagged: reply.flagged.length, sample: reply.flagged.slice(0, 5) }, 'principals flagged by inline risk scoring');
        }
      },
      (err: unknown) => {
        // A lost batch: the state learnt so far stays in the worker, and the next batch resends the settings.
        this.#sent = -1;
        if (!this.#closed) this.#logger.error({ err }, 'risk scoring batch failed');
      },
    ).finally(() => {
      this.#inFlight = null;
      // What arrived meanwhile goes at once if a whole batch is waiting, else with the timer.
      if (this.#principals.length >= this.#batchSize) this.#kick();
      else if (this.#principals.length > 0 && this.#timer === null && !this.#closed) this.#arm();
    });
  }

  /** Send what is queued now and wait for every batch to be scored (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.#inFlight !== null || this.#principals.length > 0) {
      if (this.#inFlight === null) this.#kick();
      await this.#inFlight;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#inFlight;
    await this.#pool.destroy();
  }
}

function settingsOf(cfg: RiskScoringConfig): RiskScoringSettings {
  const d = RISK_SCORING_DEFAULTS;
  return {
    threshold: cfg.threshold ?? d.threshold,
    windowMs: cfg.windowMs ?? d.windowMs,
    maxRequests: cfg.maxRequests ?? d.maxRequests,
    maxErrors: cfg.maxErrors ?? d.maxErrors,
    ttlMs: cfg.ttlMs ?? d.ttlMs,
    maxPrincipals: cfg.maxPrincipals ?? d.maxPrincipals,
  };
}

/** The scorer of one sidecar instance (created on the first version that enables it). */
export function riskScorerFor(registry: Registry, logger: Logger): RiskScorer {
  return instanceState(registry, 'risk-scorer', () => {
    const detector = detectorFor(registry);
    const scorer = new RiskScorer(registry, logger, (p, ttlMs) => detector.flag(p, Date.now(), ttlMs));
    onInstanceClose(registry, () => scorer.close());
    return scorer;
  });
}

export const RISK_SCORING_ATTR = 'risk-scoring';

class RiskScoringFilter implements HttpFilter {
  readonly name = 'risk-scoring';
  // Not in the request loop: the whole per-request cost is in onComplete.
  readonly onRequest = passThrough;
  #activate: (() => void) | undefined;

  constructor(
    private readonly scorer: RiskScorer,
    activate: () => void,
  ) {
    this.#activate = activate;
  }

  onComplete(ctx: RequestContext, status: number): void {
    if (this.#activate !== undefined) {
      this.#activate();
      this.#activate = undefined;
    }
    const p = ctx.principal;
    if (p === undefined) return;
    // At the gateway each request is a user request and a client's x-request-id is not trusted
    // (reusing one would hide a burst); inside the mesh fan-out calls share the user's id.
    this.scorer.record(p, ctx.direction === 'gateway' ? '' : ctx.id, status, Date.now());
  }
}

export const riskScoringFilter: FilterFactory<RiskScoringConfig | undefined> = {
  name: 'risk-scoring',
  resource: 'riskScoring',
  schema: riskScoringSchema,
  // Where end-user requests leave for other services; the routing filter acts on the flags there.
  directions: ['outbound', 'gateway'],
  compile(config, env) {
    if (config?.enabled !== true) return null;
    const scorer = riskScorerFor(env.metrics, env.logger);
    // Settings change when this version serves its first request, never at compile: a version
    // that fails to compile (a later filter refuses it) must leave the scorer as it was.
    return new RiskScoringFilter(scorer, () => scorer.configure(config));
  },
};
