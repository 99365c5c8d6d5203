// `npm run bench -- port-level [--requests N] [--concurrency C] [--rounds R]`
// The cost of per-port inbound mTLS modes, side by side in one run: plaintext requests, each on
// a new connection (the mode is decided per connection, so that is where any cost shows), into
//   A  a sidecar whose workload mode is PERMISSIVE (one mode, no per-port lookup), and
//   B  a STRICT sidecar whose extra port is PERMISSIVE by tls.portLevel (original-destination
//      lookup and map lookup per connection).
// Rounds alternate A and B; the table gives medians and B/A. A keep-alive row checks that
// requests on an open connection pay nothing, and the last rows time the per-connection decision
// itself on a real accepted socket (steadier than rates on a shared machine).
import { createServer, request, Agent, type Server } from 'node:http';
import { createServer as createNetServer, connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { nullLogger } from '../../src/core/logger.js';
import { createRegistry } from '../../src/core/metrics.js';
import { initCa } from '../../src/identity/index.js';
import { Sidecar } from '../../src/sidecar/sidecar.js';
import { WorkloadIdentity } from '../../src/sidecar/tls/workload-identity.js';
import { compilePortModes, modeOfConnection, type PortModes } from '../../src/sidecar/tls/port-modes.js';
import { freePort } from '../common/child.js';
import { table, writeResults } from '../common/report.js';

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

function get(port: number, agent: Agent | false): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent, headers: agent === false ? { connection: 'close' } : {} }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Requests per second for `total` requests from `concurrency` sequential clients. */
async function rate(port: number, total: number, concurrency: number, keepAlive: boolean): Promise<number> {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  let left = total;
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) await get(port, agent);
  }));
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  if (agent) agent.destroy();
  return total / s;
}

/** Nanoseconds per mode decision (median of batches) on one real accepted loopback socket. */
async function decisionNs(modes: PortModes, iterations: number): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const c = connect((srv.address() as { port: number }).port, '127.0.0.1');
  const s = await accepted;
  const batches: number[] = [];
  let sink = 0;
  for (let b = 0; b < 20; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations / 20; i++) sink += modeOfConnection(modes, s).port;
    batches.push(Number(process.hrtime.bigint() - t0) / (iterations / 20));
  }
  if (sink === -1) console.log(sink);
  c.destroy();
  s.destroy();
  await new Promise((r) => srv.close(r));
  return median(batches);
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: {
    requests: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '15' },
  } });
  const total = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const rounds = Number(values.rounds);

  const app: Server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as { port: number }).port;
  const ca = await initCa({ trustDomain: 'etz.local' });
  const identity = await WorkloadIdentity.fromLocalCa(ca, 'spiffe://etz.local/ns/default/sa/reviews', {});
  const base = (extra: Record<string, unknown>) => ({
    service: { name: 'reviews' },
    outbound: { enabled: false },
    admin: { enabled: false },
    logging: { level: 'silent' },
    telemetry: { enabled: false },
    ...extra,
  });
  const extraPort = await freePort();
  const a = await Sidecar.start(base({ inbound: { host: '127.0.0.1', port: 0, appPort }, tls: { mode: 'PERMISSIVE' } }), { identity, logger: nullLogger, registry: createRegistry() });
  const b = await Sidecar.start(base({
    inbound: { host: '127.0.0.1', port: 0, appPort, extraPorts: [extraPort] },
    tls: { mode: 'STRICT', portLevel: { [String(extraPort)]: 'PERMISSIVE' } },
  }), { identity, logger: nullLogger, registry: createRegistry() });
  const targets = { A: a.ports.inbound, B: extraPort };

  const res: Record<string, { A: number[]; B: number[] }> = { newConnection: { A: [], B: [] }, keepAlive: { A: [], B: [] } };
  try {
    // Warm-up: JIT and the sidecars' upstream pools.
    for (const p of Object.values(targets)) await rate(p, 500, concurrency, false);
    for (let i = 0; i < rounds; i++) {
      for (const k of (i % 2 === 0 ? ['A', 'B'] : ['B', 'A']) as Array<'A' | 'B'>) {
        res.newConnection![k].push(await rate(targets[k], total, concurrency, false));
        res.keepAlive![k].push(await rate(targets[k], total, concurrency, true));
      }
    }
  } finally {
    await a.close({ drainMs: 100 });
    await b.close({ drainMs: 100 });
    identity.stop();
    app.closeAllConnections();
    app.close();
  }
  const rows = Object.entries(res).map(([name, r]) => {
    const A = median(r.A);
    const B = median(r.B);
    return { name, A, B, ratio: B / A };
  });
  const noOverrides = await decisionNs(compilePortModes('PERMISSIVE', {}, 'bench'), 200_000);
  const withOverrides = await decisionNs(compilePortModes('STRICT', { [String(extraPort)]: 'PERMISSIVE' }, 'bench'), 200_000);
  console.log(`port-level: plaintext GET, ${total} requests x ${rounds} rounds, concurrency ${concurrency}, medians (req/s)`);
  console.log(table(['traffic', 'A PERMISSIVE workload', 'B STRICT + PERMISSIVE port', 'B/A'], rows.map((r) => [r.name, r.A, r.B, r.ratio])));
  console.log(table(['mode decision per connection', 'ns (median)'], [['no tls.portLevel (constant)', noOverrides], ['with tls.portLevel (SO_ORIGINAL_DST + map)', withOverrides]]));
  const file = await writeResults('port-level', {
    when: new Date().toISOString(),
    node: process.version,
    requests: total, concurrency, rounds,
    unit: 'requests per second (median of rounds)',
    results: Object.fromEntries(rows.map((r) => [r.name, { permissiveWorkload: r.A, strictWithPermissivePort: r.B, ratio: r.ratio, samples: res[r.name] }])),
    decisionNs: { noPortLevel: noOverrides, withPortLevel: withOverrides },
  });
  console.log(`written ${file}`);
}
