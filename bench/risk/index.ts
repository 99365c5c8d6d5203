import { writeFileSync, mkdirSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mulberry32 } from '../../src/scoring/index.js';
import { RiskEngine, parseRecordLine, resolveEngineConfig, type RequestRecord } from '../../src/manager/risk/index.js';

/**
 * bench/risk: records/s ingested and scored on one core (target ≥ 100,000), and heap per 10,000
 * tracked subjects. Variants run side by side in one process so their ratios are meaningful on a
 * shared machine: the full engine, the engine with the statistical detectors switched off, and
 * the full engine fed JSON lines (parse + validate included).
 */

const T0 = Date.UTC(2026, 10, 21, 10);

function synth(n: number, services: number, principals: number, seed = 1): RequestRecord[] {
  const rng = mulberry32(seed);
  const out: RequestRecord[] = [];
  // ~2,000 records per second of trace time: many windows, so closing/scoring is part of the cost.
  for (let i = 0; i < n; i++) {
    const s = Math.floor(rng() * services);
    const d = (s + 1 + Math.floor(rng() * 3)) % services;
    out.push({
      kind: 'request',
      ts: T0 + Math.floor(i / 2),
      source: { service: `svc-${s}`, instance: `svc-${s}-${i % 3}` },
      destination: { service: `svc-${d}`, instance: `svc-${d}-${i % 3}`, version: 'v1' },
      principal: `user-${Math.floor(((i / 3) | 0) * 7919 % principals)}`,
      method: 'GET',
      path: `/api/${i % 7}`,
      status: rng() < 0.01 ? 503 : 200,
      durationMs: 2 + rng() * 20,
      bytesOut: 500 + Math.floor(rng() * 500),
      // A page view fans out: three records share one request id.
      requestId: `r${(i / 3) | 0}`,
    });
  }
  return out;
}

function feed(engine: RiskEngine, recs: RequestRecord[]): void {
  let next = -Infinity;
  for (const r of recs) {
    engine.ingest(r);
    if (r.ts >= next) {
      engine.advance(r.ts);
      next = r.ts + 1000;
    }
  }
  engine.advance(recs.at(-1)!.ts + 5000);
}

/** Wall and CPU seconds of one run; CPU time is what "per core" means on a shared machine. */
function time(fn: () => void): { wall: number; cpu: number } {
  const c = process.cpuUsage();
  const t = process.hrtime.bigint();
  fn();
  const wall = Number(process.hrtime.bigint() - t) / 1e9;
  const d = process.cpuUsage(c);
  return { wall, cpu: (d.user + d.system) / 1e6 };
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  const g = runInNewContext('gc') as () => void;
  g();
  g();
}

export async function run(args: string[]): Promise<void> {
  const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 400_000);
  const recs = synth(n, 60, 100_000);
  const lines = recs.map((r) => JSON.stringify({ ...r, ts: new Date(r.ts).toISOString() }));
  const full = resolveEngineConfig({});
  const lean = resolveEngineConfig({ detectors: { controlChart: { enabled: false }, changePoint: { enabled: false }, multivariate: { enabled: false } } });

  // Warm the JIT once on a slice, then measure each variant twice, keeping the best.
  feed(new RiskEngine(full), recs.slice(0, 50_000));
  const variants: Array<{ name: string; run: () => void }> = [
    { name: 'engine (all detectors)', run: () => feed(new RiskEngine(full), recs) },
    { name: 'engine (baseline + rules only)', run: () => feed(new RiskEngine(lean), recs) },
    {
      name: 'engine from JSON lines (parse + validate)',
      run: () => {
        const e = new RiskEngine(full);
        let next = -Infinity;
        for (const l of lines) {
          const r = parseRecordLine(l);
          e.ingest(r);
          if (r.ts >= next) {
            e.advance(r.ts);
            next = r.ts + 1000;
          }
        }
      },
    },
  ];
  // Interleaved rounds, best of each: other processes on the machine slow rounds at random.
  const rounds = 5;
  const best = variants.map(() => ({ wall: Infinity, cpu: Infinity }));
  for (let k = 0; k < rounds; k++) {
    variants.forEach((v, i) => {
      const t = time(v.run);
      best[i]!.wall = Math.min(best[i]!.wall, t.wall);
      best[i]!.cpu = Math.min(best[i]!.cpu, t.cpu);
    });
  }
  const rows = variants.map((v, i) => ({
    variant: v.name,
    seconds: Math.round(best[i]!.wall * 1000) / 1000,
    recordsPerSecond: Math.round(n / best[i]!.wall),
    recordsPerCpuSecond: Math.round(n / best[i]!.cpu),
    ratio: 0,
  }));
  for (const r of rows) r.ratio = Math.round((r.recordsPerSecond / rows[0]!.recordsPerSecond) * 100) / 100;

  // Memory per 10,000 tracked subjects: heap of an engine tracking ~10k and ~20k subjects, after
  // warm-up, minus an empty engine. Subjects here are instances + edges + services.
  const mem = (subjects: number) => {
    const services = Math.max(10, Math.floor(subjects / 10));
    const rng = mulberry32(3);
    const recsM: RequestRecord[] = [];
    // Each service gets 3 instances and ~3 callers → ≈ 1 + 3 + 3… subjects per service; count below.
    for (let w = 0; w < 25; w++) {
      for (let s = 0; s < services; s++) {
        for (let k = 0; k < 3; k++) {
          const src = (s + k + 1) % services;
          recsM.push({ kind: 'request', ts: T0 + w * 10_000 + Math.floor(rng() * 9000), source: { service: `s${src}` }, destination: { service: `s${s}`, instance: `s${s}-${k}` }, method: 'GET', path: '/', status: 200, durationMs: 3, bytesOut: 100 });
        }
      }
    }
    recsM.sort((a, b) => a.ts - b.ts);
    gc();
    const before = process.memoryUsage().heapUsed;
    const e = new RiskEngine(full);
    feed(e, recsM);
    recsM.length = 0;
    gc();
    const after = process.memoryUsage().heapUsed;
    const tracked = e.scores().filter((x) => x.subject.kind !== 'principal').length;
    return { tracked, bytes: after - before, keep: e };
  };
  const m1 = mem(10_000 / 0.7);
  const m2 = mem(20_000 / 0.7);
  const perSubject = (m2.bytes - m1.bytes) / (m2.tracked - m1.tracked);
  const per10k = Math.round((perSubject * 10_000) / 1024 / 1024 * 10) / 10;
  void m1.keep;
  void m2.keep;

  console.log(`bench/risk: ${n} request records, 60 services, 100,000 principals, 3 records per request id, 10 s windows`);
  console.log('');
  console.log(`best of ${rounds} interleaved rounds`);
  console.log('variant'.padEnd(44) + 'seconds'.padStart(9) + 'records/s'.padStart(12) + 'rec/CPU-s'.padStart(12) + 'ratio'.padStart(8));
  for (const r of rows) console.log(r.variant.padEnd(44) + String(r.seconds).padStart(9) + String(r.recordsPerSecond).padStart(12) + String(r.recordsPerCpuSecond).padStart(12) + String(r.ratio).padStart(8));
  console.log('');
  console.log(`memory: ${m1.tracked} subjects → ${(m1.bytes / 1024 / 1024).toFixed(1)} MiB, ${m2.tracked} subjects → ${(m2.bytes / 1024 / 1024).toFixed(1)} MiB; ≈ ${per10k} MiB per 10,000 tracked subjects (${Math.round(perSubject)} B each)`);
  console.log(`target ≥ 100,000 records/s per core (full engine, records per CPU-second): ${rows[0]!.recordsPerCpuSecond >= 100_000 ? 'met' : 'NOT met'}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/risk.json',
    JSON.stringify({ records: n, rounds, throughput: rows, memory: { small: { subjects: m1.tracked, bytes: m1.bytes }, large: { subjects: m2.tracked, bytes: m2.bytes }, mibPer10kSubjects: per10k, bytesPerSubject: Math.round(perSubject) }, node: process.version }, null, 2) + '\n',
  );
}
