import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initCa, issueWorkloadCert } from '../../src/identity/index.js';
import { freePort, readPort, stop, waitListening } from '../common/child.js';
import { cpuSeconds } from '../common/proc.js';
import { table } from '../common/report.js';

/**
 * The mesh path scenario of `npm run bench -- http`: client → etz sidecar A (outbound) → mTLS →
 * etz sidecar B (inbound, STRICT) → app, against the app called directly and against the same two
 * sidecars in plaintext (which isolates what mTLS adds). Fixed rate (default 1000 req/s) from an
 * open-loop generator with microsecond latencies; each sidecar its own process so its CPU is read
 * from /proc.
 *
 * Two single-hop rows at the same load read the CPU columns: one sidecar alone (plaintext), and a
 * bare Node proxy (bare-proxy.ts: Node's HTTP server and an undici pool, nothing else). Requests
 * spaced evenly cost a Node process far more CPU each than the bursts of the saturation bench
 * (each one wakes the event loop on its own), so CPU per request is only comparable within one
 * load shape: here, sidecar against bare proxy.
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const ETZ_MAIN = join(here, '..', '..', 'src', 'cli', 'main.js');
/**
 * Extra node flags for the sidecar processes only (not the load generator or the app), e.g.
 * `ETZ_BENCH_SIDECAR_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof"` to profile the mesh path.
 */
const SIDECAR_NODE_ARGS = (process.env.ETZ_BENCH_SIDECAR_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== '');

export interface MeshRow {
  target: string;
  rps: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** CPU seconds per 1000 requests, per sidecar (A = client side, B = server side). */
  cpuPer1kA: number | null;
  cpuPer1kB: number | null;
}

export interface MeshResult {
  rows: MeshRow[];
  /** 1-minute load average before and after: on a shared machine, read the latencies with it. */
  loadAverage: [number, number];
  /** Added latency of the two sidecars with mTLS over direct, ms. */
  added: { p50Ms: number; p90Ms: number; p99Ms: number } | null;
  addedPlain: { p50Ms: number; p90Ms: number; p99Ms: number } | null;
  /** CPU per request of one sidecar over the bare Node proxy at the same load (what etz adds). */
  sidecarOverBareCpu: number | null;
}

async function sidecar(dir: string, name: string, lines: string[], port: number): Promise<ChildProcess> {
  const file = join(dir, `mesh-${name}.yaml`);
  await writeFile(file, [...lines, 'admin: { enabled: false }', 'logging: { level: warn }', 'telemetry: { enabled: false }', ''].join('\n'));
  const proc = spawn(process.execPath, [...SIDECAR_NODE_ARGS, ETZ_MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  // Ten seconds, as this scenario always allowed a sidecar to start.
  await waitListening(port, 10_000);
  return proc;
}

/** One plaintext inbound sidecar in front of the app (the single-hop reference row). */
async function startSingle(dir: string, appPort: number): Promise<{ url: string; b: ChildProcess }> {
  const port = await freePort();
  const b = await sidecar(dir, 'single', ['service: { name: bench, version: v1 }', `inbound: { host: 127.0.0.1, port: ${port}, appPort: ${appPort} }`, 'outbound: { enabled: false }', 'tls: { mode: DISABLE }'], port);
  return { url: `http://127.0.0.1:${port}/`, b };
}

async function startPair(dir: string, appPort: number, mtls: boolean): Promise<{ url: string; a: ChildProcess; b: ChildProcess }> {
  const bPort = await freePort();
  const aPort = await freePort();
  const RV = 'spiffe://etz.local/ns/default/sa/bench';
  const tls = (who: string) => (mtls ? [`tls: { certFile: ${join(dir, who, 'cert.pem')}, keyFile: ${join(dir, who, 'key.pem')}, caFile: ${join(dir, who, 'ca.pem')} }`] : ['tls: { mode: DISABLE }']);
  const b = await sidecar(dir, `b-${mtls}`, [
    'service: { name: bench, version: v1 }',
    `inbound: { host: 127.0.0.1, port: ${bPort}, appPort: ${appPort} }`,
    'outbound: { enabled: false }',
    ...tls('b'),
  ], bPort);
  const a = await sidecar(dir, `a-${mtls}`, [
    'service: { name: client }',
    'inbound: { enabled: false }',
    `outbound: { host: 127.0.0.1, port: ${aPort} }`,
    ...tls('a'),
    `registry: { bench: { endpoints: [{ address: 127.0.0.1, port: ${bPort} }]${mtls ? `, spiffeId: "${RV}"` : ''} } }`,
  ], aPort);
  return { url: `http://127.0.0.1:${aPort}/`, a, b };
}

/**
 * Open-loop fixed-rate load with microsecond latencies (autocannon's histogram has millisecond
 * resolution, too coarse for sub-millisecond overheads). Requests go out on a fixed timetable
 * whatever the answers do (open loop), so a stalled proxy shows as latency, not as a lower rate.
 */
async function fixed(url: string, rate: number, seconds: number, connections: number): Promise<{ rps: number; requests: number; errors: number; p50Ms: number; p90Ms: number; p99Ms: number }> {
  const { Pool } = await import('undici');
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const lat: number[] = [];
  let errors = 0;
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // From the scheduled time, or the actual send time when the generator itself fell behind.
    const t0 = Math.max(due, performance.now());
    inflight.push(
      pool.request({ path: u.pathname, method: 'GET', headers: { host: 'bench' } }).then(async (r) => {
        await r.body.dump();
        if (r.statusCode !== 200) errors++;
        else lat.push(performance.now() - t0);
      }, () => {
        errors++;
      }),
    );
    if (inflight.length > 4096) await Promise.all(inflight.splice(0, 2048));
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  lat.sort((x, y) => x - y);
  const q = (p: number): number => Math.round((lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN) * 1000) / 1000;
  return { rps: Math.round(total / elapsed), requests: total, errors, p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99) };
}

async function measure(target: string, url: string, procs: { a?: ChildProcess; b?: ChildProcess }, o: { rate: number; seconds: number; connections: number }): Promise<MeshRow> {
  await fixed(url, o.rate, 2, o.connections); // warm-up: JIT, pools, TLS sessions
  const a0 = procs.a?.pid ? await cpuSeconds(procs.a.pid) : null;
  const b0 = procs.b?.pid ? await cpuSeconds(procs.b.pid) : null;
  const r = await fixed(url, o.rate, o.seconds, o.connections);
  const a1 = procs.a?.pid ? await cpuSeconds(procs.a.pid) : null;
  const b1 = procs.b?.pid ? await cpuSeconds(procs.b.pid) : null;
  const per1k = (x: number | null, y: number | null): number | null => (x === null || y === null || r.requests === 0 ? null : Math.round(((y - x) / (r.requests / 1000)) * 10000) / 10000);
  return { target, ...r, cpuPer1kA: per1k(a0, a1), cpuPer1kB: per1k(b0, b1) };
}

/** Runs the scenario against an app already listening on appPort; `dir` is a scratch directory. */
export async function measureMesh(dir: string, appPort: number, o: { rate: number; seconds: number; connections?: number }): Promise<MeshResult> {
  const opts = { rate: o.rate, seconds: o.seconds, connections: o.connections ?? 16 };
  const ca = await initCa({ trustDomain: 'etz.local' });
  for (const [who, sa] of [['a', 'client'], ['b', 'bench']] as const) {
    const c = await issueWorkloadCert(ca, `spiffe://etz.local/ns/default/sa/${sa}`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, who), { recursive: true });
    await writeFile(join(dir, who, 'cert.pem'), c.certChainPem);
    await writeFile(join(dir, who, 'key.pem'), c.keyPem, { mode: 0o600 });
    await writeFile(join(dir, who, 'ca.pem'), c.trustBundlePem);
  }
  const rows: MeshRow[] = [];
  const load0 = loadavg()[0]!;
  process.stderr.write('measuring mesh: direct …\n');
  rows.push(await measure('direct', `http://127.0.0.1:${appPort}/`, {}, opts));
  process.stderr.write('measuring mesh: bare Node proxy …\n');
  const bare = spawn(process.execPath, [join(here, 'bare-proxy.js'), String(appPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    rows.push(await measure('bare Node proxy', `http://127.0.0.1:${await readPort(bare)}/`, { b: bare }, opts));
  } finally {
    await stop(bare);
  }
  process.stderr.write('measuring mesh: one sidecar …\n');
  const single = await startSingle(dir, appPort);
  try {
    rows.push(await measure('one sidecar', single.url, { b: single.b }, opts));
  } finally {
    await stop(single.b);
  }
  for (const mtls of [false, true]) {
    const pair = await startPair(dir, appPort, mtls);
    try {
      process.stderr.write(`measuring mesh: two sidecars ${mtls ? 'mTLS' : 'plaintext'} …\n`);
      rows.push(await measure(mtls ? 'mesh mTLS' : 'mesh plaintext', pair.url, pair, opts));
    } finally {
      await stop(pair.a);
      await stop(pair.b);
    }
  }
  const d = rows[0]!;
  const diff = (r: MeshRow | undefined) => (r ? { p50Ms: r.p50Ms - d.p50Ms, p90Ms: r.p90Ms - d.p90Ms, p99Ms: r.p99Ms - d.p99Ms } : null);
  const cpuB = (t: string) => rows.find((r) => r.target === t)?.cpuPer1kB ?? null;
  const one = cpuB('one sidecar');
  const floor = cpuB('bare Node proxy');
  return {
    rows,
    loadAverage: [load0, loadavg()[0]!],
    added: diff(rows.find((r) => r.target === 'mesh mTLS')),
    addedPlain: diff(rows.find((r) => r.target === 'mesh plaintext')),
    sidecarOverBareCpu: one !== null && floor ? Math.round((one / floor) * 100) / 100 : null,
  };
}

export function meshReport(m: MeshResult, rate: number): string {
  const a = m.added;
  return (
    `\nMesh path at ${rate} req/s: client → sidecar → (mTLS) → sidecar → app (load average ${m.loadAverage.map((x) => x.toFixed(1)).join(' → ')})\n\n` +
    table(
      ['target', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'CPU-s/1k A', 'CPU-s/1k B', 'errors'],
      m.rows.map((r) => [r.target, r.rps, r.p50Ms, r.p90Ms, r.p99Ms, r.cpuPer1kA, r.cpuPer1kB, r.errors]),
    ) +
    (a ? `\n\nadded by two sidecars with mTLS: p50 +${a.p50Ms.toFixed(3)} ms, p90 +${a.p90Ms.toFixed(3)} ms, p99 +${a.p99Ms.toFixed(3)} ms ` +
      '(Istio 1.20 published: +0.228 ms p90, +0.298 ms p99)' : '') +
    (m.addedPlain && a ? `\nof which mTLS (vs the same sidecars in plaintext): p50 +${(a.p50Ms - m.addedPlain.p50Ms).toFixed(3)} ms, p99 +${(a.p99Ms - m.addedPlain.p99Ms).toFixed(3)} ms` : '') +
    (m.sidecarOverBareCpu !== null ? `\nCPU per request, one sidecar / bare Node proxy at the same load: ${m.sidecarOverBareCpu}× (single-hop rows: CPU in column B)\n` : '\n')
  );
}
