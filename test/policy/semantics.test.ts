import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LRUCache } from 'lru-cache';
import { AuthorizationEngine } from '../../src/policy/engine.js';
import type { AuthzDecision } from '../../src/policy/types.js';
import { ATTACKER, PRODUCTPAGE, authz, defaults, req, set } from './helpers.js';

// One test per row of the semantics table in docs/policy.md (same numbering).

const allowProductpage = authz('reviews-viewer', {
  selector: { service: 'reviews' },
  action: 'ALLOW',
  rules: [{ from: [{ principals: [PRODUCTPAGE] }], to: [{ methods: ['GET'] }] }],
});
const denyAdmin = authz('deny-admin', {
  selector: { service: 'reviews' },
  action: 'DENY',
  rules: [{ to: [{ paths: ['/admin/*'] }] }],
});

describe('authorization semantics table', () => {
  test('1: no policy selects the workload → default action ALLOW', () => {
    const e = new AuthorizationEngine(set(allowProductpage));
    const d = e.evaluate(req({ destService: 'ratings', sourcePrincipal: ATTACKER }));
    assert.equal(d.allowed, true);
    assert.equal(d.basis, 'default');
    assert.match(d.reason, /no ALLOW policy selects ratings/);
  });

  test('2: no policy selects the workload, mesh default DENY → DENY', () => {
    const e = new AuthorizationEngine(set(allowProductpage, defaults({ authorization: 'DENY' })));
    const d = e.evaluate(req({ destService: 'ratings' }));
    assert.equal(d.allowed, false);
    assert.equal(d.basis, 'default');
    assert.match(d.reason, /default action DENY/);
    // The ALLOW policy still allows what it names.
    assert.equal(e.evaluate(req()).allowed, true);
  });

  test('3: a matching DENY denies, even when an ALLOW rule also matches', () => {
    const e = new AuthorizationEngine(set(allowProductpage, denyAdmin));
    const d = e.evaluate(req({ path: '/admin/users' }));
    assert.equal(d.allowed, false);
    assert.equal(d.basis, 'deny-rule');
    assert.deepEqual(d.by, { policy: 'deny-admin', rule: 0 });
    assert.match(d.reason, /deny-admin rule 0/);
  });

  test('4: DENY policies that do not match, no ALLOW policy → default ALLOW', () => {
    const e = new AuthorizationEngine(set(denyAdmin));
    const d = e.evaluate(req({ path: '/reviews/2' }));
    assert.equal(d.allowed, true);
    assert.equal(d.basis, 'default');
    assert.equal(e.evaluate(req({ path: '/admin/x' })).allowed, false);
  });

  test('5: an ALLOW policy selects the workload and one of its rules matches → ALLOW', () => {
    const e = new AuthorizationEngine(set(allowProductpage));
    const d = e.evaluate(req());
    assert.equal(d.allowed, true);
    assert.equal(d.basis, 'allow-rule');
    assert.deepEqual(d.by, { policy: 'reviews-viewer', rule: 0 });
  });

  test('6: ALLOW policies select the workload but none matches → DENY', () => {
    const e = new AuthorizationEngine(set(allowProductpage));
    const byOther = e.evaluate(req({ sourcePrincipal: ATTACKER }));
    assert.equal(byOther.allowed, false);
    assert.equal(byOther.basis, 'no-allow-match');
    assert.match(byOther.reason, /reviews-viewer/);
    assert.equal(e.evaluate(req({ method: 'POST' })).allowed, false, 'the rule allows GET only');
  });

  test('7: an ALLOW policy without rules allows nothing', () => {
    const e = new AuthorizationEngine(set(authz('allow-nothing', { selector: { service: 'reviews' }, action: 'ALLOW' })));
    assert.equal(e.evaluate(req()).allowed, false);
    assert.equal(e.evaluate(req({ destService: 'ratings' })).allowed, true, 'other workloads are not selected');
  });

  test('8: an ALLOW policy with an empty rule allows everything, even under default DENY', () => {
    const e = new AuthorizationEngine(set(authz('allow-all', { selector: { service: 'reviews' }, rules: [{}] }), defaults({ authorization: 'DENY' })));
    assert.equal(e.evaluate(req({ sourcePrincipal: undefined, method: 'DELETE' })).allowed, true);
    assert.equal(e.evaluate(req({ destService: 'ratings' })).allowed, false);
  });

  test('9: a DENY policy with an empty rule denies everything; without rules it denies nothing', () => {
    const denyAll = new AuthorizationEngine(set(authz('deny-all', { selector: { service: 'reviews' }, action: 'DENY', rules: [{}] }), allowProductpage));
    assert.equal(denyAll.evaluate(req()).allowed, false);
    const denyNothing = new AuthorizationEngine(set(authz('deny-nothing', { selector: { service: 'reviews' }, action: 'DENY' })));
    assert.equal(denyNothing.evaluate(req()).allowed, true);
  });

  test('10: a matching AUDIT policy is recorded and never changes the decision', () => {
    const audit = authz('audit-writes', { selector: { service: 'reviews' }, action: 'AUDIT', rules: [{ to: [{ methods: ['POST', 'PUT'] }] }] });
    const allowed = new AuthorizationEngine(set(audit)).evaluate(req({ method: 'POST' }));
    assert.equal(allowed.allowed, true);
    assert.deepEqual(allowed.audits, [{ policy: 'audit-writes', rule: 0 }]);
    const denied = new AuthorizationEngine(set(audit, allowProductpage)).evaluate(req({ method: 'POST' }));
    assert.equal(denied.allowed, false);
    assert.deepEqual(denied.audits, [{ policy: 'audit-writes', rule: 0 }]);
    assert.deepEqual(new AuthorizationEngine(set(audit)).evaluate(req({ method: 'GET' })).audits, []);
  });

  test('11: a policy whose selector does not match the destination version is ignored', () => {
    const v2only = authz('v2-only', { selector: { service: 'reviews', version: 'v2' }, rules: [{ from: [{ principals: [PRODUCTPAGE] }] }] });
    const e = new AuthorizationEngine(set(v2only));
    assert.equal(e.evaluate(req({ destVersion: 'v1', sourcePrincipal: ATTACKER })).basis, 'default');
    assert.equal(e.evaluate(req({ destVersion: 'v2', sourcePrincipal: ATTACKER })).allowed, false);
    assert.equal(e.evaluate(req({ destVersion: 'v2' })).allowed, true);
  });

  test('12: a zone selector applies while the destination is in that zone', () => {
    const isolate = authz('isolation-payments', { selector: { zone: 'iso-payments' }, rules: [{ from: [{ principals: ['spiffe://etz.local/ns/default/sa/checkout'] }] }] });
    const e = new AuthorizationEngine(set(isolate));
    assert.equal(e.evaluate(req({ destZones: [] })).allowed, true);
    assert.equal(e.evaluate(req({ destZones: ['iso-payments'] })).allowed, false);
    assert.equal(e.evaluate(req({ destZones: ['iso-payments'], sourcePrincipal: 'spiffe://etz.local/ns/default/sa/checkout' })).allowed, true);
  });

  test('13: a policy without selector applies mesh-wide', () => {
    const meshDeny = authz('deny-rogue-ns', { action: 'DENY', rules: [{ from: [{ namespaces: ['rogue'] }] }] });
    const e = new AuthorizationEngine(set(meshDeny, allowProductpage));
    for (const svc of ['reviews', 'ratings', 'details']) {
      const d = e.evaluate(req({ destService: svc, sourcePrincipal: ATTACKER }));
      assert.equal(d.allowed, false, svc);
      assert.equal(d.by?.policy, 'deny-rogue-ns');
    }
    assert.equal(e.evaluate(req({ destService: 'ratings' })).allowed, true);
  });

  test('14: positive fields need the attribute (plaintext has no principal); not-forms match its absence', () => {
    const anyIdentity = authz('authenticated-only', { selector: { service: 'reviews' }, rules: [{ from: [{ principals: ['*'] }] }] });
    const e = new AuthorizationEngine(set(anyIdentity));
    assert.equal(e.evaluate(req({ sourcePrincipal: undefined })).allowed, false);
    assert.equal(e.evaluate(req({ sourcePrincipal: ATTACKER })).allowed, true);
    const denyPlain = authz('deny-plaintext', { selector: { service: 'reviews' }, action: 'DENY', rules: [{ from: [{ notPrincipals: ['*'] }] }] });
    const e2 = new AuthorizationEngine(set(denyPlain));
    assert.equal(e2.evaluate(req({ sourcePrincipal: undefined })).allowed, false);
    assert.equal(e2.evaluate(req()).allowed, true);
  });

  test('15: within a rule from, to and when must all match; the entries of a list are alternatives', () => {
    const p = authz('combo', {
      selector: { service: 'reviews' },
      rules: [
        {
          from: [{ principals: [PRODUCTPAGE] }, { namespaces: ['ops'], ipBlocks: ['10.9.0.0/16'] }],
          to: [{ methods: ['GET'], paths: ['/reviews/*'] }, { methods: ['POST'], paths: ['/reviews/*/vote'] }],
          when: [{ header: 'x-tenant', values: ['acme', 'globex*'] }],
        },
      ],
    });
    const e = new AuthorizationEngine(set(p));
    const ok = { headers: { 'x-tenant': 'acme' } };
    assert.equal(e.evaluate(req(ok)).allowed, true);
    assert.equal(e.evaluate(req({ headers: { 'x-tenant': 'initech' } })).allowed, false, 'when fails');
    assert.equal(e.evaluate(req({ headers: {} })).allowed, false, 'header absent');
    assert.equal(e.evaluate(req({ ...ok, headers: { 'x-tenant': 'globex-eu' } })).allowed, true, 'prefix glob');
    assert.equal(e.evaluate(req({ ...ok, method: 'POST', path: '/reviews/1/vote' })).allowed, true, 'second operation');
    assert.equal(e.evaluate(req({ ...ok, method: 'POST', path: '/reviews/1' })).allowed, false, 'method of one operation, path of another');
    const ops = 'spiffe://etz.local/ns/ops/sa/debug';
    assert.equal(e.evaluate(req({ ...ok, sourcePrincipal: ops, sourceIp: '10.9.3.4' })).allowed, true, 'second source');
    assert.equal(e.evaluate(req({ ...ok, sourcePrincipal: ops, sourceIp: '10.8.3.4' })).allowed, false, 'fields of one source are ANDed');
  });

  test('16: not-forms exclude within a positive match (notPaths, notMethods, notIpBlocks)', () => {
    const p = authz('most-of-api', {
      selector: { service: 'reviews' },
      rules: [{ from: [{ ipBlocks: ['10.0.0.0/8'], notIpBlocks: ['10.66.0.0/16'] }], to: [{ paths: ['/reviews/*'], notPaths: ['/reviews/internal/*'], notMethods: ['DELETE'] }] }],
    });
    const e = new AuthorizationEngine(set(p));
    assert.equal(e.evaluate(req()).allowed, true);
    assert.equal(e.evaluate(req({ path: '/reviews/internal/dump' })).allowed, false);
    assert.equal(e.evaluate(req({ method: 'DELETE' })).allowed, false);
    assert.equal(e.evaluate(req({ sourceIp: '10.66.1.1' })).allowed, false);
    assert.equal(e.evaluate(req({ sourceIp: '::ffff:10.1.1.1' })).allowed, true, 'IPv4-mapped IPv6 source');
  });

  test('17: end-user principals, source zones and condition keys', () => {
    const p = authz('jason-only', {
      selector: { service: 'reviews' },
      rules: [{ from: [{ requestPrincipals: ['jason'], notZones: ['containment-1'] }], when: [{ key: 'destination.port', values: ['9080'] }] }],
    });
    const e = new AuthorizationEngine(set(p));
    assert.equal(e.evaluate(req({ requestPrincipal: 'jason' })).allowed, true);
    assert.equal(e.evaluate(req({ requestPrincipal: 'mallory' })).allowed, false);
    assert.equal(e.evaluate(req({ requestPrincipal: 'jason', sourceZones: ['containment-1'] })).allowed, false);
    assert.equal(e.evaluate(req({ requestPrincipal: 'jason', port: 9443 })).allowed, false);
  });
});

describe('decision cache', () => {
  test('a new policy version never reuses a decision of the old one, even with a shared cache', () => {
    const cache = new LRUCache<string, AuthzDecision>({ max: 100 });
    const v1 = new AuthorizationEngine(set(allowProductpage), { version: 1, cache });
    assert.equal(v1.evaluate(req()).allowed, true);
    assert.equal(v1.evaluate(req()).allowed, true);
    assert.equal(v1.stats.hits, 1);
    const v2 = new AuthorizationEngine(set(allowProductpage, authz('deny-pp', { selector: { service: 'reviews' }, action: 'DENY', rules: [{ from: [{ principals: [PRODUCTPAGE] }] }] })), {
      version: 2,
      cache,
    });
    assert.equal(v2.evaluate(req()).allowed, false);
    assert.equal(v2.stats.hits, 0);
  });

  test('the cache is bounded and keyed only on attributes the policies read', () => {
    const e = new AuthorizationEngine(set(allowProductpage), { cacheMax: 50 });
    for (let i = 0; i < 500; i++) e.evaluate(req({ path: `/reviews/${i}` }));
    // No rule names a path: all 500 requests share one entry.
    assert.equal(e.stats.cached, 1);
    assert.equal(e.stats.hits, 499);
    const byPath = new AuthorizationEngine(set(denyAdmin), { cacheMax: 50 });
    for (let i = 0; i < 500; i++) byPath.evaluate(req({ path: `/reviews/${i}` }));
    assert.equal(byPath.stats.cached, 50, 'bounded by max');
  });

  test('cached and uncached decisions agree', () => {
    const e = new AuthorizationEngine(set(allowProductpage, denyAdmin));
    const cases = [req(), req({ path: '/admin/a' }), req({ sourcePrincipal: ATTACKER }), req({ method: 'PUT' }), req({ destService: 'x' })];
    for (let round = 0; round < 3; round++) for (const c of cases) assert.deepEqual(e.evaluate(c), e.decide(c));
  });
});

describe('connection admission', () => {
  test('closes only when no request from that peer could be allowed', () => {
    const e = new AuthorizationEngine(set(allowProductpage, denyAdmin));
    assert.equal(e.admits({ destService: 'reviews', sourcePrincipal: PRODUCTPAGE }), true, 'GETs still allowed');
    assert.equal(e.admits({ destService: 'reviews', sourcePrincipal: ATTACKER }), false, 'no ALLOW rule can match');
    assert.equal(e.admits({ destService: 'ratings', sourcePrincipal: ATTACKER }), true, 'not selected');
    const denyNs = new AuthorizationEngine(set(authz('deny-rogue', { action: 'DENY', rules: [{ from: [{ namespaces: ['rogue'] }] }] })));
    assert.equal(denyNs.admits({ destService: 'reviews', sourcePrincipal: ATTACKER }), false);
    const denyRogueWrites = new AuthorizationEngine(set(authz('deny-rogue-w', { action: 'DENY', rules: [{ from: [{ namespaces: ['rogue'] }], to: [{ methods: ['POST'] }] }] })));
    assert.equal(denyRogueWrites.admits({ destService: 'reviews', sourcePrincipal: ATTACKER }), true, 'GETs from rogue still allowed');
  });
});

describe('validation', () => {
  test('errors name the field and the reason', async () => {
    const { ConfigError } = await import('../../src/core/errors.js');
    const bad = (doc: unknown, field: RegExp, reason: RegExp) =>
      assert.throws(
        () => set(doc as never),
        (err: unknown) => err instanceof ConfigError && field.test(err.field) && reason.test(err.reason),
      );
    bad(authz('x', { rules: [{ from: [{ principals: ['cluster.local/ns/default/sa/pp'] }] }] }), /^\/spec\/rules\/0\/from\/0\/principals\/0$/, /not a SPIFFE ID \(write spiffe:\/\/cluster/);
    bad(authz('x', { rules: [{ from: [{ ipBlocks: ['10.0.0.0/33'] }] }] }), /ipBlocks\/0$/, /not a valid IP address or CIDR/);
    bad(authz('x', { rules: [{ when: [{ key: 'request.auth.claims[groups]', values: ['a'] }] }] }), /when\/0\/key$/, /unknown key/);
    bad(authz('x', { rules: [{ to: [{}] }] }), /to\/0$/, /at least one field/);
    bad({ ...authz('x', {}), spec: { action: 'REJECT' } }, /^\/spec\/action$/, /must be one of/);
    bad({ ...authz('x', {}), spec: { rules: [{ from: [{ principal: ['a'] }] }] } }, /from\/0\/principal$/, /not a known field/);
    bad({ ...authz('x', {}), kind: 'Policy' }, /^\/kind$/, /must be one of/);
    assert.throws(() => set(authz('same', {}), authz('same', {})), (err: unknown) => err instanceof ConfigError && /duplicate AuthorizationPolicy name 'same'/.test(err.reason) && err.field === '/1/metadata/name');
  });
});
