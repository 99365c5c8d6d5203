import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildRules, formatRule, parseCidrList, parsePortList, resolveOptions } from '../../src/sidecar/iptables/index.js';
import { UsageError } from '../../src/core/errors.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const lines = (rules: string[][]) => rules.map((r) => formatRule('iptables', r));

function etz(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'iptables', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('default rules: four chains, sidecar ports excluded inbound, proxy uid/gid and loopback exempt outbound', () => {
  const plan = buildRules(resolveOptions(), 'ipv4');
  const l = lines(plan.setup);
  for (const c of ['ETZ_INBOUND', 'ETZ_IN_REDIRECT', 'ETZ_OUTPUT', 'ETZ_REDIRECT']) {
    assert.ok(l.includes(`iptables -w -t nat -N ${c}`), c);
  }
  assert.ok(l.includes('iptables -w -t nat -A ETZ_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'));
  assert.ok(l.includes('iptables -w -t nat -A ETZ_REDIRECT -p tcp -j REDIRECT --to-ports 15001'));
  for (const p of [15000, 15001, 15006]) assert.ok(l.includes(`iptables -w -t nat -A ETZ_INBOUND -p tcp --dport ${p} -j RETURN`), String(p));
  const uid = l.indexOf('iptables -w -t nat -A ETZ_OUTPUT -m owner --uid-owner 1337 -j RETURN');
  const gid = l.indexOf('iptables -w -t nat -A ETZ_OUTPUT -m owner --gid-owner 1337 -j RETURN');
  const lo = l.indexOf('iptables -w -t nat -A ETZ_OUTPUT -d 127.0.0.0/8 -j RETURN');
  const jump = l.indexOf('iptables -w -t nat -A ETZ_OUTPUT -j ETZ_REDIRECT');
  assert.ok(uid >= 0 && gid > uid && lo > gid && jump > lo, 'exemptions come before the redirect');
  assert.equal(l.filter((x) => x.includes('-A ETZ_INBOUND -p tcp -j ETZ_IN_REDIRECT')).length, 1);
  // The catch-all inbound redirect is last in its chain.
  const inbound = l.filter((x) => x.includes('-A ETZ_INBOUND'));
  assert.equal(inbound.at(-1), 'iptables -w -t nat -A ETZ_INBOUND -p tcp -j ETZ_IN_REDIRECT');
});

test('IPv6 plan uses ::1 for loopback and only IPv6 CIDRs; IPv4 plan only IPv4 CIDRs', () => {
  const opts = resolveOptions({ excludeOutboundCidrs: ['169.254.169.254/32', 'fd00::/8'] });
  const v4 = lines(buildRules(opts, 'ipv4').setup).join('\n');
  const v6 = lines(buildRules(opts, 'ipv6').setup).join('\n');
  assert.match(v4, /-d 169\.254\.169\.254\/32 -j RETURN/);
  assert.doesNotMatch(v4, /fd00::\/8/);
  assert.match(v6, /-d fd00::\/8 -j RETURN/);
  assert.match(v6, /-d ::1\/128 -j RETURN/);
  assert.doesNotMatch(v6, /169\.254/);
});

test('options change the rules: ports, uid, no gid, explicit inbound ports, include CIDRs', () => {
  const opts = resolveOptions({
    inboundPort: 16006, outboundPort: 16001, adminPort: 16000, proxyUid: 2000, proxyGid: null,
    inboundPorts: [8080, 16001, 9090], excludeOutboundPorts: [5432], includeOutboundCidrs: ['10.0.0.0/8'],
  });
  const l = lines(buildRules(opts, 'ipv4').setup);
  assert.ok(l.includes('iptables -w -t nat -A ETZ_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006'));
  assert.ok(l.includes('iptables -w -t nat -A ETZ_OUTPUT -m owner --uid-owner 2000 -j RETURN'));
  assert.ok(!l.some((x) => x.includes('--gid-owner')));
  assert.ok(l.includes('iptables -w -t nat -A ETZ_INBOUND -p tcp --dport 8080 -j ETZ_IN_REDIRECT'));
  assert.ok(l.includes('iptables -w -t nat -A ETZ_INBOUND -p tcp --dport 9090 -j ETZ_IN_REDIRECT'));
  assert.ok(!l.some((x) => x.includes('--dport 16001 -j ETZ_IN_REDIRECT')), "the sidecar's own port is never intercepted");
  assert.ok(!l.some((x) => x.includes('-A ETZ_INBOUND -p tcp -j ETZ_IN_REDIRECT')), 'no catch-all with an explicit list');
  assert.ok(l.includes('iptables -w -t nat -A ETZ_OUTPUT -p tcp --dport 5432 -j RETURN'));
  assert.ok(l.includes('iptables -w -t nat -A ETZ_OUTPUT -d 10.0.0.0/8 -j ETZ_REDIRECT'));
  assert.ok(!l.includes('iptables -w -t nat -A ETZ_OUTPUT -j ETZ_REDIRECT'));
  // An IPv4-only include list intercepts no IPv6 destination at all.
  assert.ok(!lines(buildRules(opts, 'ipv6').setup).some((x) => x.includes('-j ETZ_REDIRECT') && x.includes('ETZ_OUTPUT')));
});

test('cleanup removes both jumps, then flushes and deletes the four chains', () => {
  const l = lines(buildRules(resolveOptions(), 'ipv4').cleanup);
  assert.deepEqual(l.slice(0, 2), [
    'iptables -w -t nat -D PREROUTING -p tcp -j ETZ_INBOUND',
    'iptables -w -t nat -D OUTPUT -p tcp -j ETZ_OUTPUT',
  ]);
  assert.equal(l.filter((x) => / -F ETZ_/.test(x)).length, 4);
  assert.equal(l.filter((x) => / -X ETZ_/.test(x)).length, 4);
  assert.ok(l.findIndex((x) => x.includes(' -X ')) > l.findLastIndex((x) => x.includes(' -F ')), 'flush before delete');
});

test('bad values are usage errors naming the option', () => {
  assert.throws(() => parsePortList('80,0', '--exclude-inbound-ports'), (e: unknown) => e instanceof UsageError && /--exclude-inbound-ports: '0'/.test(e.message));
  assert.throws(() => parsePortList('70000', 'x'), UsageError);
  assert.throws(() => parsePortList('8o', 'x'), UsageError);
  assert.throws(() => parsePortList('*', 'x'), UsageError);
  assert.equal(parsePortList('*', 'x', true), '*');
  assert.deepEqual(parsePortList(' 80, 443,80 ', 'x'), [80, 443]);
  assert.throws(() => parseCidrList('10.0.0.0/33', '--exclude-outbound-cidrs'), /--exclude-outbound-cidrs: '10.0.0.0\/33'/);
  assert.throws(() => parseCidrList('example.com', 'x'), UsageError);
  assert.throws(() => parseCidrList('fd00::/129', 'x'), UsageError);
  assert.deepEqual(parseCidrList('10.0.0.1, fd00::/8', 'x'), ['10.0.0.1', 'fd00::/8']);
  assert.throws(() => resolveOptions({ inboundPort: 0 }), /inbound port/);
  assert.throws(() => resolveOptions({ proxyUid: -1 }), /proxy uid/);
});

test('formatRule quotes what a shell would split', () => {
  assert.equal(formatRule('iptables', ['-A', 'X', '-m', 'comment', '--comment', "etz's rule"]), `iptables -A X -m comment --comment 'etz'\\''s rule'`);
});

test('CLI: usage errors exit 2; --dry-run prints without touching iptables', async () => {
  const bad = await etz(['--ipv6', 'maybe']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--ipv6: 'maybe' must be auto, on or off/);
  const badPort = await etz(['--inbound-port', '15006,15007']);
  assert.equal(badPort.code, 2);
  const unknown = await etz(['--frobnicate']);
  assert.equal(unknown.code, 2);
  // A dry run never executes iptables, so it works without privileges or the binary.
  const dry = await etz(['--dry-run', '--ipv6', 'off', '--iptables', '/nonexistent/iptables', '--proxy-uid', '4242']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^\/nonexistent\/iptables -w -t nat -A ETZ_OUTPUT -m owner --uid-owner 4242 -j RETURN$/m);
  assert.doesNotMatch(dry.stdout, /ip6tables/);
  const dryClean = await etz(['--dry-run', '--cleanup', '--ipv6', 'off']);
  assert.match(dryClean.stdout, /^iptables -w -t nat -X ETZ_REDIRECT$/m);
  const help = await etz(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--exclude-outbound-cidrs/);
});
