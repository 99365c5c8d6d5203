// Runs inside the benchmark's network namespace: opens N TCP connections (C at a time) to a
// target and accepts them itself on the sidecar's outbound port, once straight over loopback and
// once through the iptables REDIRECT with original-destination recovery per accepted socket.
// Prints one JSON line with the results.
import { createServer, connect, type Socket } from 'node:net';
import { getOriginalDst, loadOriginalDst } from '../../src/sidecar/original-dst.js';

const [host = '127.0.0.1', portText = '15001', nText = '4000', cText = '32', lookupText = '1'] = process.argv.slice(2);
const n = Number(nText);
const c = Number(cText);
const lookup = lookupText === '1';
const status = loadOriginalDst();

const lookupNs: number[] = [];
const addressNs: number[] = [];
let misses = 0;

const server = createServer((s: Socket) => {
  if (lookup) {
    // socket.address() first: it makes the getsockname() call that Node then caches, so the
    // yardstick is one system call, like the lookup's getsockopt().
    let t = process.hrtime.bigint();
    s.address();
    addressNs.push(Number(process.hrtime.bigint() - t));
    t = process.hrtime.bigint();
    const od = getOriginalDst(s);
    lookupNs.push(Number(process.hrtime.bigint() - t));
    if (od === null) misses++;
  }
  s.end('x');
});

function one(): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(Number(portText), host);
    sock.once('error', reject);
    sock.once('data', () => sock.destroy());
    sock.once('close', () => resolve());
  });
}

server.listen(15001, '127.0.0.1', async () => {
  const t0 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) {
      next++;
      await one();
    }
  }));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const q = (a: number[], p: number) => (a.length ? [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]! : 0);
  process.stdout.write(JSON.stringify({
    addon: status.available,
    connections: n,
    connPerSec: n / seconds,
    misses,
    lookupNsP50: q(lookupNs, 0.5),
    lookupNsP99: q(lookupNs, 0.99),
    addressNsP50: q(addressNs, 0.5),
  }) + '\n');
  server.close();
});
