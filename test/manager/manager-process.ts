import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

/** The compiled CLI, run as real child processes by the tests that need a manager process. */
export const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');

/**
 * `etz manager` as a real child process on ephemeral ports (API and dashboard) in `dataDir`;
 * resolves with its URL once it says it listens.
 */
export function spawnManager(dataDir: string, port = 0): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, 'manager', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ETZ_LOG_LEVEL: 'warn', ETZ_MANAGER_DASHBOARD__PORT: '0' },
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no manager URL within 20 s: ${log}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      const url = /listening on (https:\/\/\S+)/.exec(log)?.[1];
      if (url) {
        clearTimeout(timer);
        resolve({ child, url, stderr: () => log });
      }
    });
    child.once('exit', (code) => reject(new Error(`manager exited with ${code}: ${log}`)));
  });
}

/** One `etz …` command to its end: exit code and output. */
export function etz(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}
