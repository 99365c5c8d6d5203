import { createServer, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

/**
 * The floor of a Node.js proxy: Node's HTTP server in front of an undici pool, as the etz sidecar
 * is built, with nothing else (no filters, no header rewriting beyond hop-by-hop, no metrics).
 * The mesh scenario runs it at the same load as a sidecar, so the table separates what etz adds
 * from what the Node HTTP stack and the kernel cost anyway.
 */
const pool = new Pool(`http://127.0.0.1:${process.argv[2]}`, { connections: 256, pipelining: 1, keepAliveTimeout: 4000 });

class Handler implements Dispatcher.DispatchHandler {
  constructor(readonly res: ServerResponse) {}
  onConnect(): void {}
  onHeaders(status: number, raw: Buffer[], _resume: () => void, text: string): boolean {
    const h: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toString('latin1');
      if (name.length === 10 && name.toLowerCase() === 'keep-alive') continue;
      h.push(name, raw[i + 1]!.toString('latin1'));
    }
    this.res.writeHead(status, text, h);
    return true;
  }
  onData(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }
  onComplete(): void {
    this.res.end();
  }
  onError(): void {
    if (!this.res.headersSent) this.res.writeHead(502);
    this.res.end();
  }
}

const server = createServer({ noDelay: true, keepAlive: true }, (req, res) => {
  const raw = req.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (lower === 'connection' || lower === 'keep-alive') continue;
    headers.push(lower, raw[i + 1]!);
  }
  pool.dispatch({ method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req }, new Handler(res));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
process.on('SIGTERM', () => process.exit(0));
