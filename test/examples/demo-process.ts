// `etz demo` as a child process for the tests that stop or kill it: its output line by line,
// waiting for a line, its child processes (from /proc) and whether pids and ports are gone.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export class DemoProcess {
  readonly child: ChildProcess;
  out = '';
  err = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();

  constructor(args: string[], opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}) {
    this.child = spawn(process.execPath, [CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.out += d;
      for (const w of this.waiters) w();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => (this.err += d));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      for (const w of this.waiters) w();
      resolve({ code, signal });
    }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves with the first match of `re` in the output; rejects on timeout or exit first. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(this.out);
        if (m) return done(undefined, m);
        if (this.child.exitCode !== null || this.child.signalCode !== null) done(new Error(`demo exited before ${re}:\n${this.out}\n${this.err}`));
      };
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${re}:\n${this.out}\n${this.err}`)), timeoutMs);
      const done = (e?: Error, m?: RegExpExecArray): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (e) reject(e);
        else resolve(m!);
      };
      this.waiters.add(check);
      check();
    });
  }

  /**
   * Stop it whatever state the test left it in (for `after`). A demo killed outright cannot remove
   * its temporary state directory (the one holding the admin token it printed): remove it here.
   */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    const { signal } = await this.exited;
    const dir = /admin token in (\S+)\/manager\/admin-token/.exec(this.out)?.[1];
    if (signal === 'SIGKILL' && dir) await rm(dir, { recursive: true, force: true });
  }
}

/** Pids whose parent is `ppid`, read from /proc. */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Whether a pid is still a running process (a zombie awaiting its reaper counts as gone). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Poll until `cond` holds or `timeoutMs` passes; returns whether it held. */
export async function eventually(cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether nothing accepts connections on 127.0.0.1:port any more. */
export function refused(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}
