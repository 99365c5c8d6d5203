import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { EtzError, isEtzError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { readBody, readText, type Router } from '../api/http.js';
import { ADMIN_TOKEN_FILE } from '../auth.js';
import { DashboardState, type ApiCall } from './state.js';
import { PAGE_HTML } from './page.js';

/**
 * The live dashboard: one page (plain DOM + SVG, no external asset, works offline), a state
 * snapshot and a Server-Sent Events stream. It reads and acts only through the manager's own
 * API routes (same handlers, same validation, same audit records), as the admin.
 *
 * Authentication: the admin token, given once (login form or `/?token=`), is exchanged for an
 * HttpOnly, SameSite=Strict cookie holding an HMAC of it; actions also need a custom header,
 * which a cross-site form cannot send.
 */

export const DASHBOARD_FILE = 'dashboard.json';
const COOKIE = 'etz_dashboard';
const ACTOR = 'dashboard:admin-token';

export interface DashboardOptions {
  host: string;
  port: number;
  refreshMs: number;
  dataDir: string;
  router: Router;
  logger: Logger;
  /** Flagged end users (not exposed by a route of their own). */
  flagged?: () => unknown[];
}

export class Dashboard {
  static async start(o: DashboardOptions): Promise<Dashboard> {
    const token = (await readFile(join(o.dataDir, ADMIN_TOKEN_FILE), 'utf8')).trim();
    const d = new Dashboard(o, token);
    await d.listen();
    return d;
  }

  private readonly server: Server;
  private readonly session: Buffer;
  private readonly state: DashboardState;
  private readonly clients = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;
  private url_ = '';

  private constructor(private readonly o: DashboardOptions, token: string) {
    // The cookie proves knowledge of the admin token without being the token.
    this.session = createHmac('sha256', token).update('etz-dashboard-session').digest();
    this.tokenMac = createHmac('sha256', 'etz-dashboard').update(token).digest();
    this.state = new DashboardState(this.call, o.flagged);
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 15_000;
  }

  private readonly tokenMac: Buffer;

  get url(): string {
    return this.url_;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  private async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const host = this.o.host.includes(':') ? `[${this.o.host}]` : this.o.host === '0.0.0.0' ? '127.0.0.1' : this.o.host;
    this.url_ = `http://${host}:${this.port}/`;
    const file = join(this.o.dataDir, DASHBOARD_FILE);
    await writeFile(`${file}.tmp`, JSON.stringify({ url: this.url_, pid: process.pid }) + '\n', { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  /** Route a call through the manager's API router, as the admin. */
  private readonly call: ApiCall = async (method, path, body) => {
    const url = new URL(path, 'http://dashboard');
    const m = this.o.router.match(method, url.pathname);
    if (!m || 'allowed' in m) throw new EtzError('ETZ_ERR_NOT_FOUND', `no route ${method} ${url.pathname}`);
    return m.route.handler({
      req: { headers: {}, socket: {} } as IncomingMessage,
      res: undefined as unknown as ServerResponse,
      params: m.params,
      query: url.searchParams,
      actor: ACTOR,
      body: async () => body,
    });
  };

  private authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization;
    const bearer = auth ? /^Bearer\s+(\S+)$/i.exec(auth)?.[1] : undefined;
    if (bearer) return this.tokenOk(bearer);
    const m = /(?:^|;\s*)etz_dashboard=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '');
    if (!m) return false;
    const given = Buffer.from(m[1]!, 'base64url');
    return given.length === this.session.length && timingSafeEqual(given, this.session);
  }

  private tokenOk(token: string): boolean {
    const mac = createHmac('sha256', 'etz-dashboard').update(token).digest();
    return timingSafeEqual(mac, this.tokenMac);
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://dashboard');
      const path = url.pathname;
      res.setHeader('x-content-type-options', 'nosniff');
      res.setHeader('x-frame-options', 'DENY');
      if (path === '/healthz') return text(res, 200, 'ok\n', 'text/plain');
      if (path === '/login' && req.method === 'POST') return await this.login(req, res);
      if (path === '/' && req.method === 'GET') {
        const token = url.searchParams.get('token');
        if (token !== null) {
          if (!this.tokenOk(token)) return text(res, 401, loginPage('That token is not the admin token.'), 'text/html');
          this.setCookie(res);
          res.writeHead(303, { location: '/' });
          return void res.end();
        }
        if (!this.authorized(req)) return text(res, 401, loginPage(), 'text/html');
        res.setHeader('content-security-policy', "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:");
        return text(res, 200, PAGE_HTML, 'text/html');
      }
      if (!path.startsWith('/api/')) throw new EtzError('ETZ_ERR_NOT_FOUND', `no page ${path}`);
      if (!this.authorized(req)) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', 'the dashboard needs the admin token');
      if (path === '/api/state' && req.method === 'GET') return json(res, 200, await this.state.snapshot(true));
      if (path === '/api/events' && req.method === 'GET') return this.subscribe(req, res);
      const action = /^\/api\/zones\/([^/]+)\/(dissolve|extend|pin|unpin)$/.exec(path);
      if (action && req.method === 'POST') {
        // A cross-site form cannot set this header; fetch from another origin would need CORS.
        if (req.headers['x-etz-dashboard'] !== '1') throw new EtzError('ETZ_ERR_FORBIDDEN', 'missing x-etz-dashboard header');
        const body = (await readJson(req)) as Record<string, unknown>;
        const id = encodeURIComponent(decodeURIComponent(action[1]!));
        const verb = action[2]!;
        const result = verb === 'dissolve'
          ? await this.call('POST', `/v1/zones/${id}/dissolve`, { reason: String(body.reason ?? 'dissolved from the dashboard') })
          : verb === 'extend'
            ? await this.call('POST', `/v1/zones/${id}/extend`, { ttl: body.ttl ?? '30m', reason: String(body.reason ?? 'extended from the dashboard') })
            : await this.call('POST', `/v1/zones/${id}/pin`, { pinned: verb === 'pin' });
        this.state.invalidate();
        void this.broadcast();
        return json(res, 200, result);
      }
      throw new EtzError('ETZ_ERR_NOT_FOUND', `no route ${req.method} ${path}`);
    } catch (err) {
      if (!isEtzError(err)) this.o.logger.error({ err }, 'dashboard request failed');
      const status = isEtzError(err) ? err.status || 500 : 500;
      json(res, status, { error: isEtzError(err) ? err.code : 'ETZ_ERR_INTERNAL', reason: isEtzError(err) ? err.message : 'internal error' });
    }
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readText(req, 4096);
    const token = new URLSearchParams(raw).get('token') ?? '';
    if (!this.tokenOk(token)) return text(res, 401, loginPage('That token is not the admin token.'), 'text/html');
    this.setCookie(res);
    res.writeHead(303, { location: '/' });
    res.end();
  }

  private setCookie(res: ServerResponse): void {
    res.setHeader('set-cookie', `${COOKIE}=${this.session.toString('base64url')}; HttpOnly; SameSite=Strict; Path=/`);
  }

  private subscribe(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 2000\n\n');
    this.clients.add(res);
    req.on('close', () => {
      this.clients.delete(res);
      if (this.clients.size === 0) this.stopTimer();
    });
    void this.sendTo(res);
    if (!this.timer) {
      // One snapshot per refresh for all viewers; nothing runs while nobody watches.
      this.timer = setInterval(() => void this.broadcast(), this.o.refreshMs);
      this.timer.unref();
    }
  }

  private async sendTo(res: ServerResponse): Promise<void> {
    try {
      res.write(`event: state\ndata: ${JSON.stringify(await this.state.snapshot())}\n\n`);
    } catch (err) {
      this.o.logger.warn({ err }, 'dashboard snapshot failed');
    }
  }

  private async broadcast(): Promise<void> {
    if (this.clients.size === 0) return;
    let data: string;
    try {
      data = `event: state\ndata: ${JSON.stringify(await this.state.snapshot(true))}\n\n`;
    } catch (err) {
      this.o.logger.warn({ err }, 'dashboard snapshot failed');
      return;
    }
    for (const c of this.clients) {
      // A viewer that cannot keep up is dropped rather than buffered without bound.
      if (c.writableLength > 1 << 20) {
        c.destroy();
        this.clients.delete(c);
        continue;
      }
      c.write(data);
    }
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async close(): Promise<void> {
    this.stopTimer();
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    if (this.server.listening) {
      this.server.closeAllConnections();
      await new Promise<void>((r) => this.server.close(() => r()));
    }
  }
}

function text(res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, { 'content-type': `${type}; charset=utf-8`, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  text(res, status, JSON.stringify(body), 'application/json');
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req, 16_384);
  // The zone actions read optional fields off the body, so an empty one stands for no fields.
  return body === undefined ? {} : body;
}

function loginPage(error?: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>etz dashboard — sign in</title>
<style>body{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;height:100vh;margin:0}
form{background:#1e293b;padding:2em;border-radius:8px;min-width:380px}input{width:100%;padding:.5em;margin:.5em 0;box-sizing:border-box}
.err{color:#f87171}</style></head><body><form method="post" action="/login"><h2>etz zone manager</h2>
<p>Paste the admin token (printed once by <code>etz manager</code>, kept in &lt;data-dir&gt;/admin-token).</p>
${error ? `<p class="err">${error}</p>` : ''}<input type="password" name="token" autocomplete="off" autofocus><button type="submit">Sign in</button></form></body></html>`;
}
