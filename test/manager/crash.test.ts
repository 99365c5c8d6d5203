import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManagerClient } from '../../src/manager/api-client.js';

import { CLI as MAIN, spawnManager } from './manager-process.js';

async function client(dataDir: string, url: string): Promise<ManagerClient> {
  return new ManagerClient({
    url,
    ca: await readFile(join(dataDir, 'ca', 'trust-bundle.pem'), 'utf8'),
    token: (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim(),
  });
}

test('kill -9 during a burst of writes: after restart every acknowledged write is there and state is consistent', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'etz-crash-'));
  let m = await spawnManager(dataDir);
  try {
    assert.match(m.stderr(), /created admin token/);
    const api = await client(dataDir, m.url);
    const acked = new Set<string>();
    const tokensAcked = new Set<string>();
    let failures = 0;
    const unexpected: Error[] = [];
    let stop = false;
    // 16 writers in parallel, each creating zones and tokens back to back.
    const writers = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        try {
          if (i % 4 === 3) {
            const r = await api.call<{ record: { id: string } }>('POST', '/v1/tokens', { description: `w${w}-${i}` });
            tokensAcked.add(r.record.id);
          } else {
            const z = await api.call<{ id: string }>('POST', '/v1/zones', { type: 'containment', members: [{ service: `svc-${w}-${i}` }], reason: `w${w}-${i}` });
            acked.add(z.id);
          }
        } catch (err) {
          // Only the crash may stop a writer; any other refusal is a bug this test must show.
          if ((err as { code?: string }).code !== 'ETZ_ERR_MANAGER_UNREACHABLE') unexpected.push(err as Error);
          failures++;
          return;
        }
      }
    });
    // Let the burst run, then kill without warning.
    while (acked.size < 150 && unexpected.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(unexpected.map((e) => e.message), []);
    m.child.kill('SIGKILL');
    stop = true;
    await Promise.all(writers);
    assert.ok(failures > 0, 'writes were in flight when the manager died');

    m = await spawnManager(dataDir);
    assert.doesNotMatch(m.stderr(), /created admin token/, 'the admin token survives');
    const api2 = await client(dataDir, m.url);
    const zones = await api2.call<{ items: Array<{ id: string; reason: string }> }>('GET', '/v1/zones');
    const have = new Set(zones.items.map((z) => z.id));
    for (const id of acked) assert.ok(have.has(id), `acknowledged zone ${id} survived`);
    const tokens = await api2.call<{ items: Array<{ id: string }> }>('GET', '/v1/tokens');
    const haveTok = new Set(tokens.items.map((t) => t.id));
    for (const id of tokensAcked) assert.ok(haveTok.has(id), `acknowledged token ${id} survived`);
    // Consistency: every zone that exists has its audit record or was the one in flight; the
    // audit log's sequence numbers are unique and increasing.
    const audit = await api2.call<{ entries: Array<{ seq: number; action: string; target?: string }> }>('GET', '/v1/audit?limit=1000');
    const seqs = audit.entries.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a));
    assert.equal(new Set(seqs).size, seqs.length);
    const auditedZones = new Set(audit.entries.filter((e) => e.action === 'zone.create').map((e) => e.target));
    for (const id of acked) assert.ok(auditedZones.has(id), `audit record of ${id} survived`);
    // And the manager keeps working on the recovered store.
    const z = await api2.call<{ id: string }>('POST', '/v1/zones', { type: 'isolation', members: [{ service: 'x' }], reason: 'after crash' });
    assert.ok(z.id);
  } finally {
    m.child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
});

test('etz manager with an invalid config exits 2 naming the file, field and reason', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'etz-cfg-'));
  try {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'm.yaml'), 'pubsub:\n  debounceMs: -5\n');
    const child = spawn(process.execPath, [MAIN, 'manager', '--config', join(dir, 'm.yaml'), '--data-dir', join(dir, 'd')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 2);
    assert.match(err, /invalid config: .*m\.yaml: \/pubsub\/debounceMs: must be >= 0/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('operator CLI over the API: token create, zones create/ls/dissolve, status, audit; SIGTERM stops cleanly', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'etz-cli-'));
  const m = await spawnManager(dataDir);
  const run = (args: string[]) => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const c = spawn(process.execPath, [MAIN, ...args, '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    c.once('exit', (code) => resolve({ code, out, err }));
  });
  try {
    const tok = await run(['manager', 'token', 'create', '--scope', 'service=reviews', '--ttl', '10m']);
    assert.equal(tok.code, 0, tok.err);
    assert.match(tok.out, /^etzb_[0-9a-f]{12}\.\S+\n$/);
    const z = await run(['zones', 'create', '--type', 'containment', '--member', 'reviews:v2', '--reason', 'cli test', '--ttl', '30m']);
    assert.equal(z.code, 0, z.err);
    const id = z.out.trim();
    const ls = await run(['zones', 'ls']);
    assert.match(ls.out, new RegExp(`${id}\\s+containment\\s+reviews:v2`));
    const st = await run(['status']);
    assert.equal(st.code, 0, st.err);
    assert.match(st.out, /zones\s+1/);
    const bad = await run(['zones', 'create', '--type', 'containment', '--reason', 'x']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /at least one --member/);
    const d = await run(['zones', 'dissolve', id, '--reason', 'done']);
    assert.equal(d.code, 0, d.err);
    const audit = await run(['audit', '--limit', '3']);
    assert.match(audit.out, /zone\.dissolve\s+ok\s+\S+\s+done/);
    const noServer = await run(['status', '--server', 'https://127.0.0.1:1']);
    assert.equal(noServer.code, 1);
    assert.match(noServer.err, /cannot reach the manager/);
    m.child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => m.child.once('exit', r));
    assert.equal(code, 0);
  } finally {
    m.child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  }
});
