import { createServer } from 'node:http';

// Three upstream "versions" of one service in one process, 1 KiB per response; prints the three
// ports on one line.
const body = Buffer.alloc(1024, 'x');
const ports: number[] = [];
for (const version of ['v1', 'v2', 'v3']) {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-version': version });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    ports.push((server.address() as { port: number }).port);
    if (ports.length === 3) process.stdout.write(`${ports.join(' ')}\n`);
  });
}
process.on('SIGTERM', () => process.exit(0));
