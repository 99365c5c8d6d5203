import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

// `etz demo` as a user runs it: a child process that starts the zone manager, the Bookinfo apps,
// seven enrolled sidecars, plays the attack and stops everything again.

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function runDemo(args: string[], opts: { onLine?: (line: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        opts.onLine?.(buf.slice(0, i), child);
        buf = buf.slice(i + 1);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

/** Every loopback port the demo printed: manager, dashboard, gateway, sidecars, apps. */
function portsIn(out: string): number[] {
  const ports = new Set<number>();
  for (const m of out.matchAll(/(?:127\.0\.0\.1:|inbound :|-v\d :)(\d{2,5})/g)) ports.add(Number(m[1]));
  return [...ports];
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

test('etz demo tells the story: user flagged and sent to reviews v1, the reviews-v2 instance contained and released; exits 0 leaving no port bound', { timeout: 170_000 }, async () => {
  const r = await runDemo(['--speed', '15', '--duration', '75s', '--dashboard-port', '0']);
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
  const o = r.out;
  assert.match(o, /zone manager up at https:\/\/127\.0\.0\.1:\d+/);
  assert.equal((o.match(/sidecar \S+ enrolled as spiffe:\/\/etz\.local\/ns\/default\/sa\//g) ?? []).length, 6, o);
  assert.match(o, /ingress gateway enrolled/);
  assert.match(o, /isolation zone \S+: ratings/);
  assert.match(o, /performance zone \S+: details, productpage/);
  assert.match(o, /end user 'mallory' flagged by the risk engine: more than 5 requests/);
  // The scraping user's pages come from reviews v1 once flagged (most of them; a few before).
  const m = /mallory: (\d+) requests, (\d+) pages served — (\d+) by reviews v1/.exec(o);
  assert.ok(m, o);
  assert.ok(Number(m[3]) >= Number(m[2]) * 0.6, m[0]);
  // The zone is around the compromised instance, not the reviews service; users keep being served
  // by its siblings meanwhile.
  assert.match(o, /CONTAINMENT zone \S+ around reviews-v2: instance reviews-v2 of reviews risk/);
  assert.match(o, /only reviews-v2 is contained/);
  assert.match(o, /containment zone created\s+yes, around reviews-v2\n/);
  const during = /normal users while contained: requests \(ok\)\s+(\d+) \(([\d.]+)%\)/.exec(o);
  assert.ok(during && Number(during[1]) > 0 && Number(during[2]) >= 90, during?.[0] ?? o);
  // No zone but the standing ones and that containment, ever.
  const zones = [...o.matchAll(/^ {2}zone\s+(.+)$/gm)].map((x) => x[1]!.trim()).sort();
  assert.deepEqual(zones, ['containment reviews-v2', 'isolation ratings', 'performance details, productpage'], o);
  assert.match(o, /time to containment: \d+\.\d s/);
  const refusedCalls = /reviews-v2's sidecar refused (\d+) of its exfiltration calls/.exec(o);
  assert.ok(refusedCalls && Number(refusedCalls[1]) > 0, o);
  assert.match(o, /containment zone \S+ dissolved/);
  assert.match(o, /containment zone created\s+yes/);
  assert.match(o, /containment zone dissolved\s+yes/);
  assert.match(o, /etz demo: stopped/);
  const ports = portsIn(o);
  assert.ok(ports.length >= 14, `ports seen: ${ports.join(',')}`);
  for (const p of ports) assert.ok(await refused(p), `port ${p} is still bound after the demo`);
});

test('Ctrl-C stops every process the demo started and leaves no port bound', { timeout: 120_000 }, async () => {
  let sent = false;
  const r = await runDemo(['--no-attack', '--speed', '10', '--dashboard-port', '0'], {
    onLine: (line, child) => {
      if (!sent && line.includes('normal users browse')) {
        sent = true;
        setTimeout(() => child.kill('SIGINT'), 1500);
      }
    },
  });
  assert.ok(sent, r.out + r.err);
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
  assert.match(r.out, /stopping \(Ctrl-C\)/);
  assert.match(r.out, /Summary/);
  assert.match(r.out, /etz demo: stopped; every process ended/);
  const ports = portsIn(r.out);
  assert.ok(ports.length >= 14, `ports seen: ${ports.join(',')}`);
  for (const p of ports) assert.ok(await refused(p), `port ${p} is still bound after Ctrl-C`);
});

test('etz demo refuses bad options with exit 2', async () => {
  const r = await runDemo(['--speed', 'fast']);
  assert.equal(r.code, 2);
  assert.match(r.err, /invalid speed 'fast'/);
});
