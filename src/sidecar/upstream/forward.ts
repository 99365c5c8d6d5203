import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import { EtzError } from '../../core/errors.js';
import type { Ctx } from '../context.js';
import { replyError } from '../chain.js';
import { upstreamRequestHeaders } from '../headers.js';
import { dispatchAttempt } from './attempt.js';
import { ProxyResponseHandler } from './stream-response.js';

/**
 * Send the request upstream through `dispatcher` and stream the answer back. The request body is
 * the IncomingMessage itself (undici reads it with backpressure), so nothing is buffered.
 */

export interface ForwardOptions {
  /** Whole-exchange deadline; 0 = none. */
  requestMs: number;
  /** Request body limit; 0 = none. Content-Length is checked by the listener up front. */
  maxBodyBytes: number;
}

/** Counts a chunked body and fails it at the limit (Content-Length bodies never need this). */
class BodyLimit extends Transform {
  #left: number;
  constructor(limit: number) {
    super();
    this.#left = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#left -= chunk.length;
    if (this.#left < 0) cb(new EtzError('ETZ_ERR_BODY_TOO_LARGE', 'request body exceeds the limit'));
    else cb(null, chunk);
  }
}

export function onRequestTimeout(ctx: Ctx): void {
  ctx.timer = null;
  if (ctx.done) return;
  const err = new EtzError('ETZ_ERR_UPSTREAM_TIMEOUT', 'request timeout');
  const abort = ctx.abortUpstream;
  ctx.abortUpstream = null;
  replyError(ctx, err);
  abort?.(err);
}

export function forward(ctx: Ctx, dispatcher: Dispatcher, proto: string, opts: ForwardOptions): void {
  if (opts.requestMs > 0) ctx.timer = setTimeout(onRequestTimeout, opts.requestMs, ctx);
  if (ctx.bodyLength !== 0 && !ctx.upgrade) {
    // Defer by one tick: when the same packet carries a malformed body (a smuggling attempt), the
    // parser rejects it synchronously right after emitting the request, and the listener has
    // answered 400 before anything is sent upstream.
    process.nextTick(dispatchDeferred, ctx, dispatcher, proto, opts);
    return;
  }
  send(ctx, dispatcher, proto, null);
}

/** The body stream to send upstream: the request itself, through the limit when chunked. */
export function requestBody(ctx: Ctx, opts: ForwardOptions): NodeJS.ReadableStream {
  if (opts.maxBodyBytes > 0 && ctx.bodyLength === -1) {
    const limit = new BodyLimit(opts.maxBodyBytes);
    ctx.req.pipe(limit);
    ctx.req.once('error', (err) => limit.destroy(err));
    return limit;
  }
  return ctx.req;
}

function dispatchDeferred(ctx: Ctx, dispatcher: Dispatcher, proto: string, opts: ForwardOptions): void {
  if (ctx.done || ctx.res.headersSent || ctx.req.destroyed) return;
  send(ctx, dispatcher, proto, requestBody(ctx, opts));
}

function send(ctx: Ctx, dispatcher: Dispatcher, proto: string, body: NodeJS.ReadableStream | null): void {
  const req = ctx.req;
  const options: Dispatcher.DispatchOptions = {
    method: ctx.method as Dispatcher.HttpMethod,
    path: ctx.url,
    headers: upstreamRequestHeaders(ctx, proto),
    body: body as Dispatcher.DispatchOptions['body'],
    // The client decides about retries; a proxy must not replay a request on its own.
    idempotent: false,
    blocking: false,
  };
  if (ctx.upgrade) options.upgrade = String(req.headers.upgrade ?? 'websocket');
  dispatchAttempt(dispatcher, options, new ProxyResponseHandler(ctx));
}
