import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { initCa, signCsr, generateKeyAndCsr, issueWorkloadCert } from '../../src/identity/index.js';
import { table, writeResults } from '../common/report.js';

/**
 * `npm run bench -- ca`: certificate issuance cost. signCsr (what the zone manager does per
 * enrolling or renewing sidecar: verify the CSR, issue) for P-256 and RSA-3072 CAs, CSR
 * generation on the sidecar side, and `openssl x509 -req` issuing the same CSR for comparison.
 */

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// CPU time (user+system of this process) per operation is reported beside wall time: on a shared
// machine wall time mostly measures the other tenants, CPU time what issuing costs the CA.
async function time(n: number, fn: () => Promise<unknown>): Promise<{ meanMs: number; cpuMs: number; p50Ms: number; p99Ms: number; perSec: number }> {
  for (let i = 0; i < Math.min(50, n); i++) await fn();
  const t: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  const total = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  t.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { meanMs: r(total / n), cpuMs: r((cpu.user + cpu.system) / 1000 / n), p50Ms: r(pct(t, 50)), p99Ms: r(pct(t, 99)), perSec: Math.round((n / total) * 1000) };
}

async function opensslSign(n: number): Promise<{ meanMs: number } | null> {
  const { spawnSync } = await import('node:child_process');
  const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  if (spawnSync('sh', ['-c', 'command -v openssl'], { stdio: 'ignore' }).status !== 0) return null;
  const dir = await mkdtemp(join(tmpdir(), 'etz-bench-ca-'));
  try {
    const ca = await initCa({ trustDomain: 'etz.local' });
    const { csrPem } = await generateKeyAndCsr('spiffe://etz.local/ns/default/sa/bench');
    await writeFile(join(dir, 'ca.pem'), ca.signingCertPem);
    await writeFile(join(dir, 'ca-key.pem'), ca.signingKeyPem);
    await writeFile(join(dir, 'req.csr'), csrPem);
    await writeFile(join(dir, 'ext.cnf'), 'subjectAltName=URI:spiffe://etz.local/ns/default/sa/bench\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n');
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      spawnSync('openssl', ['x509', '-req', '-in', 'req.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'out.pem'], { cwd: dir, stdio: 'ignore' });
    }
    return { meanMs: Math.round(((performance.now() - start) / n) * 1000) / 1000 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { n: { type: 'string', default: '1000' } } });
  const n = Number(values.n);
  const id = 'spiffe://etz.local/ns/default/sa/bench';
  const ecCa = await initCa({ trustDomain: 'etz.local' });
  const rsaCa = await initCa({ trustDomain: 'etz.local', keyType: 'rsa-3072' });
  const { csrPem } = await generateKeyAndCsr(id);
  const rows: Array<{ case: string } & Awaited<ReturnType<typeof time>>> = [];
  rows.push({ case: 'signCsr, P-256 CA, P-256 CSR', ...(await time(n, () => signCsr(ecCa, csrPem))) });
  rows.push({ case: 'signCsr, RSA-3072 CA, P-256 CSR', ...(await time(Math.max(50, n / 10), () => signCsr(rsaCa, csrPem))) });
  rows.push({ case: 'generateKeyAndCsr P-256 (sidecar side)', ...(await time(n, () => generateKeyAndCsr(id))) });
  rows.push({ case: 'issueWorkloadCert P-256 (key + cert)', ...(await time(n, () => issueWorkloadCert(ecCa, id))) });
  const ossl = await opensslSign(Math.max(20, Math.floor(n / 20)));
  const target = rows[0]!.cpuMs <= 5;
  process.stdout.write(
    `\nCertificate issuance, ${n} iterations (node ${process.version}, ${cpus().length} CPUs)\n\n` +
      table(['case', 'CPU ms', 'wall mean ms', 'p50 ms', 'p99 ms', 'per s'], rows.map((r) => [r.case, r.cpuMs, r.meanMs, r.p50Ms, r.p99Ms, r.perSec])) +
      `\n\nopenssl x509 -req (a process per certificate, for scale): ${ossl ? `${ossl.meanMs} ms` : 'openssl not installed'}` +
      `\nsignCsr P-256: ${rows[0]!.cpuMs} ms CPU per certificate (target <= 5 ms): ${target ? 'met' : 'NOT met'}; wall ${rows[0]!.meanMs} ms at load average ${loadavg()[0]!.toFixed(1)}\n`,
  );
  const file = await writeResults('ca', { benchmark: 'ca', date: new Date().toISOString(), node: process.version, cpus: cpus().length, loadAverage: loadavg()[0], n, rows, openssl: ossl, targets: { signCsrP256AtMost5ms: target } });
  process.stdout.write(`results: ${file}\n`);
}
