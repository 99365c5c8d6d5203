import { readFile } from 'node:fs/promises';

/**
 * CPU and memory of a child process from /proc, so the proxy under test is measured apart from
 * the load generator. Linux only; elsewhere the figures are null.
 */

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on every Linux this runs on

/** User + system CPU seconds the process has used so far (its threads included). */
export async function cpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Peak resident set size (VmHWM) in MiB. */
export async function peakRssMiB(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}
