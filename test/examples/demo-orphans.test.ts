// `etz demo` killed outright (SIGKILL: no handler, no cleanup of its own can run) must not leave
// orphans: every process it started notices the closed IPC channel and stops, releasing its ports;
// the temporary directory it could not remove is removed by the next run, and only directories
// of runs no longer alive are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { currentOwner } from '../../examples/bookinfo/run-owner.js';
import { childrenOf, DemoProcess, eventually, refused, running } from './demo-process.js';

/** Every loopback port the demo printed: manager, apps, sidecars' inbound, gateway, dashboard. */
function portsIn(out: string): number[] {
  return [...new Set([...out.matchAll(/(?:127\.0\.0\.1:|inbound :|-v\d :)(\d{2,5})/g)].map((m) => Number(m[1])))];
}

/** The run's temporary directory, from the admin token path it prints. */
async function stateDir(demo: DemoProcess): Promise<string> {
  return (await demo.waitFor(/admin token in (\S+)\/manager\/admin-token/, 60_000))[1]!;
}

test('SIGKILL of etz demo: within seconds no process it started remains and no port it printed is bound; the next run removes its temporary directory', { timeout: 120_000 }, async (t) => {
  // The runs' TMPDIR is the test's own, so what they leave and remove is visible and contained.
  const tmp = await mkdtemp(join(tmpdir(), 'etz-orphans-'));
  const env = { ...process.env, TMPDIR: tmp };
  const demo = new DemoProcess(['--no-attack', '--speed', '10', '--dashboard-port', '0'], { env });
  let next: DemoProcess | undefined;
  t.after(async () => {
    await demo.kill();
    await next?.kill();
    await rm(tmp, { recursive: true, force: true });
  });
  const dir1 = await stateDir(demo);
  assert.equal(dirname(dir1), tmp);
  assert.match(basename(dir1), new RegExp(`^etz-demo-${demo.pid}-\\d+-`), 'the directory names the process that owns it');
  await demo.waitFor(/normal users browse/, 60_000);
  const children = childrenOf(demo.pid);
  // The zone manager, the apps process, six sidecars and the gateway.
  assert.ok(children.length >= 9, `children of the demo: ${children.join(', ')}\n${demo.out}`);
  const ports = portsIn(demo.out);
  assert.ok(ports.length >= 14, `ports printed: ${ports.join(', ')}`);
  for (const p of ports.slice(0, 3)) assert.equal(await refused(p), false, `port ${p} is served while the demo runs`);

  demo.child.kill('SIGKILL');
  assert.equal((await demo.exited).signal, 'SIGKILL');
  const gone = await eventually(() => children.every((pid) => !running(pid)), 20_000);
  assert.ok(gone, `still running after the demo was killed: ${children.filter(running).join(', ')}`);
  const bound: number[] = [];
  for (const p of ports) if (!(await refused(p))) bound.push(p);
  assert.deepEqual(bound, [], 'no port stays bound');

  // What the killed run could not remove, beside a live run's directory (this test process), one
  // whose pid now belongs to another process (this one, started later), and directories of other
  // shapes: only the dead runs' go.
  assert.ok(existsSync(join(dir1, 'manager', 'admin-token')), 'the killed run left its directory');
  const me = await currentOwner();
  const live = join(tmp, `etz-demo-${me.pid}-${me.start}-Live01`);
  const reused = join(tmp, `etz-demo-${me.pid}-1-Reuse1`);
  const other = join(tmp, 'etz-demo-path-Other1');
  for (const d of [live, reused, other]) await mkdir(d);
  next = new DemoProcess(['--no-attack', '--speed', '10', '--dashboard-port', '0'], { env });
  const dir2 = await stateDir(next);
  assert.match(next.out, /removed the temporary directories of 2 earlier demo runs/);
  assert.equal(existsSync(dir1), false, "the killed run's directory is removed");
  assert.equal(existsSync(reused), false, 'a pid reused by another process does not keep it');
  assert.deepEqual((await readdir(tmp)).sort(), [basename(live), basename(dir2), basename(other)].sort());
});
