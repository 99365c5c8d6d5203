import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, peakRssMiB } from '../common/proc.js';
import { freePort, stop, waitListening } from '../common/child.js';
import { fixedRate, saturate } from '../common/load.js';
import type { AuthorizationPolicy, NetworkPolicy } from '../../src/policy/types.js';

/**
 * The policy filters in a real sidecar process: the same inbound sidecar run without policies and
 * with 10,000 authorization policies plus an isolating network policy (the traffic allowed, so
 * both forward every request), one after the other, alternating rounds. Reported: saturation
 * throughput and the sidecar's CPU seconds per 1000 requests at a fixed rate, from /proc.
 */

const here = fileURLToPath(new URL('.', import.meta.url));
const ETZ_MAIN = join(here, '..', '..', 'src', 'cli', 'main.js');
const UPSTREAM = join(here, '..', 'filters', 'upstream.js');

export interface SidecarRow {
  target: string;
  saturationRps: number;
  errors: number;
  p99Ms: number | null;
  cpuSecPer1k: number | null;
  peakRssMiB: number | null;
}

function policyResources(policies: readonly AuthorizationPolicy[]): Record<string, unknown> {
  const mine: AuthorizationPolicy = {
    apiVersion: 'etz.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'reviews-from-loopback' },
    spec: { selector: { service: 'reviews' }, rules: [{ from: [{ ipBlocks: ['127.0.0.0/8', '::1'] }], to: [{ methods: ['GET'], paths: ['/reviews/*'] }] }] },
  };
  const net: NetworkPolicy = {
    apiVersion: 'etz.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'reviews-ingress' },
    spec: { target: { service: 'reviews' }, ingress: [{ from: [{ ipBlocks: ['127.0.0.0/8'] }] }] },
  };
  return { policies: [...policies, mine], networkPolicies: [net] };
}

async function startSidecar(dir: string, name: string, appPort: number, resources: Record<string, unknown>): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const file = join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      service: { name: 'reviews', version: 'v1' },
      inbound: { host: '127.0.0.1', port, appPort },
      outbound: { enabled: false },
      admin: { enabled: false },
      logging: { level: 'warn' },
      telemetry: { enabled: false },
      // Plaintext from the load generator: the policies are measured, not the TLS handshake.
      tls: { mode: 'DISABLE' },
      resources,
    }),
  );
  const proc = spawn(process.execPath, [ETZ_MAIN, 'sidecar', '-c', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  await waitListening(port, 120_000);
  return { port, proc };
}

async function measure(target: string, port: number, proc: ChildProcess, seconds: number, rate: number): Promise<SidecarRow> {
  const url = `http://127.0.0.1:${port}/reviews/1`;
  await saturate(url, 32, 2);
  const sat = await saturate(url, 32, seconds);
  const pid = proc.pid!;
  const c0 = await cpuSeconds(pid);
  const fixed = await fixedRate(url, rate, seconds, 16);
  const c1 = await cpuSeconds(pid);
  return {
    target,
    saturationRps: Math.round(sat.rps),
    errors: sat.errors + fixed.errors,
    p99Ms: fixed.p99Ms,
    cpuSecPer1k: c0 === null || c1 === null || fixed.requests === 0 ? null : Math.round(((c1 - c0) / (fixed.requests / 1000)) * 10000) / 10000,
    peakRssMiB: await peakRssMiB(pid),
  };
}

export async function runSidecar(policies: readonly AuthorizationPolicy[], opts: { seconds: number; rate: number; rounds: number }): Promise<SidecarRow[]> {
  const dir = await mkdtemp(join(tmpdir(), 'etz-bench-policy-'));
  const upstream = spawn(process.execPath, [UPSTREAM], { stdio: ['ignore', 'pipe', 'inherit'] });
  const rows: SidecarRow[] = [];
  try {
    const appPort = await new Promise<number>((resolve, reject) => {
      let out = '';
      upstream.stdout!.on('data', (c: Buffer) => {
        out += c;
        const m = /^(\d+) \d+ \d+\n/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      upstream.once('exit', () => reject(new Error('upstream exited')));
    });
    // Alternate so that drift on a shared machine hits both alike.
    for (let r = 0; r < opts.rounds; r++) {
      for (const [name, resources] of [
        ['no policies', {}],
        [`${policies.length + 1} authz + network policy`, policyResources(policies)],
      ] as const) {
        process.stderr.write(`round ${r + 1}: sidecar with ${name} …\n`);
        const s = await startSidecar(dir, `s${r}-${rows.length}`, appPort, resources);
        try {
          rows.push(await measure(name, s.port, s.proc, opts.seconds, opts.rate));
        } finally {
          await stop(s.proc);
        }
      }
    }
  } finally {
    await stop(upstream);
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
