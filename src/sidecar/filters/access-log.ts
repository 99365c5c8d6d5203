import { createLogger, type Logger } from '../../core/logger.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';
import type { FilterFactory, RequestContext } from '../filter.js';
import { passThrough } from '../chain.js';

/**
 * One JSON line per completed request, off by default. When on, it writes through pino's async
 * destination (buffered, never a synchronous write on the request path). The logger is created
 * once per process, not per config version.
 */
let shared: Logger | undefined;

function accessLogger(): Logger {
  return (shared ??= createLogger({ name: 'etz-access', level: 'info' }));
}

export const accessLogFilter: FilterFactory<SidecarConfig> = {
  name: 'access-log',
  schema: {},
  compile(config, env) {
    if (!config.logging.accessLog) return null;
    const log = accessLogger();
    const direction = env.direction;
    return {
      name: 'access-log',
      onRequest: passThrough,
      onComplete(ctx: RequestContext, status: number, durationMs: number) {
        log.info({
          direction,
          requestId: ctx.id,
          method: ctx.method,
          path: ctx.path,
          host: ctx.host,
          status,
          durationMs: Math.round(durationMs * 1000) / 1000,
          upstream: ctx.endpoint?.key,
          destination: ctx.destination?.service,
          decision: ctx.decision,
          remote: ctx.remoteAddress,
        });
      },
    };
  },
};
