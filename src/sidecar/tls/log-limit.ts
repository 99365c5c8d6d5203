import type { Logger } from '../../core/logger.js';

/**
 * One log line per refusal, up to `perSecond` lines per reason each second; past that, refusals
 * are only counted (the metric keeps the full number) and one summary line reports how many lines
 * were held back, so a handshake flood cannot flood the log.
 */
export function refusalLogger(logger: Logger, msg: string, perSecond = 20): (reason: string, fields: Record<string, unknown>) => void {
  // Keyed by reason: a fixed, small set of values.
  const windows = new Map<string, { start: number; n: number; dropped: number }>();
  return (reason, fields) => {
    const now = Date.now();
    let w = windows.get(reason);
    if (w === undefined || now - w.start >= 1000) {
      if (w !== undefined && w.dropped > 0) logger.warn({ reason, suppressed: w.dropped }, `${msg}: further refusals not logged`);
      w = { start: now, n: 0, dropped: 0 };
      windows.set(reason, w);
    }
    if (w.n < perSecond) {
      w.n++;
      logger.warn({ reason, ...fields }, msg);
    } else {
      w.dropped++;
    }
  };
}
