import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { EtzError } from '../../core/errors.js';
import { buildRules, formatRule, resolveOptions, type Family, type InterceptOptions, type Rule, type RulePlan } from './rules.js';

/**
 * Runs rule plans against the real iptables/ip6tables of the current network namespace.
 * Install is "cleanup, then setup": a second run replaces the first, never duplicates it. A
 * failure half-way removes what was added, so the pod is never left half-intercepted.
 */

export interface Binaries {
  ipv4: string;
  ipv6: string;
}

export const DEFAULT_BINARIES: Readonly<Binaries> = Object.freeze({ ipv4: 'iptables', ipv6: 'ip6tables' });

/** 'auto': IPv6 rules only when the namespace has a global IPv6 address. */
export type Ipv6Mode = 'auto' | 'on' | 'off';

interface Exec {
  code: number;
  stderr: string;
}

function run(binary: string, args: Rule): Promise<Exec> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 30_000, env: { ...process.env, LC_ALL: 'C' } }, (err, _stdout, stderr) => {
      if (!err) return resolve({ code: 0, stderr: String(stderr) });
      const e = err as NodeJS.ErrnoException & { code?: string | number };
      if (e.code === 'ENOENT') {
        return reject(new EtzError('ETZ_ERR_IPTABLES_MISSING', `${binary} not found: install iptables (Debian: apt-get install iptables) or put it on PATH`));
      }
      if (e.code === 'EACCES') {
        return reject(new EtzError('ETZ_ERR_IPTABLES_PERMISSION', `${binary} cannot be executed: permission denied`));
      }
      resolve({ code: typeof e.code === 'number' ? e.code : 1, stderr: String(stderr) });
    });
  });
}

const PERMISSION = /permission denied|you must be root|operation not permitted/i;

function failure(binary: string, rule: Rule, stderr: string): EtzError {
  const cmd = formatRule(binary, rule);
  const msg = stderr.trim().split('\n').pop() ?? '';
  if (PERMISSION.test(stderr)) {
    return new EtzError('ETZ_ERR_IPTABLES_PERMISSION',
      `not permitted to change iptables rules (needs root or CAP_NET_ADMIN in the pod's network namespace): ${cmd}: ${msg}`);
  }
  return new EtzError('ETZ_ERR_IPTABLES_FAILED', `${cmd} failed: ${msg}`);
}

/**
 * Remove etz's rules for one family. Absent rules or chains are fine; only a missing binary or
 * a permission problem is an error. Jumps are deleted until none is left, so rules duplicated
 * by some earlier tool run are cleaned up too.
 */
async function cleanupPlan(binary: string, plan: RulePlan): Promise<number> {
  let removed = 0;
  for (const rule of plan.cleanup) {
    const repeat = rule.includes('-D') ? 16 : 1;
    for (let i = 0; i < repeat; i++) {
      const r = await run(binary, rule);
      if (r.code === 0) {
        removed++;
        continue;
      }
      if (PERMISSION.test(r.stderr)) throw failure(binary, rule, r.stderr);
      break;
    }
  }
  return removed;
}

async function setupPlan(binary: string, plan: RulePlan): Promise<void> {
  await cleanupPlan(binary, plan);
  for (const rule of plan.setup) {
    const r = await run(binary, rule);
    if (r.code !== 0) {
      const err = failure(binary, rule, r.stderr);
      await cleanupPlan(binary, plan).catch(() => undefined);
      throw err;
    }
  }
}

/** Whether the current network namespace has a global-scope IPv6 address (scope 00). */
export async function hasGlobalIpv6(): Promise<boolean> {
  try {
    const text = await readFile('/proc/net/if_inet6', 'utf8');
    return text.split('\n').some((line) => line.trim().split(/\s+/)[3] === '00');
  } catch {
    return false; // IPv6 disabled in the kernel
  }
}

export async function familiesFor(mode: Ipv6Mode): Promise<Family[]> {
  if (mode === 'off') return ['ipv4'];
  if (mode === 'on') return ['ipv4', 'ipv6'];
  return (await hasGlobalIpv6()) ? ['ipv4', 'ipv6'] : ['ipv4'];
}

export interface InterceptResult {
  families: Family[];
  /** Rules installed (setup) or objects removed (cleanup), over all families. */
  count: number;
}

/** Install interception rules for the given families (replacing any earlier etz rules). */
export async function installInterception(
  opts: InterceptOptions,
  families: Family[],
  binaries: Binaries = DEFAULT_BINARIES,
): Promise<InterceptResult> {
  const done: Array<[string, RulePlan]> = [];
  let count = 0;
  for (const family of families) {
    const plan = buildRules(opts, family);
    const binary = binaries[family];
    try {
      await setupPlan(binary, plan);
    } catch (err) {
      // Keep the families consistent: if IPv6 fails, the IPv4 rules come out again too.
      for (const [b, p] of done) await cleanupPlan(b, p).catch(() => undefined);
      throw err;
    }
    done.push([binary, plan]);
    count += plan.setup.length;
  }
  return { families, count };
}

/** Remove etz's interception rules; running it when nothing is installed is harmless. */
export async function removeInterception(
  families: Family[],
  binaries: Binaries = DEFAULT_BINARIES,
  opts?: InterceptOptions,
): Promise<InterceptResult> {
  let count = 0;
  for (const family of families) {
    // Cleanup commands do not depend on the options; any valid options give the same list.
    const plan = buildRules(opts ?? resolveOptions(), family);
    count += await cleanupPlan(binaries[family], plan);
  }
  return { families, count };
}

/** The exact commands an install (or cleanup) would run, one per line. */
export function describePlan(opts: InterceptOptions, families: Family[], cleanup: boolean, binaries: Binaries = DEFAULT_BINARIES): string[] {
  const lines: string[] = [];
  for (const family of families) {
    const plan = buildRules(opts, family);
    const binary = binaries[family];
    if (cleanup) {
      lines.push(`# ${family}: remove etz rules (absent rules are skipped)`);
      lines.push(...plan.cleanup.map((r) => formatRule(binary, r)));
    } else {
      lines.push(`# ${family}: earlier etz rules are removed first (see --cleanup --dry-run), then:`);
      lines.push(...plan.setup.map((r) => formatRule(binary, r)));
    }
  }
  return lines;
}
