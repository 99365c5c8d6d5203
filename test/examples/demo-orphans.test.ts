// `etz demo` killed outright (SIGKILL: no handler, no cleanup of its own can run) must not leave
// orphans: every process it started notices the closed IPC channel and stops, releasing its ports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { childrenOf, DemoProcess, eventually, refused, running } from './demo-process.js';

/** Every loopback port the demo printed: manager, apps, sidecars' inbound, gateway, dashboard. */
function portsIn(out: string): number[] {
  return [...new Set([...out.matchAll(/(?:127\.0\.0\.1:|inbound :|-v\d :)(\d{2,5})/g)].map((m) => Number(m[1])))];
}

test('SIGKILL of etz demo: within seconds no process it started remains and no port it printed is bound', { timeout: 90_000 }, async (t) => {
  const demo = new DemoProcess(['--no-attack', '--speed', '10', '--dashboard-port', '0']);
  t.after(() => demo.kill());
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
});
