import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gaussianSeries } from '../scoring/helpers.js';

const MAIN = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');
let dir: string;

function runEtz(args: string[], stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

/** A NAB-style CSV: 5-minute timestamps, a noisy daily cycle, a spike and a level shift. */
function seriesCsv(n: number): string {
  const noise = gaussianSeries(n, 21, 0, 3);
  const lines = ['timestamp,value'];
  const t0 = Date.UTC(2014, 3, 1);
  for (let i = 0; i < n; i++) {
    let v = 50 + 20 * Math.sin((2 * Math.PI * i) / 288) + noise[i]!;
    if (i === Math.floor(n * 0.6)) v += 80;
    if (i > n * 0.8) v += 30;
    const ts = new Date(t0 + i * 300_000).toISOString().replace('T', ' ').slice(0, 19);
    lines.push(`${ts},${v.toFixed(3)}`);
  }
  return lines.join('\n') + '\n';
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'etz-detect-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('file in, file out: one scored row per input row, same order, scores in [0, 1]', async () => {
  const csv = seriesCsv(3000);
  await writeFile(join(dir, 'in.csv'), csv);
  const r = await runEtz(['detect', '--input', join(dir, 'in.csv'), '--output', join(dir, 'out.csv')]);
  assert.equal(r.code, 0, r.stderr);
  const out = (await readFile(join(dir, 'out.csv'), 'utf8')).trim().split('\n');
  const inp = csv.trim().split('\n');
  assert.equal(out[0], 'timestamp,value,anomaly_score');
  assert.equal(out.length, inp.length);
  for (let i = 1; i < out.length; i++) {
    const [ts, v, s] = out[i]!.split(',');
    assert.equal(`${ts},${v}`, inp[i]);
    const score = Number(s);
    assert.ok(score >= 0 && score <= 1, `row ${i}: ${s}`);
  }
  // The injected spike must stand out against the quiet first half (above its 99th percentile).
  const scores = out.slice(1).map((l) => Number(l.split(',')[2]));
  const quiet = scores.slice(600, 1500).sort((a, b) => a - b);
  const p99 = quiet[Math.floor(quiet.length * 0.99)]!;
  assert.ok(scores[1800]! > p99, `spike ${scores[1800]} vs quiet p99 ${p99}`);
});

test('causal and deterministic: the first k rows score exactly as in the full run (every detector)', async () => {
  const csv = seriesCsv(2500);
  const lines = csv.trim().split('\n');
  const k = 1700;
  const prefix = lines.slice(0, k + 1).join('\n') + '\n';
  const list = await runEtz(['detect', '--list']);
  assert.equal(list.code, 0);
  const names = list.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]!);
  assert.ok(names.length >= 5, list.stdout);
  for (const name of names) {
    const full = await runEtz(['detect', '--detector', name], csv);
    const again = await runEtz(['detect', '--detector', name], csv);
    const part = await runEtz(['detect', '--detector', name], prefix);
    assert.equal(full.code, 0, full.stderr);
    assert.equal(again.stdout, full.stdout, `${name}: deterministic`);
    const fullRows = full.stdout.trim().split('\n');
    assert.deepEqual(part.stdout.trim().split('\n'), fullRows.slice(0, k + 1), `${name}: prefix property`);
  }
});

test('stdin to stdout, CRLF line ends and extra columns are accepted', async () => {
  const csv = 'value,timestamp,label\r\n1.5,2014-04-01 00:00:00,0\r\n2.5,2014-04-01 00:05:00,0\r\n';
  const r = await runEtz(['detect', '--input', '-', '--output', '-'], csv);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.trim().split('\n');
  assert.equal(rows.length, 3);
  assert.match(rows[1]!, /^2014-04-01 00:00:00,1\.5,(0|1|0\.\d+)$/);
});

for (const [what, row, reason] of [
  ['a non-numeric value', '2014-04-01 00:10:00,abc', /line 4|:4:/],
  ['a missing value', '2014-04-01 00:10:00,', /:4:.*missing value/],
  ['a row without a value column', '2014-04-01 00:10:00', /:4:.*missing value/],
] as const) {
  test(`${what} is reported with its line number, exit 2, and no output file is left`, async () => {
    const sub = await mkdtemp(join(dir, 'bad-'));
    const body = ['timestamp,value', '2014-04-01 00:00:00,1', '2014-04-01 00:05:00,2', row, '2014-04-01 00:15:00,3'];
    // Enough good rows after the bad one that a streaming writer would already have flushed output.
    for (let i = 0; i < 5000; i++) body.push(`2014-04-02 00:00:00,${i}`);
    await writeFile(join(sub, 'in.csv'), body.join('\n'));
    const r = await runEtz(['detect', '--input', join(sub, 'in.csv'), '--output', join(sub, 'out.csv')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, reason);
    assert.match(r.stderr, /ETZ_ERR_DETECT_INPUT/);
    assert.deepEqual(await readdir(sub), ['in.csv'], 'no output and no temporary file');
  });
}

test('a failed run does not clobber an existing output file', async () => {
  const sub = await mkdtemp(join(dir, 'keep-'));
  await writeFile(join(sub, 'out.csv'), 'previous\n');
  await writeFile(join(sub, 'in.csv'), 'timestamp,value\n2014-04-01 00:00:00,x\n');
  const r = await runEtz(['detect', '--input', join(sub, 'in.csv'), '--output', join(sub, 'out.csv')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /:2:/);
  assert.equal(await readFile(join(sub, 'out.csv'), 'utf8'), 'previous\n');
  assert.deepEqual((await readdir(sub)).sort(), ['in.csv', 'out.csv']);
});

test('bad usage exits 2: unknown detector, missing header, missing input file, unknown flag', async () => {
  const a = await runEtz(['detect', '--detector', 'nope'], 'timestamp,value\n');
  assert.equal(a.code, 2);
  assert.match(a.stderr, /unknown detector 'nope'/);
  const b = await runEtz(['detect'], 'time,val\n1,2\n');
  assert.equal(b.code, 2);
  assert.match(b.stderr, /:1:.*header/);
  const c = await runEtz(['detect', '--input', join(dir, 'does-not-exist.csv')]);
  assert.equal(c.code, 2);
  const d = await runEtz(['detect', '--frobnicate']);
  assert.equal(d.code, 2);
});

test('a 22,000-row series completes (speed is measured in bench/nab, not asserted here)', async () => {
  await writeFile(join(dir, 'big.csv'), seriesCsv(22_000));
  const r = await runEtz(['detect', '--input', join(dir, 'big.csv'), '--output', join(dir, 'big-out.csv')]);
  assert.equal(r.code, 0, r.stderr);
  const out = (await readFile(join(dir, 'big-out.csv'), 'utf8')).trim().split('\n');
  assert.equal(out.length, 22_001);
});

test('an output path in a missing directory fails with exit 2 and names that path', async () => {
  await writeFile(join(dir, 'ok.csv'), 'timestamp,value\n2014-04-01 00:00:00,1\n');
  const target = join(dir, 'no-such-dir', 'out.csv');
  const r = await runEtz(['detect', '--input', join(dir, 'ok.csv'), '--output', target]);
  assert.equal(r.code, 2);
  assert.ok(r.stderr.includes(`cannot write '${target}'`), r.stderr);
});
