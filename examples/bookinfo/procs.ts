import { spawn, type ChildProcess } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * The demo's processes: how each is started (its own process group, watched through an IPC
 * channel so that it stops when the demo dies), how the demo waits for what it prints or writes,
 * how it stops them, and the readiness probe through the gateway.
 */

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
// Preloaded into every process the demo starts: they stop when the demo dies (parent-watch.ts).
export const PARENT_WATCH = new URL('./parent-watch.js', import.meta.url).href;

export interface Proc {
  name: string;
  child: ChildProcess;
  stderr: string;
}

/** How a process is launched: a command prefix (`ip netns exec NAME`) and the gid to run as. */
export interface Launch {
  prefix?: string[];
  gid?: number;
}

/** Start a Node program with an IPC channel its PARENT_WATCH preload watches. */
export function spawnWatched(argv: string[], stdio: Array<'ignore' | 'pipe' | 'inherit'>, launch: Launch = {}, env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const full = [...(launch.prefix ?? []), process.execPath, '--import', PARENT_WATCH, ...argv];
  // Its own process group: Ctrl-C in a terminal signals only the demo, which then stops traffic
  // before the mesh, so the summary never counts the mesh's shutdown as failed pages. A demo that
  // dies outright still takes every child with it (parent-watch.ts).
  return spawn(full[0]!, full.slice(1), { stdio: [...stdio, 'ipc'], env, detached: true, ...(launch.gid === undefined ? {} : { gid: launch.gid }) });
}

export function spawnCli(name: string, args: string[], onLine?: (line: string) => void, launch?: Launch): Proc {
  const child = spawnWatched([CLI, ...args], ['ignore', 'ignore', 'pipe'], launch, { ...process.env, ETZ_LOG_LEVEL: process.env.ETZ_LOG_LEVEL ?? 'warn' });
  const p: Proc = { name, child, stderr: '' };
  let buf = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    // Keep a bounded tail for error messages.
    p.stderr = (p.stderr + d).slice(-8192);
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine?.(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  return p;
}

export function waitFor<T>(p: Proc, what: string, pick: (line: string) => T | undefined, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`${p.name}: timed out waiting for ${what}\n${p.stderr}`)), timeoutMs);
    const onData = (d: string): void => {
      for (const line of d.split('\n')) {
        const v = pick(line);
        if (v !== undefined) return done(undefined, v);
      }
    };
    const onExit = (code: number | null): void => done(new Error(`${p.name} exited (${code}) before ${what}:\n${p.stderr}`));
    function done(err?: Error, v?: T): void {
      clearTimeout(timer);
      p.child.stderr!.off('data', onData);
      p.child.off('exit', onExit);
      if (err) reject(err);
      else resolve(v as T);
    }
    p.child.stderr!.on('data', onData);
    p.child.once('exit', onExit);
  });
}

export async function waitFile(file: string, timeoutMs: number, proc: Proc): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await access(file);
      return await readFile(file, 'utf8');
    } catch {
      if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}):\n${proc.stderr}`);
      if (Date.now() > end) throw new Error(`${proc.name}: ${file} did not appear`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export function stopProc(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Milliseconds until GET /productpage through the gateway returns 200; throws after `timeoutMs`. */
export async function firstPage(gatewayUrl: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < timeoutMs) {
    const status = await new Promise<number | string>((resolve) => {
      const req = httpRequest(`${gatewayUrl}/productpage`, { headers: { host: 'productpage' }, timeout: 2000 }, (res) => {
        res.resume().on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => resolve(e.message));
      req.end();
    });
    if (status === 200) return Date.now() - t0;
    last = String(status);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no page came through the mesh within ${timeoutMs / 1000} s (last answer: ${last})`);
}
