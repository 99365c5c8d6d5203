import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { Socket } from 'node:net';

/**
 * Real upstream servers for the traffic tests, each with a behaviour (healthy, 5xx, reset, hang,
 * crash mid-response, intermittent) and a count of the requests it received, plus a small HTTP
 * client that talks to a sidecar listener with a chosen Host header.
 */

export type Behaviour = 'ok' | '503' | 'reset' | 'hang' | 'crash-mid-body' | 'flaky';

export interface Backend {
  name: string;
  port: number;
  /** Requests received, by method. */
  hits: { total: number; byMethod: Record<string, number>; connections: number };
  behaviour: Behaviour;
  close(): Promise<void>;
}

export async function startBackend(name: string, behaviour: Behaviour): Promise<Backend> {
  const sockets = new Set<Socket>();
  const hits = { total: 0, byMethod: {} as Record<string, number>, connections: 0 };
  const backend = { name, port: 0, hits, behaviour } as Backend;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hits.total++;
    hits.byMethod[req.method!] = (hits.byMethod[req.method!] ?? 0) + 1;
    req.resume();
    const reply = (status: number) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-backend': name });
      res.end(JSON.stringify({ backend: name, status }));
    };
    switch (backend.behaviour) {
      case 'ok':
        return reply(200);
      case '503':
        return reply(503);
      case 'reset':
        return req.socket.destroy();
      case 'hang':
        return; // never answers; closed with the server
      case 'crash-mid-body':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000', 'x-backend': name });
        res.write('partial');
        setTimeout(() => req.socket.destroy(), 20);
        return;
      case 'flaky':
        return reply(hits.total % 2 === 0 ? 503 : 200);
    }
  });
  server.on('connection', (s: Socket) => {
    hits.connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  backend.port = (server.address() as { port: number }).port;
  backend.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return backend;
}

export interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
  /** The response ended early (connection lost mid-body). */
  truncated: boolean;
}

/** One request through a sidecar listener, on a fresh connection (no keep-alive effects). */
export function call(
  port: number,
  host: string,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: { host, connection: 'close', ...opts.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        const done = (truncated: boolean) => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString(), truncated });
        res.on('end', () => done(false));
        res.on('aborted', () => done(true));
        res.on('error', () => done(true));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function registryOf(service: string, backends: Backend[], version = (b: Backend) => b.name): Record<string, unknown> {
  return { [service]: { endpoints: backends.map((b) => ({ address: '127.0.0.1', port: b.port, version: version(b) })) } };
}
