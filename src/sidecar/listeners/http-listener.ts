import { ServerResponse, type IncomingMessage, type Server } from 'node:http';
import { Server as TlsServer } from 'node:tls';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Direction } from '../filter.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';
import { Ctx } from '../context.js';
import { finishRequest, replyLocal, runChain, type CompiledChain } from '../chain.js';
import { clusterForHost } from '../clusters.js';
import { localReply, sendLocalReply, sendRawLocalReply } from '../local-reply.js';
import { getOriginalDst } from '../original-dst.js';
import { attachConnection, connectionOf, LiveConnection } from './connections.js';
import { createListenerServer, type ServerFactory } from './server-factory.js';

/**
 * A listener and its connection manager: accepts connections, turns parser failures into local
 * replies, builds the request context, resolves the destination and runs the listener's current
 * chain. The chain reference is swapped whole on a config change; each request keeps the chain
 * it started with.
 */

const kCtx = Symbol('etz.ctx');
type CtxResponse = ServerResponse & { [kCtx]?: Ctx };

function listenOn(server: NetServer, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port, backlog: 1024 }, () => {
      server.off('error', onError);
      resolve((server.address() as { port: number }).port);
    });
  });
}

function onResponseClose(this: CtxResponse): void {
  const ctx = this[kCtx];
  if (ctx !== undefined) finishRequest(ctx);
}

export interface ListenerHooks {
  /** Called when a request is fully done (response finished, failed or tunnel closed). */
  release(ctx: Ctx): void;
}

export class HttpListener {
  readonly direction: Direction;
  readonly server: Server;
  #chain: CompiledChain;
  readonly #maxHeaderFields: number;
  readonly #maxBodyBytes: number;
  readonly #self: { service: string; version?: string; instance?: string };
  readonly #sockets = new Set<Socket>();
  /** Inbound `extraPorts`: accept-only servers handing their sockets to `server`. */
  readonly #extraPorts: readonly number[];
  readonly #extra: NetServer[] = [];
  #inflight = 0;
  #draining = false;
  #idle: (() => void) | null = null;

  constructor(direction: Direction, config: SidecarConfig, chain: CompiledChain, factory: ServerFactory = createListenerServer) {
    this.direction = direction;
    this.#chain = chain;
    this.#maxHeaderFields = config.limits.maxHeaders * 2;
    this.#maxBodyBytes = config.limits.maxBodyBytes;
    const self: { service: string; version?: string; instance?: string } = { service: config.service.name };
    if (config.service.version !== 'unknown') self.version = config.service.version;
    if (config.service.instance) self.instance = config.service.instance;
    this.#self = self;
    this.#extraPorts = direction === 'inbound' ? config.inbound.extraPorts ?? [] : [];
    this.server = factory(direction, config);
    this.server.on('request', this.#onRequest);
    this.server.on('upgrade', this.#onUpgrade);
    this.server.on('clientError', this.#onClientError);
    this.server.on('connect', this.#onConnect);
    this.server.on(this.server instanceof TlsServer ? 'secureConnection' : 'connection', this.#onConnection);
  }

  get chain(): CompiledChain {
    return this.#chain;
  }

  get inflight(): number {
    return this.#inflight;
  }

  get connections(): number {
    return this.#sockets.size;
  }

  /** Listen on `port`, and for inbound on every `extraPorts` entry too; resolves the main port. */
  async listen(host: string, port: number): Promise<number> {
    const bound = await listenOn(this.server, host, port);
    for (const p of this.#extraPorts) {
      // Same options as the main server's accept; the socket then takes exactly the main path
      // (mTLS guard by port, HTTP parser, chain), as if the main server had accepted it.
      const extra = createNetServer({ noDelay: true, keepAlive: true }, (socket) => this.server.emit('connection', socket));
      extra.maxConnections = this.server.maxConnections;
      this.#extra.push(extra);
      await listenOn(extra, host, p);
    }
    return bound;
  }

  /**
   * Put a new chain in force, then close every live connection one of its admission filters
   * refuses. Returns how many were closed.
   */
  swap(chain: CompiledChain): number {
    this.#chain = chain;
    if (chain.admission.length === 0) return 0;
    let closed = 0;
    for (const socket of this.#sockets) {
      const conn = connectionOf(socket);
      if (conn === undefined) continue;
      for (const f of chain.admission) {
        let ok: boolean;
        try {
          ok = f.admitsConnection(conn);
        } catch {
          ok = false; // deny on doubt
        }
        if (!ok) {
          socket.destroy();
          closed++;
          break;
        }
      }
    }
    return closed;
  }

  /**
   * Stop accepting, let requests in flight finish until the deadline, close idle keep-alive
   * connections as they become idle, then close whatever is left.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    for (const x of this.#extra) x.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Responses still to come tell their clients not to send another request on the connection.
    for (const s of this.#sockets) {
      const res = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (res instanceof ServerResponse && !res.headersSent) res.shouldKeepAlive = false;
    }
    if (this.#inflight > 0) {
      const idle = new Promise<void>((resolve) => (this.#idle = resolve));
      const sweep = setInterval(() => this.server.closeIdleConnections(), 50);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
      await Promise.race([idle, deadline]);
      clearInterval(sweep);
      clearTimeout(timer);
      if (this.#inflight > 0) await this.#answerUnserved();
    }
    for (const s of this.#sockets) s.destroy();
    this.server.closeAllConnections();
    await closed;
  }

  /**
   * The drain deadline passed: a request whose response has not started cannot be served any
   * more. Its client gets 503 ETZ_ERR_DRAINING (with connection: close) instead of a bare reset,
   * so it knows why and may try another instance; the upstream exchange is stopped. Responses
   * already streaming are cut as before: their status line is out.
   */
  async #answerUnserved(): Promise<void> {
    const sent: Promise<unknown>[] = [];
    for (const s of this.#sockets) {
      const res = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      if (!(res instanceof ServerResponse) || res.headersSent || res.writableEnded) continue;
      const ctx = (res as CtxResponse)[kCtx];
      if (ctx === undefined || ctx.done) continue;
      sent.push(new Promise((resolve) => {
        res.once('close', resolve);
        res.once('finish', resolve);
      }));
      replyLocal(ctx, localReply('ETZ_ERR_DRAINING', 'the sidecar is shutting down and its drain deadline passed before the upstream answered'), true);
    }
    if (sent.length === 0) return;
    // A short, bounded wait for the replies to reach the sockets; then everything closes.
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(sent), new Promise((resolve) => (t = setTimeout(resolve, 1000)))]);
    clearTimeout(t);
  }

  /** Immediate stop, for a failed start. */
  destroy(): void {
    for (const x of this.#extra) x.close();
    this.server.close();
    for (const s of this.#sockets) s.destroy();
  }

  readonly release = (ctx: Ctx): void => {
    this.#inflight--;
    const conn = connectionOf(ctx.req.socket);
    if (conn !== undefined) conn.inflight--;
    if (this.#draining) {
      if (this.#inflight === 0 && this.#idle !== null) this.#idle();
      else this.server.closeIdleConnections();
    }
  };

  readonly #onConnection = (socket: Socket): void => {
    attachConnection(socket, new LiveConnection(this.direction, socket));
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
  };

  #begin(req: IncomingMessage, res: ServerResponse, upgrade: boolean): Ctx {
    const ctx = new Ctx(this.direction, req, res, this.#chain, upgrade);
    (res as CtxResponse)[kCtx] = ctx;
    // 'close' fires once per response; `on` avoids the wrapper `once` would allocate.
    res.on('close', onResponseClose);
    this.#inflight++;
    const conn = connectionOf(req.socket);
    if (conn !== undefined) conn.inflight++;
    if (this.#draining) res.shouldKeepAlive = false;
    return ctx;
  }

  #admit(ctx: Ctx): void {
    if (ctx.req.rawHeaders.length > this.#maxHeaderFields) {
      replyLocal(ctx, localReply('ETZ_ERR_HEADERS_TOO_LARGE', 'too many request headers'), true);
      return;
    }
    if (this.#maxBodyBytes > 0 && ctx.bodyLength > this.#maxBodyBytes) {
      replyLocal(ctx, localReply('ETZ_ERR_BODY_TOO_LARGE', 'request body exceeds the limit'));
      return;
    }
    this.#resolveDestination(ctx);
    runChain(ctx);
  }

  #resolveDestination(ctx: Ctx): void {
    // Outbound and gateway listeners route by destination; inbound always goes to the local app.
    if (this.direction === 'inbound') {
      ctx.destination = { ...this.#self };
      return;
    }
    const clusters = ctx.chain.clusters;
    const conn = connectionOf(ctx.req.socket);
    let cluster;
    if (conn !== undefined) {
      if (conn.originalDst === undefined) conn.originalDst = getOriginalDst(ctx.req.socket);
      const od = conn.originalDst;
      if (od !== null) cluster = clusters.byAddress.get(`${od.address}:${od.port}`);
    }
    cluster ??= clusterForHost(clusters, ctx.host);
    if (cluster !== undefined) ctx.destination = { service: cluster.name };
  }

  readonly #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    this.#admit(this.#begin(req, res, false));
  };

  readonly #onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    // A refused upgrade ends with the local reply; nothing can follow on this connection.
    res.once('finish', () => (socket as Socket).end());
    const ctx = this.#begin(req, res, true);
    ctx.upgradeHead = head;
    this.#admit(ctx);
  };

  /** CONNECT tunnels are not proxied: answer instead of letting Node drop the socket silently. */
  readonly #onConnect = (req: IncomingMessage, socket: Duplex): void => {
    sendRawLocalReply(socket as Socket, localReply('ETZ_ERR_BAD_REQUEST', `method ${req.method ?? 'CONNECT'} is not supported`), this.#chain.shared.localReplies);
  };

  readonly #onClientError = (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex): void => {
    const code = err.code ?? '';
    const s = socket as Socket & { _httpMessage?: ServerResponse | null };
    if (code === 'ECONNRESET' || code === 'EPIPE' || !s.writable) {
      s.destroy();
      return;
    }
    let reply;
    if (code === 'HPE_HEADER_OVERFLOW') reply = localReply('ETZ_ERR_HEADERS_TOO_LARGE', 'request headers too large');
    else if (code === 'ERR_HTTP_REQUEST_TIMEOUT') reply = localReply('ETZ_ERR_REQUEST_TIMEOUT', 'request head not received in time');
    else reply = localReply('ETZ_ERR_BAD_REQUEST', `malformed request: ${err.reason ?? code ?? 'parse error'}`);
    const counter = this.#chain.shared.localReplies;
    const res = s._httpMessage;
    if (res instanceof ServerResponse) {
      // The head parsed and a request is in progress; its body was malformed or cut short. The
      // upstream must not keep waiting for the rest of it.
      const ctx = (res as CtxResponse)[kCtx];
      if (ctx !== undefined && ctx.abortUpstream !== null) {
        const abort = ctx.abortUpstream;
        ctx.abortUpstream = null;
        abort(err);
      }
      if (!res.headersSent) sendLocalReply(res, reply, counter, true);
      else s.destroy();
      return;
    }
    sendRawLocalReply(s, reply, counter);
  };
}
