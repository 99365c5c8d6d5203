import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { EtzError, isEtzError } from '../../core/errors.js';

/**
 * A small router for the operator API: method + path pattern → handler, each route declaring
 * who may call it. Handlers return a value (sent as JSON) or throw EtzError (sent as
 * `{ error, reason }` with the code's status).
 */

export type Auth = 'none' | 'admin' | 'bootstrap';

export interface ApiRequest {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Who is calling (set for admin routes): 'admin-token' or the admin certificate's SPIFFE ID. */
  actor: string;
  body(): Promise<unknown>;
}

export type Handler = (r: ApiRequest) => Promise<unknown> | unknown;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  auth: Auth;
  handler: Handler;
  path: string;
}

export class Router {
  private readonly routes: Route[] = [];

  /** `path` like /v1/zones/{id}; a trailing {rest*} matches the remainder including slashes. */
  route(method: string, path: string, auth: Auth, handler: Handler): void {
    const keys: string[] = [];
    const src = path.replace(/[.]/g, '\\.').replace(/\{(\w+)(\*?)\}/g, (_, k: string, star: string) => {
      keys.push(k);
      return star ? '(.+)' : '([^/]+)';
    });
    this.routes.push({ method, pattern: new RegExp(`^${src}$`), keys, auth, handler, path });
  }

  match(method: string, pathname: string): { route: Route; params: Record<string, string> } | { allowed: string[] } | undefined {
    const allowed: string[] = [];
    for (const r of this.routes) {
      const m = r.pattern.exec(pathname);
      if (!m) continue;
      if (r.method !== method) {
        allowed.push(r.method);
        continue;
      }
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1]!)));
      return { route: r, params };
    }
    return allowed.length ? { allowed } : undefined;
  }

  list(): Array<{ method: string; path: string; auth: Auth }> {
    return this.routes.map((r) => ({ method: r.method, path: r.path, auth: r.auth }));
  }
}

/** The request body as text, refused past `limit` bytes (413) without buffering the rest. */
export function readText(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) return reject(new EtzError('ETZ_ERR_BODY_TOO_LARGE', `request body is larger than ${limit} bytes`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new EtzError('ETZ_ERR_BODY_TOO_LARGE', `request body is larger than ${limit} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The request body parsed as JSON; an empty body is undefined. */
export async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const text = await readText(req, limit);
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new EtzError('ETZ_ERR_INVALID_INPUT', 'request body is not valid JSON');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  if (isEtzError(err)) {
    sendJson(res, err.status || 500, { error: err.code, reason: err.message });
  } else {
    sendJson(res, 500, { error: 'ETZ_ERR_INTERNAL', reason: 'internal error' });
  }
}

export function peerSpiffeId(req: IncomingMessage): string | undefined {
  const tls = req.socket as TLSSocket;
  if (!tls.authorized) return undefined;
  const san = tls.getPeerCertificate()?.subjectaltname ?? '';
  const m = /URI:(spiffe:\/\/[^,\s]+)/.exec(san);
  return m?.[1];
}

export function invalid(field: string, reason: string): EtzError {
  return new EtzError('ETZ_ERR_INVALID_INPUT', `${field}: ${reason}`);
}
