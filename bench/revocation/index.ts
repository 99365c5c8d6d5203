// `npm run bench -- revocation [--handshakes N] [--concurrency C] [--rounds R] [--entries E]`
// What the revocation list costs the inbound mTLS guard, side by side in one run: full mTLS
// handshakes (a new connection per request, no session resumption, so every one goes through the
// peer check) into
//   A  a guard without a revocation list,
//   B  a guard with an empty list (the default on every sidecar),
//   C  a guard with E revoked serials (the peer is not among them: one Set lookup per handshake).
// Rounds rotate A, B, C; the table gives medians and ratios to A. The last rows time the lookup
// itself (RevocationList.has) with the list empty and with E entries.
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:tls';
import { parseArgs } from 'node:util';
import { initCa } from '../../src/identity/index.js';
import { attachInboundMtls } from '../../src/sidecar/tls/inbound.js';
import { RevocationList, compileRevoked } from '../../src/sidecar/tls/revocation.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { table, writeResults } from '../common/report.js';

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

/** One mTLS connection, one request, closed: resolves when the response has ended. */
function once(port: number, client: WorkloadIdentity): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, secureContext: client.clientContext, checkServerIdentity: () => undefined, ALPNProtocols: ['http/1.1'] });
    let buf = '';
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n'));
    s.on('data', (c: Buffer) => (buf += c.toString()));
    s.on('error', reject);
    s.on('close', () => (buf.startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(`unexpected reply: ${buf.slice(0, 40)}`))));
  });
}

async function rate(port: number, client: WorkloadIdentity, total: number, concurrency: number): Promise<number> {
  let left = total;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) await once(port, client);
  }));
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

function lookupNs(list: RevocationList, serial: string, iterations: number): number {
  const batches: number[] = [];
  let sink = 0;
  for (let b = 0; b < 20; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations / 20; i++) if (list.has(serial)) sink++;
    batches.push(Number(process.hrtime.bigint() - t0) / (iterations / 20));
  }
  if (sink < 0) console.log(sink);
  return median(batches);
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { handshakes: { type: 'string' }, concurrency: { type: 'string' }, rounds: { type: 'string' }, entries: { type: 'string' } } });
  const handshakes = Number(values.handshakes ?? 1500);
  const concurrency = Number(values.concurrency ?? 4);
  const rounds = Number(values.rounds ?? 5);
  const entries = Number(values.entries ?? 10_000);

  const ca = await initCa({ trustDomain: 'etz.local' });
  const server = await WorkloadIdentity.fromLocalCa(ca, 'spiffe://etz.local/ns/default/sa/reviews', {});
  const client = await WorkloadIdentity.fromLocalCa(ca, 'spiffe://etz.local/ns/default/sa/productpage', {});
  const many = new RevocationList();
  const now = Date.now();
  many.set(compileRevoked(Array.from({ length: entries }, () => ({ serial: randomBytes(16).toString('hex').toUpperCase(), notAfter: now + 86_400_000 })), now));
  const variants: Array<{ name: string; list: RevocationList | undefined; port: number; server: Server; rates: number[] }> = [];
  for (const [name, list] of [['A  no revocation list', undefined], ['B  empty list', new RevocationList()], [`C  ${entries} revoked serials`, many]] as const) {
    const http = createServer((_q, res) => res.end('ok'));
    attachInboundMtls(http, { mode: 'STRICT', identity: server, ...(list ? { revocation: list } : {}) });
    variants.push({ name, list, server: http, port: await listen(http), rates: [] });
  }
  try {
    for (const v of variants) await rate(v.port, client, 200, concurrency); // warm-up
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round, so no variant always runs first on a drifting machine.
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(i + r) % variants.length]!;
        v.rates.push(await rate(v.port, client, handshakes, concurrency));
      }
    }
  } finally {
    for (const v of variants) {
      v.server.closeAllConnections();
      v.server.close();
    }
    server.stop();
    client.stop();
  }
  const base = median(variants[0]!.rates);
  const absent = 'ABCDEF0123456789ABCDEF0123456789';
  const emptyNs = lookupNs(new RevocationList(), absent, 2_000_000);
  const fullNs = lookupNs(many, absent, 2_000_000);
  const rows = variants.map((v) => [v.name, Math.round(median(v.rates)), (median(v.rates) / base).toFixed(3)]);
  console.log(`\ninbound mTLS handshakes/s (new connection per request, ${handshakes} per round × ${rounds} rounds, concurrency ${concurrency}; median)\n`);
  console.log(table(['variant', 'handshakes/s', 'ratio to A'], rows));
  console.log('\nrevocation lookup per handshake (RevocationList.has, serial not listed)\n');
  console.log(table(['list', 'ns per lookup'], [['empty', emptyNs.toFixed(1)], [`${entries} entries`, fullNs.toFixed(1)]]));
  const file = await writeResults('revocation', {
    handshakes, concurrency, rounds, entries,
    variants: variants.map((v) => ({ name: v.name.slice(3), median: median(v.rates), ratioToA: median(v.rates) / base, rates: v.rates })),
    lookupNs: { empty: emptyNs, [String(entries)]: fullNs },
  });
  console.log(`\nresults: ${file}`);
}
