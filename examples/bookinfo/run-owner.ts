// What a demo run leaves on the machine (its /run/etz-demo record, its temporary directory) names
// the process that owns it by pid and start time, so the next run can tell what a killed run left
// behind: a dead owner's things are removed, a live one's are not, and a pid reused by another
// process does not count as the owner alive.
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface Owner {
  pid: number;
  /** Start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22); '' where unknown. */
  start: string;
}

export async function processStart(pid: number): Promise<string | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export async function currentOwner(): Promise<Owner> {
  return { pid: process.pid, start: (await processStart(process.pid)) ?? '' };
}

export async function ownerAlive(o: Owner): Promise<boolean> {
  const start = await processStart(o.pid);
  if (start !== undefined || o.start !== '') return start === o.start;
  // No /proc (not Linux): the pid alone decides, so a reused pid keeps a leftover a while longer,
  // which is the safe way to be wrong.
  try {
    process.kill(o.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A new directory `<parent>/<prefix><pid>-<start>-XXXXXX`. The owner is in the name, not in a file
 * inside, so there is no moment when the directory exists without it.
 */
export async function ownedTempDir(parent: string, prefix: string): Promise<string> {
  const o = await currentOwner();
  return mkdtemp(join(parent, `${prefix}${o.pid}-${o.start}-`));
}

/**
 * Remove the directories ownedTempDir() made in `parent` with this prefix whose owner is gone;
 * only this user's (a shared /tmp holds other users' runs) and never through a symlink. Returns
 * the paths removed.
 */
export async function removeDeadOwnersDirs(parent: string, prefix: string): Promise<string[]> {
  const named = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-(\\d*)-[A-Za-z0-9]{6}$`);
  const uid = process.getuid?.();
  const removed: string[] = [];
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const m = named.exec(name);
    if (!m) continue;
    const path = join(parent, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
    if (await ownerAlive({ pid: Number(m[1]), start: m[2]! })) continue;
    await rm(path, { recursive: true, force: true }).then(() => removed.push(path), () => undefined);
  }
  return removed;
}
