import { createServer } from 'node:http';

// The benchmark's upstream: 1 KiB per response, keep-alive, as cheap as Node can make it.
const body = Buffer.alloc(1024, 'x');
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
