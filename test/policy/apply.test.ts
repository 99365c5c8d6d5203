import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestManager } from '../manager/helpers.js';

// `etz policy apply` against a real zone manager (HTTPS API, admin token from its data dir).

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function etz(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ETZ_LOG_LEVEL: 'silent' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const doc = (name: string, action: string, rule: string) => `apiVersion: etz.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name} }
spec:
  selector: { service: reviews }
  action: ${action}
  rules:
  - ${rule}
`;

let mgr: Awaited<ReturnType<typeof startTestManager>>;
let dir: string;

before(async () => {
  mgr = await startTestManager();
  dir = await mkdtemp(join(tmpdir(), 'etz-policy-apply-'));
  await writeFile(join(dir, 'allow.yaml'), doc('allow-pp', 'ALLOW', 'from: [{ principals: ["spiffe://etz.local/ns/default/sa/productpage"] }]'));
  await writeFile(join(dir, 'deny.yaml'), doc('deny-pp', 'DENY', 'from: [{ principals: ["spiffe://etz.local/ns/default/sa/productpage"] }]'));
  await writeFile(join(dir, 'admin.yaml'), doc('deny-admin', 'DENY', 'to: [{ paths: ["/admin/*"] }]'));
});

after(async () => {
  await mgr?.close();
  await rm(dir, { recursive: true, force: true });
});

test('apply stores policies; a set that conflicts with what the manager holds is refused unless --force', async () => {
  const ok = await etz('policy', 'apply', '-f', join(dir, 'allow.yaml'), '-d', mgr.dataDir);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^applied allow-pp \(config version \d+\)/);
  const held = await mgr.admin.call<{ items: { metadata: { name: string } }[] }>('GET', '/v1/policies');
  assert.deepEqual(held.items.map((d) => d.metadata.name), ['allow-pp']);

  const refused = await etz('policy', 'apply', '-f', join(dir, 'deny.yaml'), '-d', mgr.dataDir);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /\[contradiction\] policy allow-pp rules\[0\] \(ALLOW\) contradicts policy deny-pp rules\[0\] \(DENY\).*ETZ_ERR_POLICY_CONFLICT/s);
  const still = await mgr.admin.call<{ items: unknown[] }>('GET', '/v1/policies');
  assert.equal(still.items.length, 1, 'nothing applied');

  const unrelated = await etz('policy', 'apply', '-f', join(dir, 'admin.yaml'), '-d', mgr.dataDir);
  assert.equal(unrelated.code, 0, unrelated.stderr);

  const forced = await etz('policy', 'apply', '-f', join(dir, 'deny.yaml'), '--force', '-d', mgr.dataDir);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stderr, /applying despite conflict \[contradiction\]/);
  const after = await mgr.admin.call<{ items: { metadata: { name: string } }[] }>('GET', '/v1/policies');
  assert.deepEqual(after.items.map((d) => d.metadata.name).sort(), ['allow-pp', 'deny-admin', 'deny-pp']);
});

test('check without -f explains against the policies in force in the manager', async () => {
  const pp = 'spiffe://etz.local/ns/default/sa/productpage';
  const r = await etz('policy', 'check', '--from', pp, '--to', 'reviews', '--method', 'GET', '--path', '/reviews/1', '-d', mgr.dataDir);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^DENY: denied by policy deny-pp rule 0 \(DENY\)/);
  assert.match(r.stdout, /allow-pp\s+ALLOW\s+rule 0: MATCHED/);
});

test('the API itself refuses a conflicting set with 409 unless ?force=true, whatever the client', async () => {
  const pp = 'spiffe://etz.local/ns/default/sa/productpage';
  const items = [
    { apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'api-allow' }, spec: { selector: { service: 'ratings' }, action: 'ALLOW', rules: [{ from: [{ principals: [pp] }] }] } },
    { apiVersion: 'etz.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'api-deny' }, spec: { selector: { service: 'ratings' }, action: 'DENY', rules: [{ from: [{ principals: [pp] }] }] } },
  ];
  const before = (await mgr.admin.call<{ items: unknown[] }>('GET', '/v1/policies')).items.length;
  await assert.rejects(mgr.admin.call('POST', '/v1/policies', { items }), (err: Error & { code?: string; status?: number }) => {
    assert.match(`${err.message} ${err.code ?? ''} ${err.status ?? ''}`, /ETZ_ERR_POLICY_CONFLICT|409/);
    return true;
  });
  assert.equal((await mgr.admin.call<{ items: unknown[] }>('GET', '/v1/policies')).items.length, before, 'nothing stored');
  const forced = await mgr.admin.call<{ applied: string[]; conflicts: number }>('POST', '/v1/policies?force=true', { items });
  assert.deepEqual(forced.applied, ['api-allow', 'api-deny']);
  assert.ok(forced.conflicts >= 1);
});
