import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The Bookinfo sample (after Istio's): productpage calls details and reviews; reviews v2 (black
 * stars) and v3 (red stars) call ratings; v1 shows no stars. Each application reaches the others
 * only through its own sidecar's outbound listener (Host header = service name), so every call
 * between them crosses two sidecars and mTLS.
 *
 * reviews v2 can be switched to "compromised" (setCompromised): it starts calling services it
 * never called and ships large payloads out — the behaviour the risk engine should notice.
 */

export type BookinfoService = 'productpage' | 'details' | 'reviews' | 'ratings';

export interface AppSpec {
  service: BookinfoService;
  version: string;
}

export interface BookinfoApp {
  spec: AppSpec;
  server: Server;
  port: number;
  /** Port of this app's sidecar outbound listener (set once the sidecar runs). */
  outboundPort: number;
  /**
   * Call `http://SERVICE:9080` like an unmodified app instead of the outbound listener: name
   * resolution and transparent interception (`etz demo --iptables`) bring the call to the sidecar.
   */
  direct: boolean;
  compromised: boolean;
  /** Exfiltration calls the mesh refused (403/429/503) and let through, while compromised. */
  refused: number;
  leaked: number;
  exfil?: NodeJS.Timeout;
}

const BOOK = { id: 0, title: 'The Comedy of Errors', author: 'William Shakespeare', year: 1595, type: 'paperback', pages: 200, publisher: 'PublisherA', language: 'English', isbn10: '1234567890' };

interface Reply { status: number; body: string }

function callVia(app: BookinfoApp, service: string, path: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve) => {
    if (!app.direct && !app.outboundPort) return resolve({ status: 503, body: 'no sidecar yet' });
    const req = httpRequest({
      host: app.direct ? service : '127.0.0.1', port: app.direct ? SERVICE_PORT : app.outboundPort, path, method: body ? 'POST' : 'GET',
      headers: { host: service, ...headers, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
      timeout: 5000,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve({ status: 502, body: '' }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 502, body: '' }));
    req.end(body);
  });
}

/** Headers an app forwards to the next hop (as Bookinfo propagates trace and user headers). */
function propagate(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of ['x-request-id', 'x-etz-principal', 'x-etz-suspicious', 'end-user', 'traceparent']) {
    const v = req.headers[h];
    if (typeof v === 'string') out[h] = v;
  }
  return out;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function drain(req: IncomingMessage): Promise<number> {
  return new Promise((resolve) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => resolve(n));
    req.on('error', () => resolve(n));
  });
}

const EXFIL = 'x'.repeat(64 * 1024);

async function handle(app: BookinfoApp, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://app');
  await drain(req);
  const fwd = propagate(req);
  const { service, version } = app.spec;
  if (url.pathname === '/health') return json(res, 200, { status: 'ok', service, version });
  switch (service) {
    case 'details':
      return json(res, 200, { ...BOOK, id: Number(url.pathname.split('/').pop()) || 0 });
    case 'ratings':
      return json(res, 200, { id: 0, ratings: { Reviewer1: 5, Reviewer2: 4 } });
    case 'reviews': {
      const reviews: Array<Record<string, unknown>> = [
        { reviewer: 'Reviewer1', text: 'An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!' },
        { reviewer: 'Reviewer2', text: 'Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.' },
      ];
      if (version !== 'v1') {
        const r = await callVia(app, 'ratings', '/ratings/0', fwd);
        const stars = r.status === 200 ? (JSON.parse(r.body) as { ratings: Record<string, number> }).ratings : undefined;
        reviews[0]!.rating = stars ? { stars: stars.Reviewer1, color: version === 'v2' ? 'black' : 'red' } : { error: 'Ratings service is currently unavailable' };
        reviews[1]!.rating = stars ? { stars: stars.Reviewer2, color: version === 'v2' ? 'black' : 'red' } : { error: 'Ratings service is currently unavailable' };
      }
      return json(res, 200, { id: 0, podname: `reviews-${version}`, clustername: 'etz-demo', reviews });
    }
    case 'productpage': {
      if (url.pathname !== '/productpage' && url.pathname !== '/') return json(res, 404, { error: 'not found' });
      const [d, r] = await Promise.all([callVia(app, 'details', '/details/0', fwd), callVia(app, 'reviews', '/reviews/0', fwd)]);
      let reviewsVersion = 'unavailable';
      let stars: string | null = null;
      if (r.status === 200) {
        const body = JSON.parse(r.body) as { podname: string; reviews: Array<{ rating?: { color?: string } }> };
        reviewsVersion = body.podname.replace('reviews-', '');
        stars = body.reviews[0]?.rating?.color ?? null;
      }
      const status = d.status === 200 && r.status === 200 ? 200 : d.status === 200 || r.status === 200 ? 200 : 503;
      return json(res, status, { product: BOOK.title, details: d.status === 200, reviews: reviewsVersion, stars, detailsStatus: d.status, reviewsStatus: r.status });
    }
  }
}

const EXFIL_TARGETS = ['details', 'productpage', 'reviews', 'ratings'];

/**
 * The compromised build: besides serving, it explores the mesh and ships data out — twenty calls a
 * second with a 64 KiB body each, to services it never called (details, productpage, other
 * reviews) and to the sensitive ratings.
 */
export function setCompromised(app: BookinfoApp, on: boolean): void {
  app.compromised = on;
  clearInterval(app.exfil);
  app.exfil = undefined;
  if (!on) return;
  let i = 0;
  app.exfil = setInterval(() => {
    const target = EXFIL_TARGETS[i++ % EXFIL_TARGETS.length]!;
    void callVia(app, target, '/admin/export', { 'x-request-id': `exfil-${i}` }, EXFIL).then((r) => {
      if (r.status === 403 || r.status === 503 || r.status === 429) app.refused++;
      else if (r.status < 400) app.leaked++;
    });
  }, 50);
}

/** The port every Bookinfo service listens on and is called at when it runs in its own pod. */
export const SERVICE_PORT = 9080;

export interface AppListen {
  host?: string;
  port?: number;
  direct?: boolean;
}

export async function startApp(spec: AppSpec, listen: AppListen = {}): Promise<BookinfoApp> {
  const app: BookinfoApp = { spec, server: createServer(), port: 0, outboundPort: 0, direct: !!listen.direct, compromised: false, refused: 0, leaked: 0 };
  app.server.on('request', (req, res) => {
    handle(app, req, res).catch(() => {
      if (!res.headersSent) json(res, 500, { error: 'internal' });
      else res.destroy();
    });
  });
  app.server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    app.server.once('error', reject);
    app.server.listen(listen.port ?? 0, listen.host ?? '127.0.0.1', () => resolve());
  });
  app.port = (app.server.address() as AddressInfo).port;
  return app;
}

export function stopApp(app: BookinfoApp): Promise<void> {
  setCompromised(app, false);
  return new Promise((resolve) => {
    app.server.close(() => resolve());
    app.server.closeAllConnections();
  });
}

export const appKey = (s: AppSpec): string => `${s.service}-${s.version}`;

export const BOOKINFO: AppSpec[] = [
  { service: 'productpage', version: 'v1' },
  { service: 'details', version: 'v1' },
  { service: 'reviews', version: 'v1' },
  { service: 'reviews', version: 'v2' },
  { service: 'reviews', version: 'v3' },
  { service: 'ratings', version: 'v1' },
];

/** Messages between the demo and the apps process (IPC). */
export type AppsMessage =
  | { type: 'outbound'; ports: Record<string, number> }
  | { type: 'compromise'; key: string; on: boolean }
  | { type: 'stats' }
  | { type: 'stop' };

// Run as a child process (forked by `etz demo`): start every app (or only those named, one per
// pod with `--iptables`), report ports, obey the demo.
export async function runAppsProcess(o: AppListen & { only?: string[] } = {}): Promise<void> {
  const apps = new Map<string, BookinfoApp>();
  const specs = o.only ? BOOKINFO.filter((s) => o.only!.includes(appKey(s))) : BOOKINFO;
  if (specs.length === 0) throw new Error(`no Bookinfo app named ${o.only?.join(', ')} (known: ${BOOKINFO.map(appKey).join(', ')})`);
  for (const s of specs) apps.set(appKey(s), await startApp(s, o));
  const send = (m: unknown): void => {
    process.send?.(m);
  };
  send({ type: 'ports', ports: Object.fromEntries([...apps].map(([k, a]) => [k, a.port])) });
  const stop = async (): Promise<void> => {
    await Promise.all([...apps.values()].map(stopApp));
    process.disconnect?.();
    process.exit(0);
  };
  process.on('message', (m: AppsMessage) => {
    if (m.type === 'outbound') for (const [k, p] of Object.entries(m.ports)) { const a = apps.get(k); if (a) a.outboundPort = p; }
    else if (m.type === 'compromise') { const a = apps.get(m.key); if (a) setCompromised(a, m.on); }
    else if (m.type === 'stats') send({ type: 'stats', refused: Object.fromEntries([...apps].map(([k, a]) => [k, a.refused])), leaked: Object.fromEntries([...apps].map(([k, a]) => [k, a.leaked])) });
    else if (m.type === 'stop') void stop();
  });
  // The demo going away (even by SIGKILL) closes the IPC channel: leave no port bound.
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => {});
}

