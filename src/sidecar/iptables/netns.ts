// Linux network namespaces as pods: the environment the interception rules are written for.
// Used by `etz demo --iptables` (one namespace per workload) and by the namespace tests. Every
// operation is the plain `ip` command a user would type, so what the demo does can be repeated
// by hand.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command; never rejects on a non-zero exit (the caller decides what a failure means). */
export function sh(argv: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: opts.timeoutMs ?? 20_000, env: opts.env ?? process.env, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 127) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === 127 ? err.message : '') });
      });
  });
}

/** Run a command that must succeed; the error quotes the command and its stderr. */
export async function must(argv: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await sh(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Why namespaces cannot be used here (not Linux, not root, a tool missing), or false when they
 * can. Cheap and synchronous: it runs once, before anything is created.
 */
export function netnsUnavailable(tools: readonly string[] = ['ip', 'iptables', 'iptables-save', 'iptables-restore']): string | false {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'needs root (ip netns, iptables)';
  for (const tool of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return false;
}

/** A named network namespace (`ip netns`); `lo` is up once created. */
export class Netns {
  private constructor(readonly name: string) {}

  /** A new namespace named `prefix` + pid + random hex, unique per process and call. */
  static create(prefix: string): Promise<Netns> {
    return Netns.add(`${prefix}${process.pid}${randomBytes(3).toString('hex')}`);
  }

  /** A new namespace with exactly this name. */
  static async add(name: string): Promise<Netns> {
    await must(['ip', 'netns', 'add', name]);
    const ns = new Netns(name);
    await ns.must(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** argv that runs `argv` inside the namespace (`ip netns exec` execs it: same pid, same fds). */
  wrap(argv: string[]): string[] {
    return ['ip', 'netns', 'exec', this.name, ...argv];
  }

  exec(argv: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
    return sh(this.wrap(argv), opts);
  }

  async must(argv: string[]): Promise<string> {
    const r = await this.exec(argv);
    if (r.code !== 0) throw new Error(`[${this.name}] ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async del(): Promise<void> {
    await deleteNetns(this.name);
  }
}

/** Names of the existing named namespaces. */
export async function listNetns(): Promise<string[]> {
  const r = await sh(['ip', 'netns', 'list']);
  return r.code === 0 ? r.stdout.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean) : [];
}

/**
 * Kill what still runs inside a namespace, then delete it. A process left inside would keep the
 * namespace (and its veth) alive after `ip netns del` removed its name.
 */
export async function deleteNetns(name: string): Promise<void> {
  const pids = await sh(['ip', 'netns', 'pids', name]);
  for (const pid of pids.stdout.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 1)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await sh(['ip', 'netns', 'del', name]);
}
