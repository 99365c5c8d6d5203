import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

/**
 * Child-process plumbing shared by the benchmarks: each process under test runs apart from the
 * load generator, so its CPU and memory can be read from /proc.
 */

/** The first line a child prints on stdout, as a port number (helpers print their port). */
export function readPort(proc: ChildProcess, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('child did not report its port')), timeoutMs);
    proc.stdout!.on('data', (c: Buffer) => {
      out += c;
      const m = /^(\d+)\n/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => reject(new Error(`child exited (${code}) before listening`)));
  });
}

/** Poll until something accepts on 127.0.0.1:port (a loaded machine may take seconds). */
export async function waitListening(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** A port that was free a moment ago (for tools that cannot report an ephemeral one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the child is gone. */
export function stop(proc: ChildProcess | null | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}
