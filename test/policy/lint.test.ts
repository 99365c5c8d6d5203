import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkConflicts, lintPolicies, formatFindings } from '../../src/policy/lint.js';
import { EtzError } from '../../src/core/errors.js';
import { AuthorizationEngine } from '../../src/policy/engine.js';
import { formatExplanation } from '../../src/policy/explain.js';
import { ATTACKER, PRODUCTPAGE, authz, netpol, req, set } from './helpers.js';

const sel = { service: 'reviews' };

describe('conflict detection', () => {
  test('a clean set has no findings', () => {
    const f = lintPolicies(
      set(
        authz('a', { selector: sel, rules: [{ from: [{ principals: [PRODUCTPAGE] }], to: [{ methods: ['GET'] }] }] }),
        authz('b', { selector: sel, action: 'DENY', rules: [{ to: [{ paths: ['/admin/*'] }] }] }),
        authz('c', { selector: { service: 'ratings' }, rules: [{ from: [{ principals: [PRODUCTPAGE] }] }] }),
      ),
    );
    assert.deepEqual(f, []);
    assert.equal(formatFindings(f), 'no conflicts\n');
  });

  test('duplicate rules, within a policy and across policies', () => {
    const rule = { from: [{ principals: [PRODUCTPAGE] }], to: [{ methods: ['GET'], paths: ['/reviews/*'] }] };
    const f = lintPolicies(set(authz('a', { selector: sel, rules: [rule] }), authz('b', { selector: sel, rules: [{ ...rule, to: [{ paths: ['/reviews/*'], methods: ['get'] }] }] })));
    assert.equal(f.length, 1);
    assert.equal(f[0]!.kind, 'duplicate');
    assert.equal(f[0]!.rule.policy, 'b');
    assert.equal(f[0]!.with.policy, 'a');
    const within = lintPolicies(set(authz('x', { selector: sel, rules: [rule, rule] })));
    assert.deepEqual(within.map((x) => [x.kind, x.rule.rule, x.with.rule]), [['duplicate', 'rules[1]', 'rules[0]']]);
  });

  test('a rule shadowed by an earlier broader rule (prefix path, CIDR, glob, mesh-wide selector)', () => {
    const f = lintPolicies(
      set(
        authz('broad', { selector: sel, rules: [{ from: [{ principals: ['spiffe://etz.local/ns/default/*'] }], to: [{ paths: ['/reviews/*'] }] }] }),
        authz('narrow', { selector: { service: 'reviews', version: 'v2' }, rules: [{ from: [{ principals: [PRODUCTPAGE], ipBlocks: ['10.1.0.0/16'] }], to: [{ methods: ['GET'], paths: ['/reviews/1'] }] }] }),
      ),
    );
    assert.equal(f.length, 1);
    assert.equal(f[0]!.kind, 'shadowed');
    assert.equal(f[0]!.rule.policy, 'narrow');
    assert.match(f[0]!.message, /shadowed by an earlier broader rule, policy broad rules\[0\]/);

    const mesh = lintPolicies(
      set(authz('mesh-deny', { action: 'DENY', rules: [{ from: [{ ipBlocks: ['10.0.0.0/8'] }] }] }), authz('svc-deny', { selector: sel, action: 'DENY', rules: [{ from: [{ ipBlocks: ['10.9.9.0/24'] }] }] })),
    );
    assert.deepEqual(mesh.map((x) => [x.kind, x.rule.policy]), [['shadowed', 'svc-deny']]);
  });

  test('not a conflict when the narrower side adds an alternative the broader one lacks', () => {
    const f = lintPolicies(
      set(
        authz('broad', { selector: sel, rules: [{ to: [{ paths: ['/reviews/*'] }] }] }),
        authz('two-ops', { selector: sel, rules: [{ to: [{ paths: ['/reviews/1'] }, { paths: ['/health'] }] }] }),
      ),
    );
    assert.deepEqual(f, []);
  });

  test('an ALLOW rule fully covered by a DENY can never allow', () => {
    const f = lintPolicies(
      set(
        authz('deny-rogue', { action: 'DENY', rules: [{ from: [{ namespaces: ['rogue'] }] }] }),
        authz('allow-miner', { selector: sel, rules: [{ from: [{ principals: [ATTACKER], namespaces: ['rogue'] }], to: [{ methods: ['GET'] }] }] }),
      ),
    );
    assert.equal(f.length, 1);
    assert.equal(f[0]!.kind, 'allow-covered-by-deny');
    assert.equal(f[0]!.rule.policy, 'allow-miner');
    assert.equal(f[0]!.with.policy, 'deny-rogue');
    // The engine agrees: that ALLOW rule never decides.
    const e = new AuthorizationEngine(set(authz('deny-rogue', { action: 'DENY', rules: [{ from: [{ namespaces: ['rogue'] }] }] }), authz('allow-miner', { selector: sel, rules: [{ from: [{ principals: [ATTACKER], namespaces: ['rogue'] }] }] })));
    assert.equal(e.evaluate(req({ sourcePrincipal: ATTACKER })).allowed, false);
  });

  test('contradictory ALLOW and DENY rules for the same selector', () => {
    const rule = { from: [{ principals: [PRODUCTPAGE] }], to: [{ methods: ['DELETE'] }] };
    const f = lintPolicies(set(authz('allow-del', { selector: sel, rules: [rule] }), authz('deny-del', { selector: sel, action: 'DENY', rules: [rule] })));
    assert.equal(f.length, 1);
    assert.equal(f[0]!.kind, 'contradiction');
    assert.match(f[0]!.message, /both allowed and denied/);
  });

  test('not-forms: a DENY excluding a namespace does not cover an ALLOW limited to it', () => {
    const f = lintPolicies(
      set(
        authz('deny-others', { selector: sel, action: 'DENY', rules: [{ from: [{ notNamespaces: ['default'] }] }] }),
        authz('allow-default', { selector: sel, rules: [{ from: [{ namespaces: ['default'] }] }] }),
        authz('allow-rogue', { selector: sel, rules: [{ from: [{ namespaces: ['rogue'] }] }] }),
      ),
    );
    assert.deepEqual(f.map((x) => [x.kind, x.rule.policy]), [['allow-covered-by-deny', 'allow-rogue']]);
  });

  test('network policies: duplicate, shadowed and covered rules per direction', () => {
    const f = lintPolicies(
      set(
        netpol('n1', {
          target: sel,
          ingress: [
            { from: [{ ipBlocks: ['10.0.0.0/8'] }], ports: [{ port: 9000, endPort: 9100 }] },
            { from: [{ ipBlocks: ['10.1.0.0/16'] }], ports: [{ port: 9080 }] },
            { action: 'DENY', from: [{ services: ['miner'] }] },
            { from: [{ services: ['miner'] }] },
          ],
          egress: [{ to: [{ ipBlocks: ['10.1.0.0/16'] }], ports: [{ port: 9080 }] }],
        }),
      ),
    );
    assert.deepEqual(
      f.map((x) => [x.kind, x.rule.rule, x.with.rule]),
      [
        ['shadowed', 'ingress[1]', 'ingress[0]'],
        ['contradiction', 'ingress[3]', 'ingress[2]'],
      ],
    );
  });
});

test('checkConflicts refuses a conflicting set unless forced, naming the clash', () => {
  const rule = { from: [{ principals: [PRODUCTPAGE] }] };
  const docs = set(authz('a', { selector: sel, rules: [rule] }), authz('b', { selector: sel, action: 'DENY', rules: [rule] }));
  assert.throws(
    () => checkConflicts(docs),
    (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_POLICY_CONFLICT' && err.status === 409 && /\[contradiction\] policy a rules\[0\] \(ALLOW\) contradicts policy b rules\[0\] \(DENY\)/.test(err.message),
  );
  assert.equal(checkConflicts(docs, { force: true }).length, 1);
  assert.deepEqual(checkConflicts(set(authz('a', { selector: sel, rules: [rule] }))), []);
});

describe('explain', () => {
  test('names the deciding policy and rule and the field that failed elsewhere', () => {
    const e = new AuthorizationEngine(
      set(
        authz('reviews-viewer', { selector: sel, rules: [{ from: [{ principals: [PRODUCTPAGE] }], to: [{ methods: ['GET'] }] }, { from: [{ requestPrincipals: ['jason'] }] }] }),
        authz('deny-admin', { selector: sel, action: 'DENY', rules: [{ to: [{ paths: ['/admin/*'] }] }] }),
        authz('v3-only', { selector: { service: 'reviews', version: 'v3' }, action: 'DENY', rules: [{}] }),
      ),
    );
    const r = req({ sourcePrincipal: ATTACKER, requestPrincipal: 'jason' });
    const x = e.explain(r);
    assert.equal(x.decision.allowed, true);
    assert.deepEqual(x.decision.by, { policy: 'reviews-viewer', rule: 1 });
    const text = formatExplanation(r, x);
    assert.match(text, /^ALLOW: allowed by policy reviews-viewer rule 1/);
    assert.match(text, /decided by: policy reviews-viewer rule 1/);
    assert.match(text, /reviews-viewer\s+ALLOW\s+rule 0: no match \(rules\[0\]\.from\[0\]\.principals\)/);
    assert.match(text, /deny-admin\s+DENY\s+rule 0: no match \(rules\[0\]\.to\[0\]\.paths\)/);
    assert.match(text, /v3-only\s+DENY\s+not selected \(selector\.version differs\)/);
    const denied = e.explain(req({ path: '/admin/x' }));
    assert.match(formatExplanation(req({ path: '/admin/x' }), denied), /^DENY: denied by policy deny-admin rule 0/);
  });
});
