import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

// `etz policy …` as a user runs it: a real child process, real files, exit statuses and output.

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function etz(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ETZ_LOG_LEVEL: 'silent' } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const POLICIES = `apiVersion: etz.io/v1
kind: AuthorizationPolicy
metadata: { name: reviews-viewer }
spec:
  selector: { service: reviews }
  rules:
  - from: [{ principals: ["spiffe://etz.local/ns/default/sa/productpage"] }]
    to: [{ methods: [GET], paths: ["/reviews/*"] }]
  - from: [{ requestPrincipals: [jason] }]
---
apiVersion: etz.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin }
spec:
  selector: { service: reviews }
  action: DENY
  rules:
  - to: [{ paths: ["/admin/*"] }]
`;

describe('etz policy', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etz-policy-cli-'));
    await writeFile(join(dir, 'ok.yaml'), POLICIES);
    await writeFile(join(dir, 'conflict.yaml'), `${POLICIES}  - to: [{ paths: ["/admin/users"] }]\n`);
    await writeFile(join(dir, 'bad.yaml'), POLICIES.replace('action: DENY', 'action: REJECT'));
    await writeFile(
      join(dir, 'istio.yaml'),
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings-reader, namespace: default }
spec:
  selector: { matchLabels: { app: ratings } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/reviews"] } }]
    to: [{ operation: { methods: ["GET"] } }]
`,
    );
    await writeFile(join(dir, 'custom.yaml'), `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ext }\nspec: { action: CUSTOM, provider: { name: opa } }\n`);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('lint: clean set exits 0; conflicts exit 1 and name the clashing rules; --json', async () => {
    const ok = await etz('policy', 'lint', join(dir, 'ok.yaml'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /2 documents: no conflicts/);
    const bad = await etz('policy', 'lint', join(dir, 'conflict.yaml'));
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /conflict \[shadowed\] policy deny-admin rules\[1\] \(DENY\) is shadowed by an earlier broader rule, policy deny-admin rules\[0\]/);
    const json = await etz('policy', 'lint', '--json', join(dir, 'conflict.yaml'));
    const parsed = JSON.parse(json.stdout) as { conflicts: { kind: string; rule: { rule: string }; with: { rule: string } }[] };
    assert.deepEqual(parsed.conflicts.map((c) => [c.kind, c.rule.rule, c.with.rule]), [['shadowed', 'rules[1]', 'rules[0]']]);
  });

  test('lint: an invalid file exits 2 naming file, field and reason', async () => {
    const r = await etz('policy', 'lint', join(dir, 'bad.yaml'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /invalid config: .*bad\.yaml: \/1\/spec\/action: must be one of "ALLOW", "DENY", "AUDIT"/);
  });

  test('check: prints the decision and the deciding policy and rule; exit 0 allowed, 1 denied', async () => {
    const allowed = await etz('policy', 'check', '-f', join(dir, 'ok.yaml'), '--from', 'spiffe://etz.local/ns/default/sa/productpage', '--to', 'reviews', '--method', 'GET', '--path', '/reviews/1');
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^ALLOW: allowed by policy reviews-viewer rule 0/);
    const jason = await etz('policy', 'check', '-f', join(dir, 'ok.yaml'), '--from', 'spiffe://etz.local/ns/x/sa/y', '--to', 'reviews', '--path', '/reviews/1', '--principal', 'jason');
    assert.equal(jason.code, 0);
    assert.match(jason.stdout, /decided by: policy reviews-viewer rule 1/);
    const denied = await etz('policy', 'check', '-f', join(dir, 'ok.yaml'), '--from', 'spiffe://etz.local/ns/default/sa/productpage', '--to', 'reviews', '--path', '/admin/x', '--json');
    assert.equal(denied.code, 1);
    const j = JSON.parse(denied.stdout) as { decision: string; policy: string; rule: number };
    assert.deepEqual([j.decision, j.policy, j.rule], ['DENY', 'deny-admin', 0]);
    const usage = await etz('policy', 'check', '-f', join(dir, 'ok.yaml'), '--from', 'productpage', '--to', 'reviews');
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /SPIFFE ID/);
  });

  test('check --network: ingress and egress decisions name the network policy; exit 0 / 1', async () => {
    const net = fileURLToPath(new URL('../../../config/policies/network.yaml', import.meta.url));
    const inOk = await etz('policy', 'check', '-f', net, '--network', 'ingress', '--to', 'reviews', '--from', 'spiffe://etz.local/ns/default/sa/productpage', '--port', '9080');
    assert.equal(inOk.code, 0, inOk.stderr);
    assert.match(inOk.stdout, /decided by: network policy reviews-net ingress rule 0/);
    const exfil = await etz('policy', 'check', '-f', net, '--network', 'egress', '--from-service', 'reviews', '--host', 'pastebin.example', '--port', '443', '--json');
    assert.equal(exfil.code, 1);
    const j = JSON.parse(exfil.stdout) as { decision: string; basis: string; policy: string };
    assert.deepEqual([j.decision, j.basis, j.policy], ['DENY', 'isolated', 'reviews-net']);
    const api = await etz('policy', 'check', '-f', net, '--network', 'egress', '--from-service', 'reviews', '--host', 'api.github.com', '--port', '443');
    assert.equal(api.code, 0);
    assert.equal((await etz('policy', 'check', '-f', net, '--network', 'sideways', '--to', 'x')).code, 2);
  });

  test('import: converts Istio to etz YAML that lints clean; refusals exit 2 naming the field', async () => {
    const out = join(dir, 'imported.yaml');
    const r = await etz('policy', 'import', join(dir, 'istio.yaml'), '-o', out);
    assert.equal(r.code, 0, r.stderr);
    const doc = parse(await readFile(out, 'utf8')) as { kind: string; spec: { selector: unknown; rules: { from: unknown }[] } };
    assert.equal(doc.kind, 'AuthorizationPolicy');
    assert.deepEqual(doc.spec.selector, { service: 'ratings', namespace: 'default' });
    assert.deepEqual(doc.spec.rules[0]!.from, [{ principals: ['spiffe://cluster.local/ns/default/sa/reviews'] }]);
    assert.equal((await etz('policy', 'lint', out)).code, 0);
    const refused = await etz('policy', 'import', join(dir, 'custom.yaml'));
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /custom\.yaml: \/spec\/action: CUSTOM .*ETZ_ERR_POLICY_IMPORT/);
    assert.equal(refused.stdout, '');
  });
});
