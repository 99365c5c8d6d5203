import { spawn, spawnSync } from 'node:child_process';
import autocannon from 'autocannon';

/**
 * Load generation. Saturation uses wrk when installed (C, multi-threaded: it does not starve the
 * proxy the way a JS generator on the same cores would), else autocannon. Fixed-rate latency uses
 * autocannon's overallRate, which wrk cannot do.
 */

export interface SaturationResult {
  tool: 'wrk' | 'autocannon';
  rps: number;
  requests: number;
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface FixedRateResult {
  rps: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function parseWrkLatency(s: string | undefined): number | null {
  if (!s) return null;
  const m = /^([\d.]+)(us|ms|s)$/.exec(s.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

/** Extra request headers, and (wrk only) a Lua script that may vary them per request. */
export interface LoadExtras {
  headers?: Record<string, string>;
  wrkScript?: string;
}

export async function saturate(url: string, connections: number, seconds: number, threads = 2, extras: LoadExtras = {}): Promise<SaturationResult> {
  if (haveCommand('wrk')) {
    const extra = Object.entries(extras.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
    if (extras.wrkScript) extra.push('-s', extras.wrkScript);
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', ...extra, url], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      p.stdout.on('data', (c: Buffer) => (text += c));
      p.stderr.on('data', (c: Buffer) => (text += c));
      p.on('error', reject);
      p.on('exit', () => resolve(text));
    });
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
    const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    const errLine = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
    const errors = non2xx + (errLine ? errLine.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
    return {
      tool: 'wrk',
      rps,
      requests,
      errors,
      p50Ms: parseWrkLatency(/\s50%\s+(\S+)/.exec(out)?.[1]),
      p99Ms: parseWrkLatency(/\s99%\s+(\S+)/.exec(out)?.[1]),
    };
  }
  const r = await autocannon({ url, connections, duration: seconds, pipelining: 1, ...(extras.headers ? { headers: extras.headers } : {}) });
  return {
    tool: 'autocannon',
    rps: r.requests.average,
    requests: r.requests.total,
    errors: r.errors + r.non2xx,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
  };
}

export async function fixedRate(url: string, rate: number, seconds: number, connections = 16, headers?: Record<string, string>): Promise<FixedRateResult> {
  const r = await autocannon({ url, connections, duration: seconds, overallRate: rate, pipelining: 1, ...(headers ? { headers } : {}) });
  return {
    rps: r.requests.average,
    requests: r.requests.total,
    errors: r.errors + r.non2xx,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
  };
}
