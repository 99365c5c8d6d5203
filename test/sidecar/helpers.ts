import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { once } from 'node:events';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry } from '../../src/core/metrics.js';
import { Sidecar, type SidecarOptions } from '../../src/sidecar/sidecar.js';

/** Shared fixtures for sidecar tests: a recording upstream, a sidecar on ephemeral ports, raw sockets. */

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
  trailers: IncomingMessage['trailers'];
}

export interface Upstream {
  server: Server;
  port: number;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** An upstream that records every request it receives (after reading its body) and then calls `handler`. */
export async function startUpstream(handler: Handler = defaultHandler, opts: { stream?: (req: IncomingMessage, res: ServerResponse) => void } = {}): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    // Recorded on arrival of the head, before the body: a request the sidecar started to forward
    // and then aborted still counts as seen.
    const entry: SeenRequest = { method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0), trailers: {} };
    seen.push(entry);
    if (opts.stream) {
      opts.stream(req, res);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      entry.body = Buffer.concat(chunks);
      entry.trailers = req.trailers;
      handler(req, res, entry.body);
    });
  });
  return listenRecording(server, seen);
}

/**
 * `server` on an ephemeral loopback port, with what it records. `close` also drops kept-alive
 * connections: otherwise server.close() waits for clients (sidecar pools) to let go of them.
 */
export async function listenRecording<S>(server: Server, seen: S): Promise<{ server: Server; port: number; seen: S; close(): Promise<void> }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as { port: number }).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function defaultHandler(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ method: req.method, url: req.url, bytes: body.length }));
}

/** A sidecar on ephemeral loopback ports with the given overrides merged in (plaintext unless `tls` or an identity is given). */
export async function startSidecar(appPort: number, extra: Record<string, unknown> = {}, opts: SidecarOptions = {}): Promise<Sidecar> {
  const base: Record<string, unknown> = {
    service: { name: 'reviews', version: 'v1', instance: 'reviews-0' },
    inbound: { host: '127.0.0.1', port: 0, appPort },
    outbound: { port: 0 },
    admin: { port: 0, token: 'test-admin-token-0123456789' },
    logging: { level: 'silent' },
  };
  for (const [k, v] of Object.entries(extra)) {
    base[k] = v !== null && typeof v === 'object' && !Array.isArray(v) && typeof base[k] === 'object' ? { ...(base[k] as object), ...(v as object) } : v;
  }
  // mTLS is the sidecar's default and needs an identity; tests that pass neither a `tls` section
  // nor an identity mean a plaintext sidecar, so they say so.
  if (!('tls' in extra) && opts.identity === undefined) base.tls = { mode: 'DISABLE' };
  // `undefined` in an override removes the field (e.g. the admin token).
  return Sidecar.start(JSON.parse(JSON.stringify(base)) as Record<string, unknown>, { logger: nullLogger, registry: createRegistry(), ...opts });
}

/**
 * Write raw bytes on a fresh connection and collect everything the server sends until it closes
 * (or `waitMs` passes without a close).
 */
export async function rawExchange(port: number, data: string | Buffer, waitMs = 3000): Promise<string> {
  const sock = connect(port, '127.0.0.1');
  await once(sock, 'connect');
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  sock.on('error', () => {});
  sock.write(data);
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      sock.destroy();
      resolve();
    }, waitMs);
    sock.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
  return Buffer.concat(chunks).toString('latin1');
}

export function statusOf(raw: string): number {
  const m = /^HTTP\/1\.1 (\d{3})/.exec(raw);
  return m ? Number(m[1]) : 0;
}

/**
 * The inbound port a child `etz sidecar` prints in its start line on stderr (it listens on port 0),
 * polled for up to ~30 s; 0 if it never appeared.
 */
export async function inboundPortFromLog(stderr: () => string): Promise<number> {
  for (let i = 0; i < 3000; i++) {
    const m = /inbound :(\d+)/.exec(stderr());
    if (m) return Number(m[1]);
    await delay(10);
  }
  return 0;
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
