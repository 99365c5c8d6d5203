import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds, peakRssMiB } from '../common/proc.js';
import { freePort, stop, waitListening } from '../common/child.js';
import { fixedRate, saturate, type LoadExtras } from '../common/load.js';
import { table, writeResults } from '../common/report.js';
import { runMicro } from './micro.js';

/**
 * `npm run bench -- filters`: what the traffic filters cost. Two etz sidecars, run one after the
 * other as child processes against the same three upstream versions: the plain sidecar (outbound
 * listener, Host-header routing only) and the same sidecar with rate limiting (per principal, per
 * client IP, per listener — limits high enough never to deny), a route table (ten rules matching
 * headers, paths and query; the last one a 50/50 split with a suspicious destination) and session
 * affinity by consistent hashing, plus the per-principal detector and JWT-less principal header.
 * Requests carry a principal drawn from 10,000 users (wrk Lua script), so the per-key state is
 * exercised. Reported: saturation throughput, CPU seconds per 1000 requests at a fixed rate and at
 * saturation, and the filters' share of the plain sidecar's CPU per request (target ≤ 15%).
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const ETZ_MAIN = join(here, '..', '..', 'src', 'cli', 'main.js');

interface Row {
  target: string;
  saturationRps: number;
  saturationErrors: number;
  p50Ms: number | null;
  p99Ms: number | null;
  fixedErrors: number;
  cpuSecPer1kAtFixedRate: number | null;
  cpuSecPer1kAtSaturation: number | null;
  peakRssMiB: number | null;
}

function filterResources(): Record<string, unknown> {
  const rules: unknown[] = [];
  for (let i = 0; i < 9; i++) {
    rules.push({
      name: `decoy-${i}`,
      hosts: ['reviews'],
      match: [{ path: { prefix: `/api/v${i}` }, headers: { 'x-canary': `c${i}` } }, { query: { variant: `q${i}` } }],
      route: [{ subset: { version: 'v1' } }],
    });
  }
  rules.push({
    name: 'reviews',
    hosts: ['reviews'],
    match: { path: { prefix: '/reviews' }, methods: ['GET', 'HEAD'] },
    route: [
      { subset: { version: 'v2' }, weight: 50 },
      { subset: { version: 'v3' }, weight: 50 },
    ],
    suspicious: { subset: { version: 'v1' } },
    affinity: { header: 'x-etz-principal' },
  });
  return {
    routes: { rules, destinations: { reviews: { loadBalancer: 'consistent-hash' } } },
    rateLimits: [
      { name: 'per-user', key: 'principal', requests: 1_000_000, per: 'second', directions: ['outbound'] },
      { name: 'per-ip', key: 'ip', requests: 1_000_000, per: 'second', directions: ['outbound'] },
      { name: 'listener', key: 'listener', requests: 10_000_000, per: 'second', directions: ['outbound'] },
    ],
  };
}

async function startSidecar(dir: string, name: string, ports: number[], resources: Record<string, unknown>): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const file = join(dir, `${name}.json`);
  const config = {
    service: { name: 'productpage', version: 'v1' },
    inbound: { enabled: false },
    outbound: { host: '127.0.0.1', port },
    admin: { enabled: false },
    logging: { level: 'warn' },
    telemetry: { enabled: false },
    // Plaintext to plain upstreams: the filters are measured, not the TLS handshake.
    tls: { mode: 'DISABLE' },
    registry: { reviews: { endpoints: ports.map((p, i) => ({ address: '127.0.0.1', port: p, version: `v${i + 1}` })) } },
    resources,
  };
  await writeFile(file, JSON.stringify(config));
  const proc = spawn(process.execPath, [ETZ_MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitListening(port);
  return { port, proc };
}

async function measure(name: string, port: number, proc: ChildProcess, opts: { connections: number; seconds: number; rate: number }, extras: LoadExtras): Promise<Row> {
  const url = `http://127.0.0.1:${port}/reviews/0`;
  await saturate(url, opts.connections, 2, 2, extras);
  const pid = proc.pid!;
  const cpu0 = await cpuSeconds(pid);
  const sat = await saturate(url, opts.connections, opts.seconds, 2, extras);
  const cpu1 = await cpuSeconds(pid);
  const fixed = await fixedRate(url, opts.rate, opts.seconds, 16, extras.headers);
  const cpu2 = await cpuSeconds(pid);
  const per1k = (a: number | null, b: number | null, n: number): number | null =>
    a === null || b === null || n === 0 ? null : Math.round(((b - a) / (n / 1000)) * 10000) / 10000;
  return {
    target: name,
    saturationRps: Math.round(sat.rps),
    saturationErrors: sat.errors,
    p50Ms: fixed.p50Ms,
    p99Ms: fixed.p99Ms,
    fixedErrors: fixed.errors,
    cpuSecPer1kAtFixedRate: per1k(cpu1, cpu2, fixed.requests),
    cpuSecPer1kAtSaturation: per1k(cpu0, cpu1, sat.requests),
    peakRssMiB: await peakRssMiB(pid),
  };
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '8' },
      rate: { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '2' },
      'micro-only': { type: 'boolean' },
    },
  });
  const opts = { connections: Number(values.connections), seconds: Number(values.duration), rate: Number(values.rate) };
  const rounds = Math.max(1, Number(values.rounds));
  if (values['micro-only']) {
    process.stdout.write(`${JSON.stringify(runMicro(filterResources()))}\n`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'etz-bench-filters-'));
  const script = join(dir, 'users.lua');
  // 10,000 users, one principal header per request (wrk); autocannon falls back to one user.
  await writeFile(
    script,
    'math.randomseed(42)\nrequest = function()\n  return wrk.format(nil, nil, { ["Host"] = "reviews", ["x-etz-principal"] = "user-" .. math.random(1, 10000) })\nend\n',
  );
  const extras: LoadExtras = { headers: { host: 'reviews', 'x-etz-principal': 'user-1' }, wrkScript: script };
  const upstream = spawn(process.execPath, [join(here, 'upstream.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rows: Row[] = [];
  try {
    const ports = await new Promise<number[]>((resolve, reject) => {
      let out = '';
      upstream.stdout!.on('data', (c: Buffer) => {
        out += c;
        const m = /^(\d+) (\d+) (\d+)\n/.exec(out);
        if (m) resolve([Number(m[1]), Number(m[2]), Number(m[3])]);
      });
      upstream.once('exit', () => reject(new Error('upstream exited')));
    });
    // Alternate plain and filtered runs so drift on a shared machine hits both alike.
    for (let r = 0; r < rounds; r++) {
      for (const [name, resources] of [
        ['plain', {}],
        ['filters', filterResources()],
      ] as const) {
        process.stderr.write(`round ${r + 1}: measuring ${name} …\n`);
        const s = await startSidecar(dir, name, ports, resources);
        try {
          rows.push(await measure(name, s.port, s.proc, opts, extras));
        } finally {
          await stop(s.proc);
        }
      }
    }
  } finally {
    await stop(upstream);
    await rm(dir, { recursive: true, force: true });
  }

  const mean = (name: string, k: keyof Row): number | null => {
    const v = rows.filter((r) => r.target === name).map((r) => r[k]).filter((x): x is number => typeof x === 'number');
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const pct = (a: number | null, b: number | null): number | null => (a !== null && b ? Math.round(((a - b) / b) * 1000) / 10 : null);
  const summary = {
    plainRps: mean('plain', 'saturationRps'),
    filtersRps: mean('filters', 'saturationRps'),
    throughputRatio: (() => {
      const a = mean('filters', 'saturationRps');
      const b = mean('plain', 'saturationRps');
      return a !== null && b ? Math.round((a / b) * 1000) / 1000 : null;
    })(),
    cpuOverheadPctAtFixedRate: pct(mean('filters', 'cpuSecPer1kAtFixedRate'), mean('plain', 'cpuSecPer1kAtFixedRate')),
    cpuOverheadPctAtSaturation: pct(mean('filters', 'cpuSecPer1kAtSaturation'), mean('plain', 'cpuSecPer1kAtSaturation')),
  };
  // The filters alone, in process: robust against other load on a shared machine.
  const micro = runMicro(filterResources());
  const plainCpuMicros = (() => {
    const v = mean('plain', 'cpuSecPer1kAtFixedRate');
    return v === null ? null : v * 1000;
  })();
  const microSharePct = plainCpuMicros ? Math.round((micro.cpuMicrosPerRequest / plainCpuMicros) * 1000) / 10 : null;
  const within = (p: number | null) => (p === null ? null : p <= 15);
  process.stdout.write(
    `\nTraffic filters benchmark: rate limits ×3, 10 route rules, 50/50 split with affinity (consistent hash), detector; ` +
      `${opts.connections} connections for saturation, ${opts.rate} req/s fixed rate, ${opts.seconds}s each, ${rounds} round(s)\n\n` +
      table(
        ['target', 'sat. req/s', 'p50 ms @rate', 'p99 ms @rate', 'CPU-s/1k @rate', 'CPU-s/1k @sat', 'peak RSS MiB', 'errors'],
        rows.map((r) => [r.target, r.saturationRps, r.p50Ms, r.p99Ms, r.cpuSecPer1kAtFixedRate, r.cpuSecPer1kAtSaturation, r.peakRssMiB, r.saturationErrors + r.fixedErrors]),
      ) +
      `\n\nfilters/plain throughput ${summary.throughputRatio ?? '–'}×; filters' extra CPU per request: ` +
      `${summary.cpuOverheadPctAtFixedRate ?? '–'}% at the fixed rate, ${summary.cpuOverheadPctAtSaturation ?? '–'}% at saturation (target ≤ 15%)\n` +
      `in process: the filters take ${micro.cpuMicrosPerRequest} µs CPU per request (${micro.users} users), ` +
      `${microSharePct ?? '–'}% of the plain sidecar's ${plainCpuMicros === null ? '–' : Math.round(plainCpuMicros)} µs per request at the fixed rate (target ≤ 15%)\n`,
  );
  const file = await writeResults('filters', {
    benchmark: 'filters',
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    options: { ...opts, rounds },
    rows,
    summary,
    micro: { ...micro, plainCpuMicrosPerRequest: plainCpuMicros, sharePct: microSharePct },
    targets: {
      cpuOverheadAtMost15PctFixedRate: within(summary.cpuOverheadPctAtFixedRate),
      cpuOverheadAtMost15PctSaturation: within(summary.cpuOverheadPctAtSaturation),
      inProcessShareAtMost15Pct: within(microSharePct),
    },
  });
  process.stdout.write(`results: ${file}\n`);
}
