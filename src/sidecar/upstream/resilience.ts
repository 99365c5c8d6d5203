import { setTimeout as sleep } from 'node:timers/promises';
import { Balancer, type BalancedEndpoint, type LbPolicy } from './balancer.js';
import { CircuitBreaker, type Overflow, type PoolLimitsConfig } from './circuit.js';
import { OutlierDetector, type OutlierConfig } from './outlier.js';
import { RetryBudget, type AttemptOutcome, type RetryBudgetConfig, type RetryPolicy } from './retry-policy.js';

/**
 * The resilient send: pick an endpoint, admit the request through the circuit breaker, run one
 * try, feed the outcome to outlier detection, and decide whether another try is allowed (policy,
 * budget, retry breaker, replayable body). The try itself is the router's (`attempt`): this
 * module never touches sockets, so it composes with whatever connector the router uses (plain,
 * mTLS) and is tested with plain functions as well as real servers.
 */

/** Per-destination state that outlives config versions (ejections, in-flight counts, budget). */
export interface DestinationTraffic<E extends BalancedEndpoint> {
  readonly service: string;
  readonly balancer: Balancer<E>;
  readonly outlier: OutlierDetector;
  readonly circuit: CircuitBreaker;
  readonly budget: RetryBudget;
}

export interface DestinationPolicyConfig {
  loadBalancer?: LbPolicy;
  pool?: PoolLimitsConfig;
  outlierDetection?: OutlierConfig;
  retryBudget?: RetryBudgetConfig;
}

export function createDestinationTraffic<E extends BalancedEndpoint>(service: string, cfg: DestinationPolicyConfig = {}): DestinationTraffic<E> {
  return {
    service,
    balancer: new Balancer<E>(cfg.loadBalancer ?? 'least-request'),
    outlier: new OutlierDetector(cfg.outlierDetection),
    circuit: new CircuitBreaker(cfg.pool),
    budget: new RetryBudget(cfg.retryBudget),
  };
}

/** What one try returns: how it ended, and (for a response) the response to stream or discard. */
export interface TryResult<R> {
  outcome: AttemptOutcome;
  response?: R;
  /** Release a response that will not be used (a retry follows): drain or destroy its body. */
  discard?(): void;
}

export interface SendObserver {
  retry?(service: string, reason: string): void;
  budgetExhausted?(service: string): void;
  overflow?(service: string, which: Overflow | 'retries'): void;
}

export interface SendOptions<E extends BalancedEndpoint, R> {
  traffic: DestinationTraffic<E>;
  endpoints: readonly E[];
  method: string;
  /**
   * False when the request body is streamed from the client and cannot be sent again: then no
   * try is repeated, not even after a connect failure (the stream may already be consumed).
   */
  replayable: boolean;
  retry?: RetryPolicy;
  hashKey?: string;
  /** Whether the caller has gone (client disconnected): stop retrying. */
  aborted?: () => boolean;
  now?: () => number;
  observer?: SendObserver;
  attempt(endpoint: E, perTryTimeoutMs: number | undefined, tryNumber: number): Promise<TryResult<R>>;
}

export type SendResult<E, R> =
  | { kind: 'done'; endpoint: E; result: TryResult<R>; tries: number; release(): void }
  | { kind: 'overflow'; which: Overflow }
  | { kind: 'no-endpoint' };

function outcomeReason(o: AttemptOutcome): string {
  return o.kind === 'response' ? String(o.status) : o.kind;
}

/**
 * Sends with retries. On 'done' the caller streams `result.response` and calls `release()` when
 * the exchange is over (it frees the circuit-breaker slot and the in-flight count).
 */
export async function sendWithRetries<E extends BalancedEndpoint, R>(o: SendOptions<E, R>): Promise<SendResult<E, R>> {
  const { traffic, endpoints } = o;
  const now = o.now ?? Date.now;
  const over = traffic.circuit.tryAcquire();
  if (over) {
    o.observer?.overflow?.(traffic.service, over);
    return { kind: 'overflow', which: over };
  }
  let released = false;
  const releaseAdmission = () => {
    if (!released) {
      released = true;
      traffic.circuit.release();
    }
  };
  traffic.budget.onRequest(now());
  const maxTries = 1 + (o.retry?.attempts ?? 0);
  let tried: Set<string> | undefined;
  let retrySlot = false;
  try {
    for (let n = 1; ; n++) {
      const t = now();
      const avoid = (e: E) => traffic.outlier.isEjected(e.key, t) || (tried !== undefined && tried.has(e.key));
      const endpoint = traffic.balancer.pick(endpoints, o.hashKey, avoid);
      if (!endpoint) {
        releaseAdmission();
        return { kind: 'no-endpoint' };
      }
      traffic.balancer.started(endpoint.key);
      let result: TryResult<R>;
      try {
        result = await o.attempt(endpoint, o.retry?.perTryTimeoutMs, n);
      } catch (err) {
        traffic.balancer.finished(endpoint.key);
        throw err;
      }
      traffic.outlier.record(endpoint.key, result.outcome, endpoints.length, now());
      if (retrySlot) {
        traffic.circuit.releaseRetry();
        retrySlot = false;
      }
      const wantRetry =
        n < maxTries &&
        o.retry !== undefined &&
        !(o.aborted?.() ?? false) &&
        o.replayable &&
        o.retry.retriable(o.method, result.outcome);
      let again = false;
      if (wantRetry) {
        if (!traffic.budget.tryRetry(now())) o.observer?.budgetExhausted?.(traffic.service);
        else if (!traffic.circuit.tryAcquireRetry()) o.observer?.overflow?.(traffic.service, 'retries');
        else again = true;
      }
      if (!again) {
        const ep = endpoint;
        let done = false;
        return {
          kind: 'done',
          endpoint,
          result,
          tries: n,
          release: () => {
            if (done) return;
            done = true;
            traffic.balancer.finished(ep.key);
            releaseAdmission();
          },
        };
      }
      retrySlot = true;
      traffic.balancer.finished(endpoint.key);
      result.discard?.();
      o.observer?.retry?.(traffic.service, outcomeReason(result.outcome));
      (tried ??= new Set()).add(endpoint.key);
      const wait = o.retry!.backoffMs(n);
      if (wait > 0) await sleep(wait);
    }
  } catch (err) {
    if (retrySlot) traffic.circuit.releaseRetry();
    releaseAdmission();
    throw err;
  }
}
