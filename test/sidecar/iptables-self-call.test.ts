// A pod calling its own (non-loopback) address, under the rules of `etz iptables`, in a throw-away
// network namespace: such traffic leaves through `lo` and never crosses PREROUTING. The proxy's
// calls (matched by its uid, or by its gid alone) must reach the inbound listener as a peer's
// would, with the original destination recovered; the application calling its own pod address
// must reach itself, not the outbound listener. Stand-in listeners answer with which listener
// took the connection and its original destination; REDIRECT counters confirm. Needs root (as
// CI runs it); skipped, saying why, otherwise.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Netns } from '../../src/sidecar/iptables/netns.js';
import { netnsSkipReason, startIn, stopAll, type Child } from '../e2e/netns-lib.js';

const skip = netnsSkipReason();
const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const fixture = join(root, 'dist/test/sidecar/iptables-fixture-server.js');
const addon = join(root, 'build/Release/etz_original_dst.node');

const POD4 = '10.213.11.1';
const POD6 = 'fd00:e7a1::1';
const APP_PORT = 9080;
const EXCLUDED = 8081;

interface Seen {
  name: string;
  listenerPort: number;
  originalDst: { address: string; port: number } | null;
}

/** setpriv prefixes: who makes the call. */
const AS = {
  proxy: ['setpriv', '--reuid=1337', '--regid=1337', '--clear-groups'],
  // uid 0 with the proxy's gid: how `etz demo --iptables` runs its sidecars.
  proxyByGid: ['setpriv', '--regid=1337', '--clear-groups'],
  app: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'],
  root: [] as string[],
};

describe('the pod calling its own address under etz iptables', { skip }, () => {
  let pod: Netns;
  const children: Child[] = [];

  async function call(who: keyof typeof AS, url: string): Promise<Seen> {
    const r = await pod.exec([...AS[who], 'curl', '-sS', '-g', '--noproxy', '*', '--max-time', '5', url]);
    assert.equal(r.code, 0, `curl ${url} as ${who}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Seen;
  }

  /** Packets counted by the REDIRECT rule of one chain, per family. */
  async function redirected(chain: string, bin = 'iptables'): Promise<number> {
    const out = await pod.must([bin, '-t', 'nat', '-L', chain, '-v', '-x', '-n']);
    const line = out.split('\n').find((l) => /\bREDIRECT\b/.test(l));
    assert.ok(line, `${chain} has a REDIRECT rule:\n${out}`);
    return Number(line.trim().split(/\s+/)[0]);
  }

  const natRules = async (bin: string) => (await pod.must([`${bin}-save`, '-t', 'nat'])).split('\n').filter((l) => /ETZ_/.test(l));

  before(async () => {
    assert.ok(existsSync(addon), `native addon missing at ${addon}: run npm ci / node scripts/build-native.js`);
    pod = await Netns.create('etzS');
    // One non-loopback interface is all a pod address needs; its local route goes through lo.
    // (A veth pair with both ends in the pod: not every kernel has the dummy device.)
    await pod.must(['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
    await pod.must(['ip', 'addr', 'add', `${POD4}/24`, 'dev', 'eth0']);
    await pod.must(['ip', '-6', 'addr', 'add', `${POD6}/64`, 'dev', 'eth0', 'nodad']);
    await pod.must(['ip', 'link', 'set', 'eth0', 'up']);
    // The sidecar's listeners (admin, outbound, inbound) and the application with one more port
    // excluded from interception. The listeners only accept, so they need not run as 1337.
    children.push(await startIn(pod, [process.execPath, fixture, 'sidecar', '15000,15001,15006'], { ready: 'READY' }));
    children.push(await startIn(pod, [process.execPath, fixture, 'app', `${APP_PORT},${EXCLUDED}`], { ready: 'READY' }));
    const r = await pod.exec([process.execPath, cli, 'iptables', '--ipv6', 'on', '--exclude-inbound-ports', String(EXCLUDED)]);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    await stopAll(children);
    await pod?.del();
  });

  test('the rules are installed as generated', async () => {
    const v4 = await natRules('iptables');
    assert.ok(v4.includes('-A ETZ_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --uid-owner 1337 -j ETZ_INBOUND'), v4.join('\n'));
    assert.ok(v4.includes('-A ETZ_OUTPUT ! -d 127.0.0.0/8 -o lo -m owner --gid-owner 1337 -j ETZ_INBOUND'), v4.join('\n'));
    assert.ok(v4.includes('-A ETZ_OUTPUT -o lo -j RETURN'), v4.join('\n'));
    const v6 = await natRules('ip6tables');
    assert.ok(v6.includes('-A ETZ_OUTPUT ! -d ::1/128 -o lo -m owner --uid-owner 1337 -j ETZ_INBOUND'), v6.join('\n'));
  });

  test("the proxy calling its own pod's address on the app port lands on the inbound listener", async () => {
    const before4 = await redirected('ETZ_IN_REDIRECT');
    for (const who of ['proxy', 'proxyByGid'] as const) {
      const seen = await call(who, `http://${POD4}:${APP_PORT}/`);
      assert.equal(seen.name, 'sidecar', who);
      assert.equal(seen.listenerPort, 15006, who);
      assert.deepEqual(seen.originalDst, { address: POD4, port: APP_PORT }, who);
    }
    assert.equal(await redirected('ETZ_IN_REDIRECT') - before4, 2, 'two connections through the inbound REDIRECT');

    const before6 = await redirected('ETZ_IN_REDIRECT', 'ip6tables');
    const v6 = await call('proxy', `http://[${POD6}]:${APP_PORT}/`);
    assert.equal(v6.listenerPort, 15006);
    assert.deepEqual(v6.originalDst, { address: POD6, port: APP_PORT });
    assert.equal(await redirected('ETZ_IN_REDIRECT', 'ip6tables') - before6, 1);
  });

  test("the proxy's own, excluded and loopback destinations stay direct", async () => {
    const admin = await call('proxy', `http://${POD4}:15000/`);
    assert.deepEqual([admin.name, admin.listenerPort, admin.originalDst], ['sidecar', 15000, null]);
    const inbound = await call('proxyByGid', `http://${POD4}:15006/`);
    assert.deepEqual([inbound.name, inbound.listenerPort, inbound.originalDst], ['sidecar', 15006, null]);
    const excluded = await call('proxy', `http://${POD4}:${EXCLUDED}/`);
    assert.deepEqual([excluded.name, excluded.listenerPort, excluded.originalDst], ['app', EXCLUDED, null]);
    // How the inbound listener hands requests to the application (inbound.appHost 127.0.0.1).
    const local = await call('proxy', `http://127.0.0.1:${APP_PORT}/`);
    assert.deepEqual([local.name, local.listenerPort, local.originalDst], ['app', APP_PORT, null]);
  });

  test('an application calling its own pod address reaches itself, not the outbound listener (no loop)', async () => {
    const out4 = await redirected('ETZ_REDIRECT');
    const out6 = await redirected('ETZ_REDIRECT', 'ip6tables');
    const in4 = await redirected('ETZ_IN_REDIRECT');
    for (const who of ['app', 'root'] as const) {
      const seen = await call(who, `http://${POD4}:${APP_PORT}/`);
      assert.deepEqual([seen.name, seen.listenerPort, seen.originalDst], ['app', APP_PORT, null], who);
    }
    const v6 = await call('app', `http://[${POD6}]:${APP_PORT}/`);
    assert.deepEqual([v6.name, v6.listenerPort, v6.originalDst], ['app', APP_PORT, null]);
    assert.equal(await redirected('ETZ_REDIRECT'), out4, 'nothing went to the outbound listener');
    assert.equal(await redirected('ETZ_REDIRECT', 'ip6tables'), out6);
    assert.equal(await redirected('ETZ_IN_REDIRECT'), in4, 'nor to the inbound listener');
  });

  test('--dry-run --cleanup lists every chain and jump; --cleanup leaves no etz rule and the proxy reaches the app directly', async () => {
    const dry = await pod.exec([process.execPath, cli, 'iptables', '--dry-run', '--cleanup', '--ipv6', 'on']);
    assert.equal(dry.code, 0, dry.stderr);
    for (const c of ['ETZ_INBOUND', 'ETZ_IN_REDIRECT', 'ETZ_OUTPUT', 'ETZ_REDIRECT']) {
      assert.equal(dry.stdout.split('\n').filter((l) => l === `-X ${c}`).length, 2, `${c} removed in both families`);
    }
    const r = await pod.exec([process.execPath, cli, 'iptables', '--cleanup', '--ipv6', 'on']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await natRules('iptables'), []);
    assert.deepEqual(await natRules('ip6tables'), []);
    const seen = await call('proxy', `http://${POD4}:${APP_PORT}/`);
    assert.deepEqual([seen.name, seen.listenerPort], ['app', APP_PORT]);
  });
});

test('the self-call namespace test skips only for a stated reason', () => {
  if (skip) assert.match(String(skip), /root|Linux|installed|namespaces/);
  else assert.equal(process.getuid?.(), 0);
});
