// `etz resources` against a real manager process: peerAuthentication set per service and read
// back, a bad value refused by the manager with the field and nothing stored, bad input refused
// by the CLI before anything is sent, clear, and the audit trail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etz, spawnManager } from '../manager/manager-process.js';

test('etz resources sets, gets and clears a pushed resource; bad values are refused and change nothing', { timeout: 60_000 }, async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'etz-resources-'));
  const m = await spawnManager(dataDir);
  t.after(async () => {
    m.child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });
  const run = (args: string[]) => etz(['resources', ...args, '--data-dir', dataDir]);

  const pa = join(dataDir, 'pa.yaml');
  await writeFile(pa, 'mode: STRICT\nportLevel: { "9090": PERMISSIVE }\n');
  const set = await run(['set', 'peerAuthentication', '-f', pa, '--topic', 'service/reviews']);
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /^set peerAuthentication on service\/reviews \(1 item\): config version \d+\n$/);
  const got = await run(['get', 'peerAuthentication', '--topic', 'service/reviews']);
  assert.equal(got.code, 0, got.stderr);
  assert.deepEqual(JSON.parse(got.stdout), { mode: 'STRICT', portLevel: { 9090: 'PERMISSIVE' } });
  // Only on that topic.
  assert.deepEqual(JSON.parse((await run(['get', 'peerAuthentication'])).stdout), []);

  // The manager refuses a bad port, naming the field; the value in force stays.
  const badPa = join(dataDir, 'bad.yaml');
  await writeFile(badPa, 'portLevel: { "70000": PERMISSIVE }\n');
  const bad = await run(['set', 'peerAuthentication', '-f', badPa, '--topic', 'service/reviews']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /peerAuthentication\/portLevel\/70000/);
  assert.deepEqual(JSON.parse((await run(['get', 'peerAuthentication', '--topic', 'service/reviews'])).stdout), { mode: 'STRICT', portLevel: { 9090: 'PERMISSIVE' } });

  // Refused by the CLI with exit 2, before anything is sent: unknown type, bad topic, no file,
  // a file that does not parse (named), a scalar value, and the manager-kept revocation list.
  const unparsable = join(dataDir, 'broken.yaml');
  await writeFile(unparsable, 'mode: [STRICT\n');
  const scalar = join(dataDir, 'scalar.yaml');
  await writeFile(scalar, 'STRICT\n');
  for (const [args, why] of [
    [['set', 'nosuch', '-f', pa], /unknown resource type 'nosuch'/],
    [['set', 'peerAuthentication', '-f', pa, '--topic', 'pods/x'], /--topic 'pods\/x'/],
    [['set', 'routes'], /set needs the new value: -f FILE/],
    [['set', 'routes', '-f', join(dataDir, 'missing.yaml')], /missing\.yaml: \(root\)|missing\.yaml: \/: cannot read: ENOENT/],
    [['set', 'peerAuthentication', '-f', unparsable], /broken\.yaml.*cannot parse/],
    [['set', 'peerAuthentication', '-f', scalar], /scalar\.yaml.*must be a list or an object/],
  ] as Array<[string[], RegExp]>) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, why);
  }
  const revoked = await run(['set', 'revoked', '-f', pa]);
  assert.notEqual(revoked.code, 0);
  assert.match(revoked.stderr, /etz revoke|DELETE \/v1\/sidecars/);

  const cleared = await run(['clear', 'peerAuthentication', '--topic', 'service/reviews']);
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.match(cleared.stdout, /^cleared peerAuthentication on service\/reviews: config version \d+\n$/);
  assert.deepEqual(JSON.parse((await run(['get', 'peerAuthentication', '--topic', 'service/reviews'])).stdout), []);

  const audit = await etz(['audit', '--limit', '10', '--data-dir', dataDir]);
  assert.equal((audit.stdout.match(/resources\.set\s+ok\s+\S+/g) ?? []).length, 2, audit.stdout);
});
