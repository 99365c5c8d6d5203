import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Registry } from '../../core/metrics.js';

/**
 * The admin listener (loopback by default): /healthz, /ready and /metrics are open like Envoy's
 * admin port; /config_dump shows the effective config and needs the admin bearer token. With no
 * token configured /config_dump is refused outright: no token, no dump.
 */

export interface AdminSource {
  ready(): boolean;
  readonly registry: Registry;
  configDump(): unknown;
  readonly token: string | undefined;
}

const SECRET_KEY = /(token|secret|password|passwd|private|key$|^key|credential)/i;

/** Deep copy with every secret-looking field replaced. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 32) return '[truncated]';
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEY.test(k) && v !== undefined && (typeof v !== 'object' || v === null) ? '[redacted]' : redact(v, depth + 1);
    }
    return out;
  }
  if (typeof value === 'string' && value.includes('PRIVATE KEY-----')) return '[redacted]';
  return value;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function tokenMatches(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return false;
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false;
  // Compare digests: equal length always, so timing says nothing about the token.
  return timingSafeEqual(digest(h.slice(7).trim()), digest(token));
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

function json(res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  send(res, status, 'application/json', `${JSON.stringify(value, null, 2)}\n`, extra);
}

export function createAdminServer(src: AdminSource): Server {
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'ETZ_ERR_BAD_REQUEST', reason: 'method not allowed' }, { allow: 'GET, HEAD' });
      return;
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/ready':
        if (src.ready()) send(res, 200, 'text/plain', 'ready\n');
        else send(res, 503, 'text/plain', 'not ready\n');
        return;
      case '/metrics':
        src.registry.metrics().then(
          (text) => send(res, 200, src.registry.contentType, text),
          (err: Error) => send(res, 500, 'text/plain', `metrics failed: ${err.message}\n`),
        );
        return;
      case '/config_dump':
        if (src.token === undefined) {
          json(res, 403, { error: 'ETZ_ERR_FORBIDDEN', reason: 'no admin token is configured; set admin.token or ETZ_SIDECAR_ADMIN__TOKEN' });
          return;
        }
        if (!tokenMatches(req, src.token)) {
          json(res, 401, { error: 'ETZ_ERR_UNAUTHENTICATED', reason: 'missing or wrong bearer token' }, { 'www-authenticate': 'Bearer' });
          return;
        }
        json(res, 200, redact(src.configDump()));
        return;
      default:
        json(res, 404, { error: 'ETZ_ERR_NOT_FOUND', reason: `no admin endpoint ${path}` });
    }
  });
  return server;
}
