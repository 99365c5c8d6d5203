import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level?: LevelWithSilent;
  name?: string;
  /**
   * Write through a pino transport so that serialisation-to-fd happens on a worker thread.
   * Off by default for short-lived CLI commands; the long-running sidecar and manager turn it on.
   */
  thread?: boolean;
  /** File descriptor or path; defaults to stdout (1). */
  destination?: number | string;
}

// Header and field names whose values must never reach a log line.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'headers.authorization',
  'headers.cookie',
  'token',
  'key',
  'privateKey',
  'password',
  'secret',
  '*.token',
  '*.privateKey',
  '*.password',
  '*.secret',
];

/**
 * pino, configured the way every etz process logs: JSON lines, secrets redacted, and never a
 * synchronous write on the request path (async sonic-boom, or a worker-thread transport).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? ((process.env.ETZ_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info');
  const base = {
    level,
    name: opts.name,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const dest = opts.destination ?? 1;
  if (level === 'silent') return pino({ ...base, enabled: false });
  if (opts.thread) {
    return pino(base, pino.transport({ target: 'pino/file', options: { destination: dest, mkdir: true } }));
  }
  return pino(base, pino.destination({ dest, sync: false, minLength: 4096 }));
}

/** A logger that drops everything, for library code used without one. */
export const nullLogger: Logger = pino({ enabled: false });
