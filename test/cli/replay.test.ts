import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MIN, T0, Trace, mesh } from '../scenarios/trace.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let dir: string;
let trace: string;

function etz(args: string[], stdin?: string): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ETZ_LOG_LEVEL: 'silent' } });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.end(stdin ?? '');
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-replay-'));
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 9 * MIN, rate: 3 });
  const targets = ['ratings', 'accounts', 'reviews'];
  for (let i = 0, ts = T0 + 5 * MIN; ts < T0 + 7 * MIN; ts += 200, i++) {
    t.add({ ts, source: { service: 'details' }, destination: { service: targets[i % 3]! }, method: 'GET', path: '/x', status: 200, durationMs: 2 });
  }
  trace = join(dir, 'trace.jsonl');
  await writeFile(trace, t.jsonl());
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('etz replay is deterministic: two runs give the same bytes', async () => {
  const a = await etz(['replay', trace]);
  const b = await etz(['replay', trace]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.ok(a.stdout.length > 0);
  assert.ok(a.stdout.equals(b.stdout));
  const events = a.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as { ts: string; event: string; zone?: { type: string } });
  for (const e of events) {
    assert.match(e.ts, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    assert.equal(Object.keys(e)[0], 'ts');
    assert.equal(Object.keys(e)[1], 'event');
  }
  assert.ok(events.some((e) => e.event === 'zone.created' && e.zone?.type === 'containment'));
  // Events come out in trace-time order.
  for (let i = 1; i < events.length; i++) assert.ok(events[i - 1]!.ts <= events[i]!.ts);
  const summary = JSON.parse(a.stderr.trim().split('\n').at(-1)!) as { read: number; skipped: number; events: Record<string, number> };
  assert.equal(summary.skipped, 0);
  assert.ok(summary.read > 1000);
  assert.equal(summary.events['zone.created'], events.filter((e) => e.event === 'zone.created').length);
});

test('malformed and out-of-order records are reported with line numbers and skipped; stdin works', async () => {
  const good = (ms: number, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ ts: new Date(T0 + ms).toISOString(), source: { service: 'a' }, destination: { service: 'b' }, method: 'GET', path: '/', status: 200, durationMs: 1, ...extra });
  const lines = [
    good(0),
    good(1000),
    '{"ts": "2026-11-21T10:00:02Z", "source": {"service": "a"}',
    good(2000, { status: 'ok' }),
    good(3000, { destination: undefined }),
    good(20_000),
    good(10_000),
    good(16_000),
    '',
    good(21_000, { kind: 'nope' }),
    good(22_000),
  ];
  const r = await etz(['replay', '-'], lines.join('\n') + '\n');
  assert.equal(r.code, 0, r.stderr);
  const err = r.stderr.trim().split('\n');
  assert.match(err[0]!, /line 3: .*not valid JSON/);
  assert.match(err[1]!, /line 4: status: must be a number/);
  assert.match(err[2]!, /line 5: destination: is required/);
  assert.match(err[3]!, /line 7: .*10000 ms behind.*out of order/);
  assert.match(err[4]!, /line 10: kind: must be one of/);
  const summary = JSON.parse(err.at(-1)!) as { read: number; skipped: number; malformed: number; outOfOrder: number };
  assert.equal(summary.read, 10);
  assert.equal(summary.skipped, 5);
  assert.equal(summary.malformed, 4);
  assert.equal(summary.outOfOrder, 1);
});

test('usage and config errors exit 2 naming the file and field', async () => {
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'zones:\n  containment:\n    enterScore: 300\n');
  const r = await etz(['replay', '--config', bad, trace]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /invalid config: .*bad\.yaml: \/zones\/containment\/enterScore: must be <= 100/);
  assert.equal(r.stdout.length, 0);
  const unknown = join(dir, 'unknown.yaml');
  await writeFile(unknown, 'zonez: {}\n');
  const k = await etz(['replay', '--config', unknown, trace]);
  assert.equal(k.code, 2);
  assert.match(k.stderr, /unknown\.yaml: \/zonez: is not a known field/);
  const u = await etz(['replay', '--bogus']);
  assert.equal(u.code, 2);
  const m = await etz(['replay', join(dir, 'missing.jsonl')]);
  assert.equal(m.code, 2);
  assert.match(m.stderr, /cannot read trace/);
});

test('a config changes the outcome: shadow mode marks zones as not enforced', async () => {
  const cfg = join(dir, 'shadow.yaml');
  await writeFile(cfg, 'zones:\n  mode: shadow\n');
  const r = await etz(['replay', '--config', cfg, trace]);
  assert.equal(r.code, 0, r.stderr);
  const created = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l) as { event: string; zone?: { shadow: boolean } }).filter((e) => e.event === 'zone.created');
  assert.ok(created.length > 0);
  assert.ok(created.every((e) => e.zone!.shadow === true));
});
