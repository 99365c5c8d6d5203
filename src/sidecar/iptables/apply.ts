import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { EtzError } from '../../core/errors.js';
import {
  buildRules,
  cleanupScript,
  installScript,
  NO_RULES,
  parseSave,
  revertScript,
  type ExistingRules,
  type Family,
  type InterceptOptions,
} from './rules.js';

/**
 * Applies rule plans to the real iptables/ip6tables of the current network namespace: read what
 * is there with `<iptables>-save -t nat`, then one `<iptables>-restore --noflush` transaction per
 * family. A second run replaces the first in one step (no bypass window); a failure changes
 * nothing in that family and takes the other family's new rules out again.
 */

export interface Binaries {
  ipv4: string;
  ipv6: string;
}

export const DEFAULT_BINARIES: Readonly<Binaries> = Object.freeze({ ipv4: 'iptables', ipv6: 'ip6tables' });

/** 'auto': IPv6 rules only when the namespace has a global IPv6 address. */
export type Ipv6Mode = 'auto' | 'on' | 'off';

// `iptables` → `iptables-save` / `iptables-restore`, also for a path (/usr/sbin/iptables-save).
const saveOf = (binary: string) => `${binary}-save`;
const restoreOf = (binary: string) => `${binary}-restore`;
const RESTORE_ARGS = ['--noflush', '-w'];

const PERMISSION = /permission denied|you must be root|operation not permitted/i;

function exec(binary: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(binary, args, { timeout: 30_000, env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(String(stdout));
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        return reject(new EtzError('ETZ_ERR_IPTABLES_MISSING', `${binary} not found: install iptables (Debian: apt-get install iptables) or put it on PATH`));
      }
      const text = String(stderr).trim();
      const last = text.split('\n').pop() || err.message;
      const cmd = [binary, ...args].join(' ');
      if (code === 'EACCES' || PERMISSION.test(text)) {
        return reject(new EtzError('ETZ_ERR_IPTABLES_PERMISSION',
          `not permitted to change iptables rules (needs root or CAP_NET_ADMIN in the pod's network namespace): ${cmd}: ${last}`));
      }
      reject(new EtzError('ETZ_ERR_IPTABLES_FAILED', `${cmd} failed: ${last}`, { details: { input } }));
    });
    // EPIPE when the binary exits before reading; its exit status tells the story.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

/** etz's rules currently in the nat table of one family. */
export async function readExisting(binary: string): Promise<ExistingRules> {
  return parseSave(await exec(saveOf(binary), ['-t', 'nat']));
}

async function restore(binary: string, script: string): Promise<void> {
  await exec(restoreOf(binary), RESTORE_ARGS, script);
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
  /** Rules installed, or jumps+chains removed, over all families. */
  count: number;
}

/** Install interception rules for the given families, replacing any earlier etz rules. */
export async function installInterception(
  opts: InterceptOptions,
  families: Family[],
  binaries: Binaries = DEFAULT_BINARIES,
): Promise<InterceptResult> {
  const done: Array<{ binary: string; before: ExistingRules }> = [];
  let count = 0;
  for (const family of families) {
    const binary = binaries[family];
    const plan = buildRules(opts, family);
    try {
      const before = await readExisting(binary);
      await restore(binary, installScript(plan, before));
      done.push({ binary, before });
      count += plan.rules.length;
    } catch (err) {
      // Keep the families consistent: put back what the earlier families had before this run.
      for (const d of done) await rollback(d.binary, d.before).catch(() => undefined);
      throw err;
    }
  }
  return { families, count };
}

/** Undo an install in one family: put back the etz rules that were there before it. */
async function rollback(binary: string, before: ExistingRules): Promise<void> {
  const script = revertScript(before, await readExisting(binary));
  if (script) await restore(binary, script);
}

/** Remove etz's interception rules; harmless when nothing is installed. */
export async function removeInterception(families: Family[], binaries: Binaries = DEFAULT_BINARIES): Promise<InterceptResult> {
  let count = 0;
  for (const family of families) {
    const binary = binaries[family];
    const existing = await readExisting(binary);
    const script = cleanupScript(existing);
    if (script) await restore(binary, script);
    count += existing.jumps.length + existing.chains.length;
  }
  return { families, count };
}

/**
 * What an install (or cleanup) would feed to iptables-restore, per family. The current rules are
 * read when permitted, so the output is exact; otherwise it assumes none are installed.
 */
export async function describePlan(opts: InterceptOptions, families: Family[], cleanup: boolean, binaries: Binaries = DEFAULT_BINARIES): Promise<string[]> {
  const lines: string[] = [];
  for (const family of families) {
    const binary = binaries[family];
    let existing: ExistingRules = NO_RULES;
    let note = '';
    try {
      existing = await readExisting(binary);
    } catch (err) {
      note = ` (current rules unreadable: ${(err as EtzError).code ?? 'error'}; assuming none)`;
    }
    const script = cleanup ? cleanupScript(existing) : installScript(buildRules(opts, family), existing);
    if (script === null) {
      lines.push(`# ${family}: no etz rules installed, nothing to remove${note}`);
      continue;
    }
    lines.push(`# ${family}${note}:`, `${restoreOf(binary)} ${RESTORE_ARGS.join(' ')} <<'EOF'`, ...script.trimEnd().split('\n'), 'EOF');
  }
  return lines;
}
