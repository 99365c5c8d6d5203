import type { Logger } from '../../core/logger.js';
import type { EngineConfig } from '../risk/config.js';
import type { EngineEvent } from '../risk/types.js';

/**
 * Alert delivery for the live manager: every `alert` event is logged, and POSTed as JSON to the
 * configured webhook. Delivery never blocks the engine: a bounded queue (oldest dropped and
 * counted when full), one request in flight, a timeout and two retries with backoff.
 */

export type AlertEvent = Extract<EngineEvent, { event: 'alert' }>;

export interface AlertSink {
  handle(e: EngineEvent): void;
  /** Wait for queued deliveries (bounded by their timeouts). */
  flush(): Promise<void>;
  readonly stats: { sent: number; failed: number; dropped: number };
}

export function createAlertSink(cfg: EngineConfig['alerts'], logger: Logger, opts: { retryDelayMs?: number } = {}): AlertSink {
  const queue: AlertEvent[] = [];
  const stats = { sent: 0, failed: 0, dropped: 0 };
  const hook = cfg.webhook;
  const retryDelay = opts.retryDelayMs ?? 500;
  let running: Promise<void> | null = null;

  async function deliver(e: AlertEvent): Promise<void> {
    const body = JSON.stringify({ source: 'etz', ...e });
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const res = await fetch(hook!.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...hook!.headers },
          body,
          signal: AbortSignal.timeout(hook!.timeoutMs),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          stats.sent++;
          return;
        }
        if (res.status < 500 && res.status !== 429) break;
      } catch {
        // network error or timeout: retry
      }
      await new Promise((r) => setTimeout(r, retryDelay * (attempt + 1)));
    }
    stats.failed++;
    logger.warn({ alert: e.message, webhook: redactUrl(hook!.url) }, 'alert webhook delivery failed');
  }

  function pump(): void {
    if (running || queue.length === 0) return;
    running = (async () => {
      while (queue.length) await deliver(queue.shift()!);
    })().finally(() => {
      running = null;
    });
  }

  return {
    stats,
    handle(e) {
      if (e.event !== 'alert') return;
      logger.warn({ alert: { severity: e.severity, subject: e.subject, ts: e.ts } }, e.message);
      if (!hook) return;
      if (queue.length >= hook.maxQueue) {
        queue.shift();
        stats.dropped++;
      }
      queue.push(e);
      pump();
    },
    async flush() {
      while (running) await running;
    },
  };
}

function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    url.username = '';
    url.password = '';
    url.search = '';
    return url.toString();
  } catch {
    return '(invalid url)';
  }
}
