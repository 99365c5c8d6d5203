import { performance } from 'node:perf_hooks';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import type { CompileEnv, HttpFilter, RequestContext } from '../../src/sidecar/filter.js';
import { threatIntelFilter, type IntelResource } from '../../src/sidecar/filters/threat-intel.js';
import { RiskScorer } from '../../src/sidecar/filters/risk-scoring.js';
import { table, writeResults } from '../common/report.js';

/**
 * `npm run bench -- intel`: the per-request cost of the sidecar's threat-intel and risk-scoring
 * filters on the event loop, in process (no sockets, so the filters' own cost is not lost in
 * HTTP noise). Side by side in one run: an empty filter (the floor), threat-intel with 100,000
 * indicators (exact IPv4, IPv4/IPv6 CIDRs of many prefix lengths, identities, principals) on a
 * request that matches nothing and on one that matches a CIDR, and risk-scoring's onComplete.
 * Then the worker's throughput on a batch of 500,000 records.
 */

function env(): CompileEnv {
  return { logger: nullLogger, metrics: createRegistry(), version: 1, direction: 'gateway', sidecar: {}, resources: {}, clusters: new Map(), connector: {} } as unknown as CompileEnv;
}

function ctx(remoteAddress: string, principal: string): RequestContext {
  return {
    id: 'r', direction: 'gateway', req: { rawHeaders: [] }, res: {}, startedAt: 0, method: 'GET', path: '/', query: '', host: 'reviews',
    remoteAddress, principal, decision: 'allow', attrs: new Map(), mtls: false, bytesIn: 0, bytesOut: 0,
  } as unknown as RequestContext;
}

function indicators(n: number): IntelResource {
  const list: Array<Record<string, string>> = [];
  for (let i = 0; i < n; i++) {
    const k = i % 5;
    const a = (i >> 16) & 255, b = (i >> 8) & 255, c = i & 255;
    if (k === 0) list.push({ type: 'ip', value: `11.${a}.${b}.${c}`, severity: 'high' });
    else if (k === 1) list.push({ type: 'cidr', value: `12.${a}.${b}.0/${16 + (i % 9)}`, severity: 'critical' });
    else if (k === 2) list.push({ type: 'cidr', value: `2001:db8:${a.toString(16)}:${b.toString(16)}::/${48 + (i % 17)}`, severity: 'high' });
    else if (k === 3) list.push({ type: 'identity', value: `spiffe://etz.local/ns/bad/sa/s${i}`, severity: 'high' });
    else list.push({ type: 'principal', value: `user-${i}`, severity: 'medium' });
  }
  return list as unknown as IntelResource;
}

function perOp(f: () => void, n: number): number {
  for (let i = 0; i < Math.min(n, 50_000); i++) f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t0) * 1e6) / n;
}

export async function run(args: string[]): Promise<void> {
  const n = Number(args[0] ?? 2_000_000);
  const empty: HttpFilter = { name: 'empty', onRequest: () => undefined };
  const compileStart = performance.now();
  const intel = threatIntelFilter.compile(indicators(100_000), env())!;
  const compileMs = performance.now() - compileStart;
  const miss = ctx('10.1.2.3', 'alice');
  const hit = ctx('12.0.7.9', 'alice');
  const v6miss = ctx('2001:db9::1', 'alice');
  const scorer = new RiskScorer(createRegistry(), nullLogger, () => {});
  scorer.configure({ enabled: true, batchSize: 10_000_000, maxQueued: 10_000_000, flushMs: 60_000 });
  let i = 0;
  const rows: Array<[string, number]> = [
    ['empty filter (floor)', perOp(() => void empty.onRequest(miss), n)],
    ['threat-intel, IPv4 miss', perOp(() => void intel.onRequest(miss), n)],
    ['threat-intel, IPv4 CIDR hit (deny)', perOp(() => void intel.onRequest(hit), n)],
    ['threat-intel, IPv6 miss', perOp(() => void intel.onRequest(v6miss), Math.floor(n / 4))],
    ['risk-scoring onComplete (record)', perOp(() => scorer.record('user', `r${i++ & 1023}`, 200, 0), 500_000)],
  ];
  // Worker throughput: half a million records from 50,000 principals.
  const scorer2 = new RiskScorer(createRegistry(), nullLogger, () => {});
  scorer2.configure({ enabled: true, batchSize: 10_000_000, maxQueued: 10_000_000, flushMs: 60_000 });
  const now = Date.now();
  for (let k = 0; k < 500_000; k++) scorer2.record(`user-${k % 50_000}`, `r${k}`, 200, now + (k >> 10));
  const t0 = performance.now();
  await scorer2.flush();
  const batchMs = performance.now() - t0;
  const workerMs = scorer2.last!.workerMs;
  await scorer.close();
  await scorer2.close();

  const floor = rows[0]![1];
  console.log(table(['case', 'ns/request', 'x floor'], rows.map(([c, ns]) => [c, ns, ns / floor])));
  console.log(`\nthreat-intel compile of 100,000 indicators: ${compileMs.toFixed(0)} ms (once per config version)`);
  console.log(`risk-scoring worker: 500,000 records in ${workerMs.toFixed(0)} ms in the worker (${((500_000 / workerMs) * 1000).toFixed(0)} records/s), ${batchMs.toFixed(0)} ms end to end`);
  const file = await writeResults('intel', {
    iterations: n,
    nsPerRequest: Object.fromEntries(rows),
    ratioToFloor: Object.fromEntries(rows.map(([c, ns]) => [c, ns / floor])),
    intelCompileMs: compileMs,
    scoringWorker: { records: 500_000, workerMs, endToEndMs: batchMs, recordsPerSec: (500_000 / workerMs) * 1000 },
  });
  console.log(`\nwritten: ${file}`);
}
