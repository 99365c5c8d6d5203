import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadPolicyFiles } from '../../src/policy/load.js';
import { lintPolicies } from '../../src/policy/lint.js';
import { AuthorizationEngine } from '../../src/policy/engine.js';
import { NetworkPolicyEngine } from '../../src/policy/network.js';

// The documented examples in config/policies load, lint clean together, and do what they say.

const DIR = fileURLToPath(new URL('../../../config/policies/', import.meta.url));
const PP = 'spiffe://etz.local/ns/default/sa/productpage';

test('config/policies: every example loads and the set has no conflicts', async () => {
  const files = (await readdir(DIR)).filter((f) => f.endsWith('.yaml')).map((f) => join(DIR, f));
  assert.ok(files.length >= 4);
  const docs = await loadPolicyFiles(files);
  assert.deepEqual(lintPolicies(docs), []);

  const authz = new AuthorizationEngine(docs);
  const base = { destService: 'reviews', sourcePrincipal: PP, method: 'GET', path: '/reviews/1', port: 9080 };
  assert.equal(authz.evaluate(base).allowed, true);
  assert.equal(authz.evaluate({ ...base, sourcePrincipal: undefined }).by?.policy, 'deny-unauthenticated');
  assert.equal(authz.evaluate({ ...base, path: '/admin/x' }).by?.policy, 'deny-admin');
  assert.equal(authz.evaluate({ ...base, sourcePrincipal: 'spiffe://etz.local/ns/default/sa/details', requestPrincipal: 'jason' }).by?.rule, 1);
  assert.deepEqual(authz.evaluate({ ...base, destService: 'ratings', sourcePrincipal: 'spiffe://etz.local/ns/default/sa/reviews', method: 'POST', path: '/ratings/1' }).audits, [
    { policy: 'audit-rating-writes', rule: 0 },
  ]);
  assert.equal(authz.evaluate({ ...base, destService: 'payments', destZones: ['zone-7f3a', 'isolation'] }).allowed, false);
  assert.equal(authz.evaluate({ ...base, destService: 'details', method: 'POST', sourceZones: ['containment'] }).by?.policy, 'contained-callers-read-only');

  const net = new NetworkPolicyEngine(docs);
  const target = { service: 'reviews', namespace: 'default' };
  assert.equal(net.evaluate({ direction: 'ingress', target, sourcePrincipal: PP, port: 9080 }).allowed, true);
  assert.equal(net.evaluate({ direction: 'egress', target, destHost: 'storage.googleapis.com', port: 443 }).allowed, true);
  assert.equal(net.evaluate({ direction: 'egress', target, destHost: 'pastebin.example', port: 443 }).allowed, false);
  assert.equal(net.evaluate({ direction: 'egress', target: { service: 'details' }, destHost: 'pastebin.example', port: 443 }).basis, 'external-default');
});
