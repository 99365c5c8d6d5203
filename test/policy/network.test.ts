import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NetworkPolicyEngine, UNKNOWN_ON_INBOUND_CONNECTION, UNKNOWN_ON_OUTBOUND_CONNECTION, type NetRequest } from '../../src/policy/network.js';
import { ATTACKER, PRODUCTPAGE, defaults, netpol, set } from './helpers.js';

const reviews = { service: 'reviews', version: 'v1', namespace: 'default' };
const ingress = (over: Partial<NetRequest> = {}): NetRequest => ({ direction: 'ingress', target: reviews, sourcePrincipal: PRODUCTPAGE, sourceIp: '10.0.0.5', port: 9080, ...over });
const egress = (over: Partial<NetRequest> = {}): NetRequest => ({ direction: 'egress', target: reviews, destService: 'ratings', destHost: 'ratings', port: 9080, ...over });

const reviewsNet = netpol('reviews-net', {
  target: { service: 'reviews' },
  ingress: [
    { from: [{ services: ['productpage'] }], ports: [{ port: 9080 }] },
    { action: 'DENY', from: [{ ipBlocks: ['10.66.0.0/16'] }] },
  ],
  egress: [
    { to: [{ services: ['ratings'] }], ports: [{ port: 9080 }] },
    { to: [{ hosts: ['api.stripe.com', '*.googleapis.com'] }], ports: [{ port: 443 }] },
    { to: [{ ipBlocks: ['203.0.113.0/24'], notIpBlocks: ['203.0.113.66'] }] },
  ],
});

describe('network policy semantics', () => {
  test('no policy governs the target: ingress and in-mesh egress allowed, egress outside the mesh denied', () => {
    const e = new NetworkPolicyEngine(set());
    assert.equal(e.evaluate(ingress({ sourcePrincipal: ATTACKER })).allowed, true);
    assert.equal(e.evaluate(egress()).allowed, true);
    const ext = e.evaluate(egress({ destService: undefined, destHost: 'evil.example' }));
    assert.equal(ext.allowed, false);
    assert.equal(ext.basis, 'external-default');
    assert.match(ext.reason, /evil\.example is outside the mesh/);
  });

  test('defaults are configurable', () => {
    const e = new NetworkPolicyEngine(set(defaults({ ingress: 'DENY', externalEgress: 'ALLOW' })));
    assert.equal(e.evaluate(ingress()).allowed, false);
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: 'example.org' })).allowed, true);
  });

  test('ingress: an ALLOW rule isolates the target; source service and port must match', () => {
    const e = new NetworkPolicyEngine(set(reviewsNet));
    const ok = e.evaluate(ingress());
    assert.equal(ok.allowed, true);
    assert.equal(ok.policy, 'reviews-net');
    assert.equal(ok.rule, 0);
    const other = e.evaluate(ingress({ sourcePrincipal: ATTACKER }));
    assert.equal(other.allowed, false);
    assert.equal(other.basis, 'isolated');
    assert.equal(e.evaluate(ingress({ port: 9443 })).allowed, false);
    assert.equal(e.evaluate(ingress({ target: { service: 'ratings' } })).allowed, true, 'other targets unaffected');
  });

  test('a matching DENY rule wins over an ALLOW rule', () => {
    const d = new NetworkPolicyEngine(set(reviewsNet)).evaluate(ingress({ sourceIp: '10.66.3.3' }));
    assert.equal(d.allowed, false);
    assert.equal(d.basis, 'deny-rule');
    assert.equal(d.rule, 1);
  });

  test('DENY-only rules do not isolate; an empty rule list denies everything', () => {
    const denyOnly = new NetworkPolicyEngine(set(netpol('block-range', { target: { service: 'reviews' }, ingress: [{ action: 'DENY', from: [{ ipBlocks: ['192.0.2.0/24'] }] }] })));
    assert.equal(denyOnly.evaluate(ingress()).allowed, true);
    assert.equal(denyOnly.evaluate(ingress({ sourceIp: '192.0.2.9' })).allowed, false);
    const none = new NetworkPolicyEngine(set(netpol('no-ingress', { target: { service: 'reviews' }, ingress: [] })));
    assert.equal(none.evaluate(ingress()).allowed, false);
    assert.equal(none.evaluate(egress()).allowed, true, 'egress not governed by that policy');
  });

  test('egress: in-mesh services by name, outside hosts by name glob, CIDR with exceptions, ports', () => {
    const e = new NetworkPolicyEngine(set(reviewsNet, defaults({ externalEgress: 'ALLOW' })));
    assert.equal(e.evaluate(egress()).allowed, true);
    assert.equal(e.evaluate(egress({ destService: 'details', destHost: 'details' })).allowed, false, 'isolated egress');
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: 'api.stripe.com', port: 443 })).allowed, true);
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: 'storage.googleapis.com', port: 443 })).allowed, true);
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: 'api.stripe.com', port: 80 })).allowed, false);
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: 'evil.example', port: 443 })).allowed, false, 'isolated: externalEgress ALLOW does not reopen it');
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: '203.0.113.7', destIp: '203.0.113.7' })).allowed, true);
    assert.equal(e.evaluate(egress({ destService: undefined, destHost: '203.0.113.66', destIp: '203.0.113.66' })).allowed, false);
  });

  test('a zone-targeted policy applies while the target is in the zone', () => {
    const e = new NetworkPolicyEngine(set(netpol('contain', { target: { zone: 'containment-7' }, egress: [{ to: [{ services: ['telemetry'] }] }] })));
    assert.equal(e.evaluate(egress()).allowed, true);
    assert.equal(e.evaluate(egress({ target: { ...reviews, zones: ['containment-7'] } })).allowed, false);
    assert.equal(e.evaluate(egress({ target: { ...reviews, zones: ['containment-7'] }, destService: 'telemetry', destHost: 'telemetry' })).allowed, true);
  });

  test('connection admission: certain denials close, uncertain ones do not', () => {
    const e = new NetworkPolicyEngine(set(reviewsNet));
    assert.equal(e.admits(ingress(), UNKNOWN_ON_INBOUND_CONNECTION), true);
    assert.equal(e.admits(ingress({ sourcePrincipal: ATTACKER }), UNKNOWN_ON_INBOUND_CONNECTION), false);
    assert.equal(e.admits(egress({ port: undefined }), UNKNOWN_ON_OUTBOUND_CONNECTION), true);
    // The CIDR rule might match the endpoint address of details, which a connection summary lacks.
    assert.equal(e.admits(egress({ destService: 'details', destHost: 'details', port: undefined }), UNKNOWN_ON_OUTBOUND_CONNECTION), true);
    const byName = new NetworkPolicyEngine(set(netpol('by-name', { target: { service: 'reviews' }, egress: [{ to: [{ services: ['ratings'] }], ports: [{ port: 9080 }] }] })));
    assert.equal(byName.admits(egress({ port: undefined }), UNKNOWN_ON_OUTBOUND_CONNECTION), true);
    assert.equal(byName.admits(egress({ destService: 'details', destHost: 'details', port: undefined }), UNKNOWN_ON_OUTBOUND_CONNECTION), false);
    const zoned = new NetworkPolicyEngine(set(netpol('z', { target: { service: 'reviews' }, ingress: [{ from: [{ zones: ['trusted'] }] }] })));
    assert.equal(zoned.admits(ingress(), UNKNOWN_ON_INBOUND_CONNECTION), true, 'zones unknown on a bare connection');
  });
});
