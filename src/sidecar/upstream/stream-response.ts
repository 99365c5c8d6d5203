import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Ctx } from '../context.js';
import { replyError, finishRequest } from '../chain.js';
import { downstreamResponseHeaders, rawResponseHead, trailerObject } from '../headers.js';

/**
 * Streams one upstream response to the downstream ServerResponse, with backpressure both ways:
 * when the client reads slowly, `res.write` returns false, undici pauses the upstream socket,
 * and 'drain' resumes it. One object per request and no per-request closures; it speaks undici's
 * raw handler protocol so no intermediate Readable is created.
 */
export class ProxyResponseHandler implements Dispatcher.DispatchHandler {
  readonly #ctx: Ctx;
  #resume: (() => void) | null = null;

  constructor(ctx: Ctx) {
    this.#ctx = ctx;
  }

  onConnect(abort: (err?: Error) => void): void {
    const ctx = this.#ctx;
    if (ctx.done || ctx.res.destroyed) {
      abort(new Error('downstream closed'));
      return;
    }
    ctx.abortUpstream = abort;
  }

  onBodySent(chunk: Buffer | number): void {
    this.#ctx.bytesIn += typeof chunk === 'number' ? chunk : chunk.length;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // 1xx other than 101 are interim; Node answered the client's 100-continue itself.
    if (statusCode < 200) return true;
    const res = this.#ctx.res;
    if (res.destroyed) return false;
    this.#resume = resume;
    try {
      res.writeHead(statusCode, statusText, downstreamResponseHeaders(rawHeaders));
    } catch (err) {
      // An upstream header Node refuses to forward (invalid characters): the upstream is broken.
      this.#ctx.abortUpstream?.(err as Error);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    const ctx = this.#ctx;
    ctx.bytesOut += chunk.length;
    if (ctx.res.write(chunk)) return true;
    if (this.#resume !== null) ctx.res.once('drain', this.#resume);
    return false;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    const ctx = this.#ctx;
    ctx.abortUpstream = null;
    const res = ctx.res;
    if (res.destroyed) return;
    const t = trailers ? trailerObject(trailers) : null;
    if (t !== null && res.chunkedEncoding) res.addTrailers(t);
    res.end();
  }

  onError(err: Error): void {
    const ctx = this.#ctx;
    ctx.abortUpstream = null;
    if (ctx.done) return;
    replyError(ctx, err);
  }

  /** The upstream agreed to switch protocols: splice the two sockets together. */
  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    const ctx = this.#ctx;
    ctx.abortUpstream = null;
    const client = ctx.req.socket as Socket;
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    ctx.res.detachSocket(client);
    ctx.upgradedStatus = statusCode;
    client.write(rawResponseHead(statusCode, 'Switching Protocols', rawHeaders ?? []));
    const head = ctx.upgradeHead;
    if (head !== null && head.length > 0) upstream.write(head);
    client.pipe(upstream).pipe(client);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      finishRequest(ctx);
    };
    client.once('close', close);
    upstream.once('close', close);
    client.on('error', close);
    upstream.on('error', close);
  }
}
