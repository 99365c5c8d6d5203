import { mkdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { AuthorizationEngine } from '../../src/policy/engine.js';
import { compileAuthz } from '../../src/policy/compile.js';
import { validatePolicyDocuments } from '../../src/policy/load.js';
import { lintPolicies } from '../../src/policy/lint.js';
import type { AuthorizationPolicy, PolicyRequest } from '../../src/policy/types.js';
import { mulberry32 } from '../../src/scoring/prng.js';
import { table as printTable } from '../common/report.js';
import { runSidecar } from './sidecar.js';

/**
 * Policy engine microbenchmark: decisions per second with 10,000 policies loaded, side by side
 * in one run — cached (LRU hit), uncached (full evaluation over the per-destination index), cache
 * miss (key + evaluation + insert), and a naive scan of every policy as the reference the index
 * is measured against. Also compile and lint time for the set.
 *
 * `npm run bench -- policy [--policies N] [--services N] [--ms N]`
 */

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? Number(args[i + 1]) : dflt;
}

// Deterministic: every run loads the same set.
const rng = mulberry32;

const sa = (ns: string, name: string) => `spiffe://etz.local/ns/${ns}/sa/${name}`;

export type Shape = 'typical' | 'heavy';

/**
 * Two policy sets of the same size. `typical`: one rule per policy (a caller, methods, a path
 * prefix), two mesh-wide DENY policies — the shape of most Istio policies. `heavy`: one to three
 * rules per policy, each with two source alternatives (principals with globs; namespace + CIDR),
 * two paths, some header conditions, version selectors, and eight mesh-wide DENY/AUDIT policies.
 */
export function generate(nPolicies: number, nServices: number, shape: Shape = 'heavy'): AuthorizationPolicy[] {
  const r = rng(42);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const nss = ['default', 'shop', 'payments', 'ops', 'data'];
  const docs: AuthorizationPolicy[] = [];
  if (shape === 'typical') {
    for (let i = 0; i < 2; i++) {
      docs.push({ apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name: `mesh-${i}` }, spec: { action: 'DENY', rules: [{ from: [{ namespaces: [`quarantine-${i}`] }] }] } });
    }
    for (let i = 2; i < nPolicies; i++) {
      const kind = r();
      docs.push({
        apiVersion: 'etz.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `p-${i}` },
        spec: {
          selector: { service: `svc-${i % nServices}` },
          action: kind < 0.85 ? 'ALLOW' : kind < 0.97 ? 'DENY' : 'AUDIT',
          rules: [{ from: [{ principals: [sa(pick(nss), `svc-${Math.floor(r() * nServices)}`)] }], to: [{ methods: [pick(['GET', 'POST'])], paths: [`/api/v${1 + Math.floor(r() * 3)}/*`] }] }],
        },
      });
    }
    return docs;
  }
  // A few mesh-wide policies: every request pays for them, as in a real mesh.
  const meshWide = 8;
  for (let i = 0; i < meshWide; i++) {
    docs.push({
      apiVersion: 'etz.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `mesh-${i}` },
      spec: { action: i % 4 === 3 ? 'AUDIT' : 'DENY', rules: [{ from: [{ namespaces: [`quarantine-${i}`] }] }, { from: [{ ipBlocks: [`192.0.${i}.0/24`] }] }] },
    });
  }
  for (let i = meshWide; i < nPolicies; i++) {
    const svc = `svc-${i % nServices}`;
    const kind = r();
    const action = kind < 0.7 ? 'ALLOW' : kind < 0.95 ? 'DENY' : 'AUDIT';
    const rules = Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({
      from: [{ principals: [sa(pick(nss), `svc-${Math.floor(r() * nServices)}`), `${sa(pick(nss), 'batch-')}*`] }, { namespaces: [pick(nss)], ipBlocks: ['10.0.0.0/8'] }],
      to: [{ methods: [pick(['GET', 'POST', 'PUT'])], paths: [`/api/v${1 + Math.floor(r() * 3)}/*`, `/items/${Math.floor(r() * 100)}`] }],
      ...(r() < 0.2 ? { when: [{ header: 'x-tenant', values: [`tenant-${Math.floor(r() * 10)}`] }] } : {}),
    }));
    docs.push({
      apiVersion: 'etz.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `p-${i}` },
      spec: { selector: { service: svc, ...(r() < 0.2 ? { version: 'v2' } : {}) }, action, rules },
    });
  }
  return docs;
}

/**
 * The request mix: most requests are legitimate (built from a rule of a policy that selects the
 * destination, so ALLOW rules match), the rest come from random identities (mostly denied).
 */
export function requests(n: number, nServices: number, docs: readonly AuthorizationPolicy[] = []): PolicyRequest[] {
  const r = rng(7);
  const nss = ['default', 'shop', 'payments', 'ops', 'data'];
  const allows = docs.filter((d) => d.spec.action === 'ALLOW' && d.spec.selector?.service && !d.spec.selector.version);
  return Array.from({ length: n }, () => {
    const random: PolicyRequest = {
      sourcePrincipal: sa(nss[Math.floor(r() * nss.length)]!, `svc-${Math.floor(r() * nServices)}`),
      sourceIp: `10.${Math.floor(r() * 255)}.${Math.floor(r() * 255)}.${Math.floor(r() * 255)}`,
      destService: `svc-${Math.floor(r() * nServices)}`,
      destVersion: r() < 0.5 ? 'v1' : 'v2',
      method: r() < 0.7 ? 'GET' : 'POST',
      path: r() < 0.5 ? `/api/v${1 + Math.floor(r() * 3)}/orders/${Math.floor(r() * 20)}` : `/items/${Math.floor(r() * 100)}`,
      port: 9080,
      host: 'svc',
      headers: { 'x-tenant': `tenant-${Math.floor(r() * 10)}` },
    };
    if (allows.length === 0 || r() < 0.3) return random;
    const p = allows[Math.floor(r() * allows.length)]!;
    const rule = p.spec.rules![0]!;
    const op = rule.to![0]!;
    const cond = rule.when?.[0];
    return {
      ...random,
      sourcePrincipal: rule.from![0]!.principals![0]!,
      destService: p.spec.selector!.service!,
      method: op.methods![0]!,
      path: op.paths![0]!.replace('*', `orders/${Math.floor(r() * 20)}`),
      headers: cond ? { 'x-tenant': cond.values![0]! } : random.headers!,
    };
  });
}

/**
 * Runs `fn(i)` repeatedly for about `ms`, three rounds; the median round's operations per second
 * of wall time and per second of this process's CPU time (the shared machine's load inflates the
 * first, hardly the second).
 */
function rate(ms: number, fn: (i: number) => unknown): { wall: number; cpu: number } {
  const rounds: { wall: number; cpu: number }[] = [];
  let sink = 0;
  for (let round = 0; round < 3; round++) {
    let ops = 0;
    const start = performance.now();
    const cpu0 = process.cpuUsage();
    let now = start;
    while (now - start < ms) {
      for (let k = 0; k < 1000; k++) if (fn(ops++)) sink++;
      now = performance.now();
    }
    const cpu = process.cpuUsage(cpu0);
    rounds.push({ wall: (ops / (now - start)) * 1000, cpu: (ops / (cpu.user + cpu.system)) * 1e6 });
  }
  if (sink < 0) console.log(sink);
  return rounds.sort((a, b) => a.cpu - b.cpu)[1]!;
}

/** A fixed, policy-free workload (Set lookups and string prefix tests) to calibrate the machine. */
function calibrate(ms: number): { wall: number; cpu: number } {
  const set = new Set(['spiffe://etz.local/ns/default/sa/a', 'b']);
  const keys = Array.from({ length: 1024 }, (_, i) => `spiffe://etz.local/ns/default/sa/svc-${i}`);
  return rate(ms, (i) => {
    const v = keys[i & 1023]!;
    return set.has(v) || v.startsWith('spiffe://etz.local/ns/x/');
  });
}


async function measure(shape: Shape, nPolicies: number, nServices: number, ms: number): Promise<Record<string, unknown>> {
  const raw = generate(nPolicies, nServices, shape);
  let t = performance.now();
  const docs = validatePolicyDocuments('bench', raw);
  const validateMs = performance.now() - t;
  t = performance.now();
  const compiled = compileAuthz(docs);
  const compileMs = performance.now() - t;
  t = performance.now();
  const conflicts = lintPolicies(docs).length;
  const lintMs = performance.now() - t;

  const reqs = requests(4096, nServices, docs as AuthorizationPolicy[]);
  const mask = reqs.length - 1;
  const cachedEngine = new AuthorizationEngine(compiled, { version: 1, cacheMax: 100_000 });
  for (const r of reqs) cachedEngine.evaluate(r); // warm: every key of the working set is cached
  const uncachedEngine = new AuthorizationEngine(compiled, { version: 1, cacheMax: 0 });

  // Cache misses: every request is new (a distinct path that the key includes), into a bounded LRU.
  const missEngine = new AuthorizationEngine(compiled, { version: 2, cacheMax: 10_000 });
  const missReqs = reqs.map((r) => ({ ...r }));

  // The reference: no index, every request walks all policies (selector check first).
  const all = compiled.policies;
  const naive = (r: PolicyRequest): boolean => {
    let allowSelected = false;
    let allowMatched = false;
    for (const p of all) {
      if (p.service !== undefined && p.service !== r.destService) continue;
      if (!p.selects(r)) continue;
      if (p.action === 'DENY' && p.rules.some((x) => x.test(r))) return false;
      if (p.action === 'ALLOW') {
        allowSelected = true;
        if (!allowMatched && p.rules.some((x) => x.test(r))) allowMatched = true;
      }
    }
    return allowMatched || !allowSelected;
  };

  // The decisions must agree before their speed means anything.
  for (const r of reqs) {
    const a = uncachedEngine.evaluate(r).allowed;
    if (a !== cachedEngine.evaluate(r).allowed || a !== naive(r)) throw new Error('engines disagree');
  }
  const allowedShare = reqs.filter((r) => uncachedEngine.evaluate(r).allowed).length / reqs.length;

  const calib = calibrate(Math.min(ms, 500));
  const cached = rate(ms, (i) => cachedEngine.evaluate(reqs[i & mask]!).allowed);
  const uncached = rate(ms, (i) => uncachedEngine.evaluate(reqs[i & mask]!).allowed);
  const miss = rate(ms, (i) => {
    const r = missReqs[i & mask]!;
    r.path = `/items/${i}`;
    return missEngine.evaluate(r).allowed;
  });
  const naiveRate = rate(Math.min(ms, 500), (i) => naive(reqs[i & mask]!));

  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  const row = (name: string, x: { wall: number; cpu: number }, target: string) => [name, fmt(x.wall), fmt(x.cpu), `${(x.cpu / naiveRate.cpu).toFixed(0)}x`, target];
  const rows: (string | number)[][] = [
    ['mode', 'per s (wall)', 'per CPU-s', 'vs naive', 'target'],
    row('cached (LRU hit)', cached, '>= 1,000,000'),
    row('uncached (index, no cache)', uncached, '>= 200,000'),
    row('cache miss (key + eval + insert)', miss, ''),
    row('naive scan of all policies', naiveRate, ''),
    ['calibration (Set.has + startsWith)', fmt(calib.wall), fmt(calib.cpu), '', ''],
  ];
  console.log(`\n[${shape}] policy engine: ${docs.length} policies over ${nServices} services, ${reqs.length} distinct requests (${(allowedShare * 100).toFixed(0)}% allowed)`);
  console.log(printTable(rows[0]!.map(String), rows.slice(1)));
  console.log(`cached/uncached ${(cached.cpu / uncached.cpu).toFixed(1)}x; uncached/naive ${(uncached.cpu / naiveRate.cpu).toFixed(0)}x; one uncached decision costs ${(calib.cpu / uncached.cpu).toFixed(0)} calibration operations, a cached one ${(calib.cpu / cached.cpu).toFixed(1)}`);
  console.log(`validate ${validateMs.toFixed(0)} ms, compile ${compileMs.toFixed(0)} ms, lint ${lintMs.toFixed(0)} ms (${conflicts} conflicts in the generated set)`);
  const round = (x: { wall: number; cpu: number }) => ({ wall: Math.round(x.wall), cpu: Math.round(x.cpu) });
  return {
    shape,
    policies: docs.length,
    services: nServices,
    distinctRequests: reqs.length,
    allowedShare: +allowedShare.toFixed(2),
    decisionsPerSecond: { cached: round(cached), uncached: round(uncached), cacheMiss: round(miss), naiveScan: round(naiveRate) },
    calibrationOpsPerSecond: round(calib),
    ratios: {
      cachedVsUncached: +(cached.cpu / uncached.cpu).toFixed(2),
      uncachedVsNaive: +(uncached.cpu / naiveRate.cpu).toFixed(1),
      calibrationOpsPerUncachedDecision: +(calib.cpu / uncached.cpu).toFixed(1),
      calibrationOpsPerCachedDecision: +(calib.cpu / cached.cpu).toFixed(2),
    },
    targets: { cached: 1_000_000, uncached: 200_000, cachedMetPerCpuSecond: cached.cpu >= 1_000_000, uncachedMetPerCpuSecond: uncached.cpu >= 200_000 },
    timingsMs: { validate: Math.round(validateMs), compile: Math.round(compileMs), lint: Math.round(lintMs) },
  };
}

export async function run(args: string[]): Promise<void> {
  const nPolicies = arg(args, 'policies', 10_000);
  const nServices = arg(args, 'services', 2_000);
  const ms = arg(args, 'ms', 1000);
  const shapes: Shape[] = args.includes('--typical') ? ['typical'] : args.includes('--heavy') ? ['heavy'] : ['typical', 'heavy'];
  const results = [];
  for (const shape of shapes) results.push(await measure(shape, nPolicies, nServices, ms));
  let sidecar: Record<string, unknown> | undefined;
  if (!args.includes('--micro')) {
    // The filters in a real sidecar process, with and without the typical 10,000-policy set.
    const rows = await runSidecar(generate(nPolicies, nServices, 'typical'), { seconds: arg(args, 'seconds', 6), rate: arg(args, 'rate', 500), rounds: arg(args, 'rounds', 2) });
    const mean = (pred: (t: string) => boolean, k: 'saturationRps' | 'cpuSecPer1k') => {
      const v = rows.filter((r) => pred(r.target)).map((r) => r[k]).filter((x): x is number => typeof x === 'number');
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    };
    const plain = (t: string) => t === 'no policies';
    const withP = (t: string) => t !== 'no policies';
    const rpsRatio = (mean(withP, 'saturationRps') ?? 0) / (mean(plain, 'saturationRps') || 1);
    const cpuA = mean(withP, 'cpuSecPer1k');
    const cpuB = mean(plain, 'cpuSecPer1k');
    const cpuOverheadPct = cpuA !== null && cpuB ? Math.round(((cpuA - cpuB) / cpuB) * 1000) / 10 : null;
    console.log('\n[sidecar] inbound sidecar process, plaintext from loopback, every request allowed and forwarded');
    console.log(printTable(['target', 'sat. req/s', 'p99 ms @rate', 'CPU-s/1k @rate', 'peak RSS MiB', 'errors'], rows.map((r) => [r.target, r.saturationRps, r.p99Ms, r.cpuSecPer1k, r.peakRssMiB, r.errors])));
    console.log(`with policies / without: throughput ${rpsRatio.toFixed(3)}, CPU per request ${cpuOverheadPct === null ? 'n/a' : `${cpuOverheadPct >= 0 ? '+' : ''}${cpuOverheadPct}%`}`);
    sidecar = { rows, throughputRatio: +rpsRatio.toFixed(3), cpuOverheadPct };
  }
  await mkdir(new URL('../../../bench/results/', import.meta.url), { recursive: true });
  await writeFile(new URL('../../../bench/results/policy.json', import.meta.url), `${JSON.stringify({ bench: 'policy', node: process.version, results, sidecar }, null, 2)}\n`);
}
