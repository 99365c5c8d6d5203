import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MIN, T0, Trace, mesh, type Rec } from './trace.js';
import { ofKind, runTrace } from './run.js';

// What the mesh itself decided (a zone refusing a call, an upstream the sidecar could not use) is
// not held against the end user whose request met it, nor against the services further up that
// request's call chain. The sidecar names its local reply in the record's `reason`.

const pp = { service: 'productpage', version: 'v1', instance: 'productpage-v1-0' };

/** One page view that ends in a 403 somewhere down the chain, with or without the mesh's reason. */
function deniedView(t: Trace, ts: number, user: string, reason: string | undefined): void {
  const id = t.nextId('denied');
  const r = reason === undefined ? {} : { reason, decision: 'deny' };
  // reviews-v2's sidecar refuses its call to ratings (a containment zone)...
  t.add({ ts, source: { service: 'reviews', version: 'v2', instance: 'reviews-v2-0' }, destination: { service: 'ratings' }, principal: user, method: 'GET', path: '/ratings/0', status: 403, durationMs: 1, requestId: id, ...r });
  // ...and the applications pass the refusal up the chain.
  t.add({ ts: ts + 1, source: pp, destination: { service: 'reviews', version: 'v2', instance: 'reviews-v2-0' }, principal: user, method: 'GET', path: '/reviews/0', status: 403, durationMs: 3, requestId: id });
  t.add({ ts: ts + 2, source: { service: 'ingress', ip: '198.51.100.7' }, destination: pp, principal: user, method: 'GET', path: '/productpage', status: 403, durationMs: 5, requestId: id });
}

function withDenials(reason: string | undefined) {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 8 * MIN, rate: 3 });
  // alice opens 15 pages within a minute, every one of which meets the refusal: more than the 10
  // auth failures a minute the credential-stuffing rule allows.
  for (let i = 0; i < 15; i++) deniedView(t, T0 + 5 * MIN + i * 3000, 'alice', reason);
  return runTrace(t.sorted(), { risk: { principals: { scraping: { maxRequests: 100 } } } });
}

test('a zone\'s 403 further down a user\'s call chain does not count as that user\'s auth failure', () => {
  const { events, engine } = withDenials('ETZ_ERR_ZONE_DENIED');
  assert.deepEqual(ofKind(events, 'principal.flagged').map((e) => [e.principal, e.action]), []);
  assert.equal(engine.flaggedPrincipals().length, 0);
});

test('the same 403s refusing the user\'s own requests (no mesh reason, or an authorization policy) block the user', () => {
  for (const reason of [undefined, 'ETZ_ERR_POLICY_DENIED']) {
    const { events } = withDenials(reason);
    const flagged = ofKind(events, 'principal.flagged').map((e) => [e.principal, e.action]);
    assert.deepEqual(flagged, [['alice', 'block']], String(reason));
  }
});

/**
 * From minute 6 every call reviews makes to ratings is refused by its sidecar, and the pages fail:
 * reviews answers 503, productpage answers 503. `reason` says whether the sidecar reported why.
 */
function downstreamZone(reason: string | undefined): Rec[] {
  const t = new Trace();
  mesh(t, { from: T0, to: T0 + 6 * MIN, rate: 4 });
  mesh(t, { from: T0 + 6 * MIN, to: T0 + 9 * MIN, rate: 0.5, seed: 11 });
  for (let ts = T0 + 6 * MIN; ts < T0 + 9 * MIN; ts += 250) {
    const id = t.nextId('page');
    const user = `user${ts % 97}`;
    t.add({ ts, source: { service: 'reviews', version: 'v2', instance: 'reviews-v2-0' }, destination: { service: 'ratings' }, principal: user, method: 'GET', path: '/ratings/0', status: 403, durationMs: 1, requestId: id, ...(reason ? { reason, decision: 'deny' } : {}) });
    t.add({ ts: ts + 1, source: pp, destination: { service: 'reviews', version: 'v2', instance: 'reviews-v2-0' }, principal: user, method: 'GET', path: '/reviews/0', status: 503, durationMs: 4, requestId: id });
    t.add({ ts: ts + 2, source: pp, destination: { service: 'details', version: 'v1', instance: 'details-v1-0' }, principal: user, method: 'GET', path: '/details/0', status: 200, durationMs: 3, bytesOut: 190, requestId: id });
    t.add({ ts: ts + 3, source: { service: 'ingress', ip: '198.51.100.9' }, destination: pp, principal: user, method: 'GET', path: '/productpage', status: 503, durationMs: 8, bytesOut: 200, requestId: id });
  }
  return t.sorted();
}

test('errors caused by a mesh decision downstream do not raise the callers\' risk, and the explanation says why', () => {
  const config = { risk: { principals: { scraping: { enabled: false } } } };
  const quiet = runTrace(downstreamZone('ETZ_ERR_ZONE_DENIED'), config);
  const hot = (events: typeof quiet.events, svc: string) => ofKind(events, 'risk').filter((e) => e.subject.kind === 'service' && (e.subject as { service: string }).service === svc && e.level !== 'low');
  assert.deepEqual(hot(quiet.events, 'productpage').map((e) => [e.score, e.reasons.map((r) => r.detail)]), []);
  assert.deepEqual(ofKind(quiet.events, 'zone.created').filter((e) => e.zone.origin === 'risk').map((e) => e.zone.members), []);
  const ex = quiet.engine.explain('service:productpage')!;
  assert.ok(ex.reasons.some((r) => r.detector === 'attribution' && /mesh decision further down the call chain/.test(r.detail)), JSON.stringify(ex.reasons));
  assert.equal(ex.features!.errorRate, 0);

  // Control: without the sidecar's reason the same failures are productpage's own errors.
  const loud = runTrace(downstreamZone(undefined), config);
  assert.ok(hot(loud.events, 'productpage').length > 0, 'productpage scores its own 5xx');
});
