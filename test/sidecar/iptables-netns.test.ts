// `etz iptables` against real iptables in throw-away network namespaces: interception of
// outbound and inbound TCP (IPv4 and IPv6), original-destination recovery through the native
// addon, the proxy's own traffic not looped, exclusions, idempotence, cleanup and the errors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns, netnsSkipReason, startIn, stopAll, vethPair, type Child } from '../e2e/netns-lib.js';

const skip = netnsSkipReason();
const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const addon = join(root, 'build/Release/etz_original_dst.node');
const PROXY_UID = 1337;

const A4 = '10.213.7.1';
const B4 = '10.213.7.2';
const A6 = 'fd00:e7a0::1';
const B6 = 'fd00:e7a0::2';

interface Seen {
  name: string;
  uid: number;
  listenerPort: number;
  originalDst: { address: string; port: number } | null;
  dialed?: Seen & { error?: string };
}

describe('etz iptables in a network namespace', { skip }, () => {
  let podA: Netns;
  let podB: Netns;
  let dir = '';
  const children: Child[] = [];

  async function etz(ns: Netns, args: string[]) {
    return ns.exec([process.execPath, cli, 'iptables', ...args]);
  }
  async function curl(ns: Netns, url: string): Promise<Seen> {
    const r = await ns.exec(['curl', '-sS', '-g', '--max-time', '5', url]);
    assert.equal(r.code, 0, `curl ${url} in ${ns.name}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Seen;
  }
  const natRules = async (ns: Netns, bin = 'iptables-save') =>
    (await ns.must([bin, '-t', 'nat'])).split('\n').filter((l) => l.startsWith('-A') || l.startsWith(':ETZ'));

  before(async () => {
    assert.ok(existsSync(addon), `native addon missing at ${addon}: run npm ci / node scripts/build-native.js`);
    // The proxy stand-in runs as uid 1337, which may not be able to read the checkout (e.g. under
    // /root): give it a world-readable copy of just the files it loads.
    dir = await mkdtemp(join(tmpdir(), 'etz-ipt-'));
    await chmod(dir, 0o755);
    for (const d of ['dist/test/sidecar', 'dist/src/sidecar', 'build/Release']) await mkdir(join(dir, d), { recursive: true, mode: 0o755 });
    await writeFile(join(dir, 'package.json'), '{"type":"module"}\n');
    await copyFile(join(root, 'dist/test/sidecar/iptables-fixture-server.js'), join(dir, 'dist/test/sidecar/iptables-fixture-server.js'));
    await copyFile(join(root, 'dist/src/sidecar/original-dst.js'), join(dir, 'dist/src/sidecar/original-dst.js'));
    await copyFile(addon, join(dir, 'build/Release/etz_original_dst.node'));
    const fixture = join(dir, 'dist/test/sidecar/iptables-fixture-server.js');

    podA = await Netns.create('etzA');
    podB = await Netns.create('etzB');
    await vethPair(podA, podB, { a4: A4, b4: B4, a6: A6, b6: B6 });
    // Pod A: the proxy stand-in on the sidecar ports (+8081, an excluded inbound port), as uid 1337.
    children.push(await startIn(podA, [process.execPath, fixture, 'proxyA', '15001,15006,8081'], { uid: PROXY_UID, gid: PROXY_UID, ready: 'READY' }));
    assert.match(children[0]!.output(), /"available":true/, 'addon loads in the proxy process');
    // Pod B: a plain application, no interception.
    children.push(await startIn(podB, [process.execPath, fixture, 'appB', '8080'], { ready: 'READY' }));
  });

  after(async () => {
    await stopAll(children);
    await podA?.del();
    await podB?.del();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('--dry-run prints the rules and changes nothing', async () => {
    const r = await etz(podA, ['--dry-run', '--ipv6', 'on', '--exclude-inbound-ports', '8081']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^iptables-restore --noflush -w <<'EOF'$/m);
    assert.match(r.stdout, /^ip6tables-restore --noflush -w <<'EOF'$/m);
    assert.match(r.stdout, /^-A ETZ_OUTPUT -m owner --uid-owner 1337 -j RETURN$/m);
    assert.match(r.stdout, /^-A ETZ_OUTPUT -d ::1\/128 -j RETURN$/m);
    assert.match(r.stdout, /^-A ETZ_INBOUND -p tcp --dport 8081 -j RETURN$/m);
    assert.deepEqual(await natRules(podA), []);
  });

  test('installs the chains; a second run (CAP_NET_ADMIN only) leaves exactly the same rules', async () => {
    const args = ['--ipv6', 'auto', '--exclude-inbound-ports', '8081'];
    const first = await etz(podA, args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /ipv4, ipv6/, 'auto mode sees the global IPv6 address');
    const once = await natRules(podA);
    const once6 = await natRules(podA, 'ip6tables-save');
    for (const chain of ['ETZ_INBOUND', 'ETZ_IN_REDIRECT', 'ETZ_OUTPUT', 'ETZ_REDIRECT']) {
      assert.ok(once.includes(`:${chain} - [0:0]`), `${chain} exists`);
      assert.ok(once6.includes(`:${chain} - [0:0]`), `${chain} exists for IPv6`);
    }
    // The second run holds CAP_NET_ADMIN and no other capability: what an init container gets.
    const second = await podA.exec(['setpriv', '--bounding-set=-all,+net_admin', '--inh-caps=-all', process.execPath, cli, 'iptables', ...args]);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(await natRules(podA), once);
    assert.deepEqual(await natRules(podA, 'ip6tables-save'), once6);
    assert.equal(once.filter((l) => l === '-A OUTPUT -p tcp -j ETZ_OUTPUT').length, 1);
  });

  test('an application call to another pod reaches the outbound listener with its original destination (IPv4)', async () => {
    const seen = await curl(podA, `http://${B4}:8080/`);
    assert.equal(seen.name, 'proxyA');
    assert.equal(seen.listenerPort, 15001);
    assert.deepEqual(seen.originalDst, { address: B4, port: 8080 });
  });

  test('the same over IPv6 (ip6tables, IP6T_SO_ORIGINAL_DST)', async () => {
    const seen = await curl(podA, `http://[${B6}]:8080/`);
    assert.equal(seen.listenerPort, 15001);
    assert.deepEqual(seen.originalDst, { address: B6, port: 8080 });
  });

  test('traffic into the pod reaches the inbound listener, which learns the original port', async () => {
    const v4 = await curl(podB, `http://${A4}:9080/`);
    assert.equal(v4.name, 'proxyA');
    assert.equal(v4.listenerPort, 15006);
    assert.deepEqual(v4.originalDst, { address: A4, port: 9080 });
    const v6 = await curl(podB, `http://[${A6}]:9443/`);
    assert.equal(v6.listenerPort, 15006);
    assert.deepEqual(v6.originalDst, { address: A6, port: 9443 });
  });

  test('excluded inbound ports and the sidecar ports are not redirected', async () => {
    const excluded = await curl(podB, `http://${A4}:8081/`);
    assert.equal(excluded.listenerPort, 8081);
    assert.equal(excluded.originalDst, null);
    const own = await curl(podB, `http://${A4}:15001/`);
    assert.equal(own.listenerPort, 15001);
    assert.equal(own.originalDst, null);
  });

  test("the proxy's own outbound calls (uid 1337) are not looped back into it", async () => {
    // The application asks the proxy (on loopback, not redirected) to dial pod B itself.
    const seen = await curl(podA, `http://127.0.0.1:15006/dial?url=${encodeURIComponent(`http://${B4}:8080/`)}`);
    assert.equal(seen.listenerPort, 15006);
    assert.equal(seen.originalDst, null, 'loopback destinations are not redirected');
    assert.equal(seen.dialed?.name, 'appB', `proxy reached the real pod B: ${JSON.stringify(seen.dialed)}`);
    assert.equal(seen.dialed?.listenerPort, 8080);
  });

  test('--cleanup removes every rule; running it again is harmless; traffic then flows directly', async () => {
    const r = await etz(podA, ['--cleanup']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await natRules(podA), []);
    assert.deepEqual(await natRules(podA, 'ip6tables-save'), []);
    const again = await etz(podA, ['--cleanup']);
    assert.equal(again.code, 0, again.stderr);
    // Where ip6tables is absent there is no IPv6 rule to remove: auto mode cleans IPv4 and succeeds.
    const no6 = await etz(podA, ['--cleanup', '--ip6tables=/nonexistent/ip6tables']);
    assert.equal(no6.code, 0, no6.stderr);
    assert.match(no6.stdout, /removed \(ipv4;/);
    assert.equal((await etz(podA, ['--cleanup', '--ipv6=on', '--ip6tables=/nonexistent/ip6tables'])).code, 1, 'but not when IPv6 was asked for');
    const seen = await curl(podA, `http://${B4}:8080/`);
    assert.equal(seen.name, 'appB');
  });

  test('without CAP_NET_ADMIN: a clear permission error, exit 1, nothing installed', async () => {
    for (const who of [
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'], // an ordinary user
      ['--bounding-set=-all,+net_raw', '--inh-caps=-all'], // root, but without NET_ADMIN
    ]) {
      const r = await podA.exec(['setpriv', ...who, process.execPath, cli, 'iptables']);
      assert.equal(r.code, 1, who.join(' '));
      assert.match(r.stderr, /not permitted.*CAP_NET_ADMIN.*\[ETZ_ERR_IPTABLES_PERMISSION\]/);
      assert.deepEqual(await natRules(podA), []);
    }
  });

  test('iptables missing: a clear error naming the tool, exit 1', async () => {
    const r = await podA.exec(['env', 'PATH=/nonexistent', process.execPath, cli, 'iptables']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /iptables-save not found.*\[ETZ_ERR_IPTABLES_MISSING\]/);
  });

  test('a failure in one family leaves the other as it was before the run', async () => {
    // ip6tables whose restore step refuses: the IPv4 rules of this run must not stay behind.
    const fake = join(dir, 'fake6');
    await writeFile(`${fake}-save`, '#!/bin/sh\nexec ip6tables-save "$@"\n', { mode: 0o755 });
    await writeFile(`${fake}-restore`, '#!/bin/sh\necho "ip6tables-restore: line 7 failed" >&2\nexit 1\n', { mode: 0o755 });
    const fresh = await etz(podA, ['--ipv6', 'on', `--ip6tables=${fake}`]);
    assert.equal(fresh.code, 1);
    assert.match(fresh.stderr, /fake6-restore --noflush -w failed: ip6tables-restore: line 7 failed \[ETZ_ERR_IPTABLES_FAILED\]/);
    assert.deepEqual(await natRules(podA), [], 'nothing was installed before: nothing is left');

    // With rules already in force, a failed re-run puts exactly those back (no bypass).
    assert.equal((await etz(podA, ['--ipv6', 'off', '--proxy-uid', '4321'])).code, 0);
    const before = await natRules(podA);
    const rerun = await etz(podA, ['--ipv6', 'on', `--ip6tables=${fake}`]);
    assert.equal(rerun.code, 1);
    assert.deepEqual(await natRules(podA), before);
    assert.ok(before.some((l) => l.includes('--uid-owner 4321')));
    assert.equal((await etz(podA, ['--cleanup'])).code, 0);
  });
});

test('namespace tests skip only for a stated reason', () => {
  if (skip) assert.match(String(skip), /root|Linux|installed|namespaces/);
  else assert.equal(process.getuid?.(), 0);
});


