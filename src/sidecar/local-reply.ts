import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { ERRORS, EtzError, type ErrorCode } from '../core/errors.js';
import type { Counter } from '../core/metrics.js';
import type { LocalReply } from './filter.js';

/**
 * The one module that turns an error or a denial into a response. Every local reply has the same
 * shape — status, `{ "error": code, "reason" }` JSON body, `x-etz-reason` header — and is counted
 * in etz_local_replies_total{reason=<code>}. When the response has already started there is no
 * honest way to change it, so the stream is destroyed instead: the client sees a truncated
 * response, never a wrong one.
 */

export function localReply(code: ErrorCode, reason: string, headers?: LocalReply['headers']): LocalReply {
  const r: LocalReply = { status: ERRORS[code].status || 500, code, reason };
  if (headers) r.headers = headers;
  return r;
}

// undici error codes → what they mean for the caller. Connect failures before any byte went out
// are the upstream being unavailable; timeouts are 504; a reset mid-exchange is 502.
const UNDICI_CODES: Record<string, ErrorCode> = {
  UND_ERR_CONNECT_TIMEOUT: 'ETZ_ERR_UPSTREAM_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'ETZ_ERR_UPSTREAM_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'ETZ_ERR_UPSTREAM_TIMEOUT',
  UND_ERR_SOCKET: 'ETZ_ERR_UPSTREAM_RESET',
  UND_ERR_CLOSED: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  UND_ERR_DESTROYED: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  UND_ERR_HEADERS_OVERFLOW: 'ETZ_ERR_UPSTREAM_RESET',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'ETZ_ERR_UPSTREAM_RESET',
  UND_ERR_INFO: 'ETZ_ERR_UPSTREAM_RESET',
  HPE_INVALID_CONSTANT: 'ETZ_ERR_UPSTREAM_RESET',
  ECONNREFUSED: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  EHOSTUNREACH: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  ENETUNREACH: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  ENOTFOUND: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  EAI_AGAIN: 'ETZ_ERR_UPSTREAM_UNAVAILABLE',
  ETIMEDOUT: 'ETZ_ERR_UPSTREAM_TIMEOUT',
  ECONNRESET: 'ETZ_ERR_UPSTREAM_RESET',
  EPIPE: 'ETZ_ERR_UPSTREAM_RESET',
};

/** Any error (ours, undici's, a socket's) → the local reply that describes it to the caller. */
export function errorToLocalReply(err: unknown): LocalReply {
  if (err instanceof EtzError) return localReply(err.code, err.message);
  const e = err as { code?: string; message?: string } | undefined;
  const mapped = e?.code !== undefined ? UNDICI_CODES[e.code] : undefined;
  if (mapped !== undefined) return localReply(mapped, upstreamReason(mapped, e!.code!));
  // undici refuses to send what HTTP forbids (a path not in origin-form, a header value it cannot
  // carry): the request is at fault, not the upstream.
  if (e?.code === 'UND_ERR_INVALID_ARG') return localReply('ETZ_ERR_BAD_REQUEST', `request cannot be forwarded: ${e.message ?? 'invalid'}`);
  return localReply('ETZ_ERR_INTERNAL', 'internal error');
}

function upstreamReason(code: ErrorCode, sysCode: string): string {
  switch (code) {
    case 'ETZ_ERR_UPSTREAM_TIMEOUT':
      return sysCode === 'UND_ERR_CONNECT_TIMEOUT'
        ? 'upstream connect timeout'
        : sysCode === 'UND_ERR_BODY_TIMEOUT'
          ? 'upstream idle timeout'
          : 'upstream response timeout';
    case 'ETZ_ERR_UPSTREAM_UNAVAILABLE':
      return 'upstream connection refused';
    default:
      return 'upstream connection reset';
  }
}

/** Header values must be visible ASCII; reasons are product text but may quote client input. */
function headerSafe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x20-\x7e]*$/.test(s) ? s : s.replace(/[^\x20-\x7e]/g, '?');
}

function body(reply: LocalReply): string {
  return JSON.stringify({ error: reply.code, reason: reply.reason });
}

/**
 * Write `reply` on `res`. `closeConnection` asks the client to close (used when the request body
 * was not read, so the connection cannot be reused safely).
 */
export function sendLocalReply(res: ServerResponse, reply: LocalReply, counter?: Counter<string>, closeConnection = false): void {
  counter?.inc({ reason: reply.code });
  if (res.headersSent || res.destroyed) {
    if (!res.writableFinished) res.destroy();
    return;
  }
  const text = body(reply);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-etz-reason': headerSafe(reply.reason),
    ...reply.headers,
  };
  if (closeConnection) {
    headers.connection = 'close';
    res.shouldKeepAlive = false;
  }
  try {
    res.writeHead(reply.status, headers);
    res.end(res.req?.method === 'HEAD' ? undefined : text);
  } catch {
    res.destroy();
  }
}

/**
 * A local reply written straight to a socket, for errors found before there is a ServerResponse
 * (the HTTP parser refused the request). Always closes the connection: after a parse error the
 * byte stream cannot be trusted to find the next request.
 */
export function sendRawLocalReply(socket: Socket, reply: LocalReply, counter?: Counter<string>): void {
  counter?.inc({ reason: reply.code });
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const text = body(reply);
  const head =
    `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? 'Error'}\r\n` +
    'content-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(text)}\r\n` +
    `x-etz-reason: ${headerSafe(reply.reason)}\r\n` +
    'connection: close\r\n\r\n';
  socket.end(head + text);
  // Do not wait forever for a peer that never reads.
  socket.setTimeout(5000, () => socket.destroy());
}
