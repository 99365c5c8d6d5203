// The "unmodified application" of the end-to-end namespace test: a plain HTTP server that
// answers with what it received (who it is, the request's headers, the peer address).
// `node netns-app.js NAME PORT` prints READY once listening.
import { createServer } from 'node:http';

const [name = 'app', port = '8080'] = process.argv.slice(2);
const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, remoteAddress: req.socket.remoteAddress }));
  });
});
server.listen({ port: Number(port), host: '::', ipv6Only: false }, () => process.stdout.write('READY\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
