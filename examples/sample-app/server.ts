import { createServer, type Server } from 'node:http';

/**
 * A tiny application to put a sidecar in front of: it answers with what it received, so a caller
 * can see what the sidecar forwarded (headers such as x-request-id and x-forwarded-for).
 *   GET  /          → a greeting as JSON with the request line and headers
 *   GET  /bytes/N   → N bytes
 *   POST /echo      → the request body, streamed back
 *   GET  /status/N  → responds with status N
 */
export function createSampleApp(name = 'sample-app'): Server {
  return createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'POST' && url.startsWith('/echo')) {
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      req.pipe(res);
      return;
    }
    let m = /^\/bytes\/(\d{1,9})$/.exec(url);
    if (m) {
      const n = Math.min(Number(m[1]), 64 * 1024 * 1024);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
      res.end(Buffer.alloc(n, 97));
      return;
    }
    m = /^\/status\/(\d{3})$/.exec(url);
    if (m) {
      res.writeHead(Number(m[1]), { 'content-type': 'text/plain' });
      res.end();
      return;
    }
    const body = JSON.stringify({ service: name, method: req.method, url, headers: req.headers }, null, 2);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}

// `node dist/examples/sample-app/server.js [port]` runs it standalone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] ?? 8080);
  const server = createSampleApp();
  server.listen(port, '127.0.0.1', () => process.stderr.write(`sample-app on 127.0.0.1:${port}\n`));
  process.once('SIGTERM', () => server.close());
  process.once('SIGINT', () => server.close());
}
