// A stand-in listener for the namespace tests: answers every HTTP request with what it learned
// about the connection (which listener took it, the original destination recovered from the
// kernel), and on /dial?url=… makes an outbound call itself, to show which traffic the rules let
// through untouched. Started with `node iptables-fixture-server.js NAME PORT[,PORT…]`; prints
// READY once every port listens.
import { createServer, request } from 'node:http';
import { getOriginalDst, originalDstStatus } from '../../src/sidecar/original-dst.js';

const [name = 'fixture', portList = ''] = process.argv.slice(2);
const ports = portList.split(',').map(Number);

function dial(url: string): Promise<unknown> {
  return new Promise((resolve) => {
    const req = request(url, { timeout: 4000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch {
          resolve({ raw: body });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end();
  });
}

const server = createServer(async (req, res) => {
  const u = new URL(req.url ?? '/', 'http://x');
  const info: Record<string, unknown> = {
    name,
    uid: process.getuid?.(),
    listenerPort: req.socket.localPort,
    remoteAddress: req.socket.remoteAddress,
    originalDst: getOriginalDst(req.socket),
  };
  if (u.pathname === '/dial') info.dialed = await dial(u.searchParams.get('url') ?? '');
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(info));
});

let pending = ports.length;
const extra = ports.slice(1).map(() => createServer(server.listeners('request')[0] as never));
[server, ...extra].forEach((s, i) => {
  s.listen({ port: ports[i], host: '::', ipv6Only: false }, () => {
    if (--pending === 0) process.stdout.write(`READY ${JSON.stringify(originalDstStatus())}\n`);
  });
});
process.on('SIGTERM', () => process.exit(0));
