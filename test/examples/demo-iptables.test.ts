// `etz demo --iptables` as a user runs it, on real network namespaces: a first run killed outright
// leaves no process (its namespaces stay until the next run), the next run removes them, its apps
// reach each other through transparent interception (iptables REDIRECT counters and the sidecars'
// own request metrics in the pods), Ctrl-C ends it with exit 0 and nothing of it remains: no
// namespace, veth, bridge, /etc/netns entry, run record or process. Needs root with ip and
// iptables (as CI runs); skipped, saying why, otherwise.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listNetns, netnsUnavailable, sh } from '../../src/sidecar/iptables/netns.js';
import { removeStaleRuns } from '../../examples/bookinfo/netns.js';
import { childrenOf, DemoProcess, eventually, running } from './demo-process.js';

const skip = netnsUnavailable(['ip', 'iptables', 'iptables-save', 'iptables-restore', 'curl']);

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ARGS = ['--iptables', '--speed', '10', '--dashboard-port', '0'];

async function runLeftovers(id: string): Promise<string[]> {
  const left: string[] = (await listNetns()).filter((n) => n.startsWith(`etzd-${id}-`));
  const links = await sh(['ip', '-o', 'link', 'show']);
  for (const m of links.stdout.matchAll(/^\d+: ([^:@\s]+)/gm)) if (m[1]!.startsWith(`etzd${id}`)) left.push(`link ${m[1]}`);
  if (existsSync(`/etc/netns/etzd-${id}-productpage-v1`)) left.push('/etc/netns entry');
  if (existsSync(`/run/etz-demo/${id}.json`)) left.push('run record');
  const fwd = await sh(['iptables', '-S', 'FORWARD']);
  if (fwd.stdout.includes(`etzd-${id}`)) left.push('FORWARD rule');
  return left;
}

/** Pids of the processes running in the run's pods. */
async function podPids(id: string): Promise<number[]> {
  const pids: number[] = [];
  for (const ns of (await listNetns()).filter((n) => n.startsWith(`etzd-${id}-`))) {
    pids.push(...(await sh(['ip', 'netns', 'pids', ns])).stdout.split('\n').filter(Boolean).map(Number));
  }
  return pids;
}

/** Packets counted by one rule chain's REDIRECT target in a pod's nat table. */
async function redirected(ns: string, chain: string): Promise<number> {
  const r = await sh(['ip', 'netns', 'exec', ns, 'iptables', '-t', 'nat', '-L', chain, '-v', '-x', '-n']);
  assert.equal(r.code, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => /\bREDIRECT\b/.test(l));
  return line ? Number(line.trim().split(/\s+/)[0]) : 0;
}

/** Sum of etz_requests_total series of a pod's sidecar (its admin port, inside the pod) matching all labels. */
async function requests(ns: string, labels: Record<string, string>): Promise<number> {
  const r = await sh(['ip', 'netns', 'exec', ns, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/metrics']);
  if (r.code !== 0) return 0;
  let total = 0;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('etz_requests_total{') && Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.split(' ').pop());
  }
  return total;
}

describe('etz demo --iptables', { skip }, () => {
  test('a killed run leaves no process, the next run removes its pods, intercepts the apps\' calls, and Ctrl-C removes everything', { timeout: 150_000 }, async (t) => {
    // ---- run 1: killed outright once its pods run ----
    const first = new DemoProcess([...ARGS, '--no-attack']);
    let demo: DemoProcess | undefined;
    t.after(async () => {
      await first.kill();
      await demo?.kill();
      // Whatever a failed run left behind (only runs whose process is gone are touched).
      await removeStaleRuns();
    });
    const id1 = (await first.waitFor(/namespaces etzd-([0-9a-f]{4})-\*/, 30_000))[1]!;
    await first.waitFor(/ingress gateway enrolled/, 60_000);
    const procs1 = [...childrenOf(first.pid), ...(await podPids(id1))];
    assert.ok(procs1.length >= 15, `the demo's processes: ${procs1.join(', ')}`);
    first.child.kill('SIGKILL');
    await first.exited;
    assert.ok(await eventually(() => procs1.every((p) => !running(p)), 20_000), `still running: ${procs1.filter(running).join(', ')}`);
    assert.ok((await runLeftovers(id1)).length > 0, 'a killed run cannot remove its namespaces itself');

    // ---- run 2: removes run 1's leftovers, runs the mesh in pods, stops on Ctrl-C ----
    demo = new DemoProcess(ARGS);
    await demo.waitFor(new RegExp(`removed what earlier demo runs left behind \\(run [0-9a-f, ]*${id1}`), 30_000);
    assert.deepEqual(await runLeftovers(id1), [], 'the next run removed everything of the killed one');
    const id = (await demo.waitFor(/namespaces etzd-([0-9a-f]{4})-\* on bridge etzd[0-9a-f]{4}br \(10\.232\.\d+\.0\/24\)/, 30_000))[1]!;
    assert.notEqual(id, id1);
    // The manager listens on the bridge address, where the sidecars in the pods reach it.
    await demo.waitFor(/zone manager up at https:\/\/10\.232\.\d+\.1:\d+/, 30_000);
    await demo.waitFor(/normal users browse/, 60_000);
    assert.equal((demo.out.match(/sidecar \S+ enrolled as spiffe:\/\/etz\.local\/ns\/default\/sa\/\S+, inbound :15006 \(mTLS STRICT\)/g) ?? []).length, 6, demo.out);

    const pp = `etzd-${id}-productpage-v1`;
    const flowing = await eventually(async () =>
      (await redirected(pp, 'ETZ_REDIRECT')) > 0 &&
      (await redirected(`etzd-${id}-details-v1`, 'ETZ_IN_REDIRECT')) > 0 &&
      (await requests(pp, { reporter: 'source', destination_workload: 'reviews', response_code: '200' })) > 0 &&
      (await requests(pp, { reporter: 'source', destination_workload: 'details', response_code: '200' })) > 0, 30_000, 1000);
    assert.ok(flowing, `productpage's calls to http://reviews:9080 and http://details:9080 were redirected to its sidecar's outbound listener, and the gateway's into details' inbound listener\n${demo.out}`);
    // reviews v2/v3 reach ratings the same way: through their own pod's outbound REDIRECT.
    assert.ok(await eventually(async () => (await redirected(`etzd-${id}-reviews-v2`, 'ETZ_REDIRECT')) > 0, 20_000, 1000), 'reviews-v2 called ratings through interception');
    // Enough pages for the served share below to mean something (a handful of requests would
    // make one slow page a 20% drop).
    assert.ok(await eventually(async () => (await requests(pp, { reporter: 'destination', response_code: '200' })) >= 20, 30_000, 1000), 'productpage served 20 pages');
    const procs = [...childrenOf(demo.pid), ...(await podPids(id))];

    demo.child.kill('SIGINT');
    const exit = await demo.exited;
    assert.equal(exit.code, 0, `${demo.out}\n${demo.err}`);
    const served = /normal users: requests \(ok\)\s+(\d+) \((\d+\.\d)%\)/.exec(demo.out);
    // The end of the output (progress and summary) says why, where the whole would be cut off.
    assert.ok(served && Number(served[1]) > 0 && Number(served[2]) > 90, `users were served through the pods:\n${demo.out.slice(-3000)}\n${demo.err.slice(-2000)}`);
    t.diagnostic(`normal users: ${served[1]} requests, ${served[2]}% ok`);
    assert.match(demo.out, /etz demo: stopped; every process ended/);
    assert.match(demo.out, new RegExp(`removed namespaces etzd-${id}-\\*`));
    assert.deepEqual(await runLeftovers(id), []);
    assert.deepEqual(procs.filter(running), [], 'no process of the run remains');
  });
});

test('etz demo --iptables is refused with exit 2 and the reason: not root, or ip/iptables missing', { timeout: 30_000 }, async (t) => {
  // iptables missing: a PATH with only a shell and ip on it.
  const bin = await mkdtemp(join(tmpdir(), 'etz-demo-path-'));
  t.after(() => rm(bin, { recursive: true, force: true }));
  for (const tool of ['sh', 'ip']) {
    const where = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (where) await symlink(where, join(bin, tool));
  }
  const noTools = new DemoProcess(['--iptables'], { env: { ...process.env, PATH: bin } });
  assert.equal((await noTools.exited).code, 2, noTools.err);
  assert.match(noTools.err, /^etz: demo --iptables (iptables is not installed|needs root|network namespaces need Linux)/);
  assert.doesNotMatch(noTools.out, /zone manager up/, 'nothing was started');

  // Not root: as nobody, when nobody can read this checkout at all.
  if (process.getuid?.() !== 0) {
    const demo = new DemoProcess(['--iptables']);
    assert.equal((await demo.exited).code, 2);
    assert.match(demo.err, /^etz: demo --iptables (needs root|network namespaces need Linux)/);
    return;
  }
  if (spawnSync(process.execPath, [CLI, 'version'], { uid: 65534, gid: 65534 }).status !== 0) {
    t.diagnostic('the checkout is not readable by uid 65534: the not-root refusal is not exercised here');
    return;
  }
  const asNobody = new DemoProcess(['--iptables'], { uid: 65534, gid: 65534, env: { ...process.env, HOME: tmpdir() } });
  assert.equal((await asNobody.exited).code, 2, asNobody.err);
  assert.match(asNobody.err, /^etz: demo --iptables needs root \(ip netns, iptables\); run it as root, or without --iptables/);
});
