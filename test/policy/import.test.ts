import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { importPolicies } from '../../src/policy/import.js';
import { parsePolicyText } from '../../src/policy/load.js';
import { AuthorizationEngine } from '../../src/policy/engine.js';
import { NetworkPolicyEngine } from '../../src/policy/network.js';
import { ConfigError } from '../../src/core/errors.js';
import { req } from './helpers.js';

const imp = (yaml: string) => importPolicies('in.yaml', parsePolicyText('in.yaml', yaml));

function refused(yaml: string, field: string, reason: RegExp): void {
  assert.throws(
    () => imp(yaml),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.code, 'ETZ_ERR_POLICY_IMPORT');
      assert.equal(err.field, field);
      assert.match(err.reason, reason);
      return true;
    },
  );
}

const ISTIO = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
      version: v2
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/productpage"]
    - source:
        namespaces: ["ops"]
        notIpBlocks: ["10.66.0.0/16"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/reviews/*"]
        ports: ["9080"]
    when:
    - key: request.headers[x-tenant]
      values: ["acme"]
`;

describe('Istio AuthorizationPolicy import', () => {
  test('maps selector, principals (to SPIFFE IDs), operations and header conditions', () => {
    const [doc] = imp(ISTIO);
    assert.equal(doc!.kind, 'AuthorizationPolicy');
    if (doc!.kind !== 'AuthorizationPolicy') return;
    assert.deepEqual(doc.metadata, { name: 'reviews-viewer', namespace: 'default' });
    assert.deepEqual(doc.spec.selector, { service: 'reviews', version: 'v2', namespace: 'default' });
    assert.deepEqual(doc.spec.rules![0]!.from![0], { principals: ['spiffe://cluster.local/ns/default/sa/productpage'] });
    assert.deepEqual(doc.spec.rules![0]!.to![0], { methods: ['GET'], paths: ['/reviews/*'], ports: [9080] });
    assert.deepEqual(doc.spec.rules![0]!.when, [{ key: 'request.headers[x-tenant]', values: ['acme'] }]);
    // And the imported policy behaves as the Istio one would.
    const e = new AuthorizationEngine([doc]);
    const base = req({ sourcePrincipal: 'spiffe://cluster.local/ns/default/sa/productpage', destVersion: 'v2', destNamespace: 'default', headers: { 'x-tenant': 'acme' } });
    assert.equal(e.evaluate(base).allowed, true);
    assert.equal(e.evaluate({ ...base, headers: {} }).allowed, false);
    assert.equal(e.evaluate({ ...base, destVersion: 'v1' }).allowed, true, 'v1 not selected');
  });

  test('root-namespace policies are mesh-wide; others cover their namespace; DENY and AUDIT map', () => {
    const docs = imp(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-all-writes, namespace: istio-system }
spec:
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST] } }] }]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: { name: allow-nothing, namespace: prod }
spec: {}
`);
    assert.equal(docs.length, 2);
    assert.deepEqual((docs[0] as { spec: unknown }).spec, { action: 'DENY', rules: [{ to: [{ methods: ['POST'] }] }] });
    assert.deepEqual((docs[1] as { spec: unknown }).spec, { selector: { namespace: 'prod' }, action: 'ALLOW' });
  });

  test('refusals name the field', () => {
    refused(ISTIO.replace('action: ALLOW', 'action: CUSTOM'), '/spec/action', /CUSTOM/);
    refused(ISTIO.replace('version: v2', 'tier: backend'), '/spec/selector/matchLabels/tier', /label 'tier' has no etz equivalent/);
    refused(ISTIO.replace('namespaces: ["ops"]', 'remoteIpBlocks: ["1.2.3.4"]'), '/spec/rules/0/from/1/source/remoteIpBlocks', /X-Forwarded-For/);
    refused(ISTIO.replace('key: request.headers[x-tenant]', 'key: request.auth.claims[groups]'), '/spec/rules/0/when/0/key', /request\.auth\.claims\[groups\]/);
    refused(ISTIO.replace('  action: ALLOW', '  action: ALLOW\n  targetRef: { kind: Gateway, name: gw }'), '/spec/targetRef', /targetRef/);
    refused(ISTIO.replace('ports: ["9080"]', 'ports: ["http"]'), '/spec/rules/0/to/0/operation/ports/0', /not a port/);
    refused(ISTIO.replace('apiVersion: security.istio.io/v1', 'apiVersion: security.istio.io/v2'), '/kind', /cannot be imported/);
  });
});

const K8S = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: reviews-net
  namespace: default
spec:
  podSelector:
    matchLabels: { app: reviews }
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - podSelector: { matchLabels: { app: productpage } }
    - namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: ops } }
    - ipBlock: { cidr: 172.17.0.0/16, except: [172.17.1.0/24] }
    ports:
    - { protocol: TCP, port: 9080 }
  egress:
  - to:
    - podSelector: { matchLabels: { app: ratings } }
    ports:
    - { port: 9080 }
  - to:
    - ipBlock: { cidr: 203.0.113.0/24 }
    ports:
    - { port: 8000, endPort: 8100 }
`;

describe('Kubernetes NetworkPolicy import', () => {
  test('maps pod/namespace/ipBlock peers, ports and policy types, with Kubernetes semantics', () => {
    const [doc] = imp(K8S);
    assert.ok(doc && doc.kind === 'NetworkPolicy');
    assert.deepEqual(doc.spec.target, { service: 'reviews', namespace: 'default' });
    assert.deepEqual(doc.spec.ingress![0]!.from, [
      { services: ['productpage'], namespaces: ['default'] },
      { namespaces: ['ops'] },
      { ipBlocks: ['172.17.0.0/16'], notIpBlocks: ['172.17.1.0/24'] },
    ]);
    assert.deepEqual(doc.spec.egress![1]!.ports, [{ port: 8000, endPort: 8100 }]);
    const e = new NetworkPolicyEngine([doc]);
    const target = { service: 'reviews', namespace: 'default' };
    const inb = { direction: 'ingress' as const, target, port: 9080 };
    assert.equal(e.evaluate({ ...inb, sourcePrincipal: 'spiffe://etz.local/ns/default/sa/productpage' }).allowed, true);
    assert.equal(e.evaluate({ ...inb, sourcePrincipal: 'spiffe://etz.local/ns/other/sa/productpage' }).allowed, false);
    assert.equal(e.evaluate({ ...inb, sourceIp: '172.17.5.5' }).allowed, true);
    assert.equal(e.evaluate({ ...inb, sourceIp: '172.17.1.5' }).allowed, false);
    assert.equal(e.evaluate({ direction: 'egress', target, destService: 'ratings', port: 9080 }).allowed, true);
    assert.equal(e.evaluate({ direction: 'egress', target, destService: 'details', port: 9080 }).allowed, false);
    assert.equal(e.evaluate({ direction: 'egress', target, destIp: '203.0.113.9', port: 8050 }).allowed, true);
  });

  test('Ingress with no rules denies all ingress; an empty podSelector targets the namespace', () => {
    const [doc] = imp(`
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: default-deny, namespace: prod }
spec:
  podSelector: {}
  policyTypes: [Ingress]
`);
    assert.deepEqual((doc as { spec: unknown }).spec, { target: { namespace: 'prod' }, ingress: [] });
    const e = new NetworkPolicyEngine([doc!]);
    assert.equal(e.evaluate({ direction: 'ingress', target: { service: 'x', namespace: 'prod' }, sourceIp: '10.0.0.1' }).allowed, false);
    assert.equal(e.evaluate({ direction: 'ingress', target: { service: 'x', namespace: 'dev' }, sourceIp: '10.0.0.1' }).allowed, true);
  });

  test('refusals name the field', () => {
    refused(K8S.replace('{ protocol: TCP, port: 9080 }', '{ protocol: UDP, port: 53 }'), '/spec/ingress/0/ports/0/protocol', /TCP only/);
    refused(K8S.replace('{ protocol: TCP, port: 9080 }', '{ port: http }'), '/spec/ingress/0/ports/0/port', /named port 'http'/);
    refused(K8S.replace('matchLabels: { app: reviews }', 'matchExpressions: [{ key: app, operator: In, values: [reviews] }]'), '/spec/podSelector/matchExpressions', /matchExpressions/);
    refused(K8S.replace('kubernetes.io/metadata.name: ops', 'team: ops'), '/spec/ingress/0/from/1/namespaceSelector/matchLabels/team', /by name only/);
    refused(
      K8S.replace('- podSelector: { matchLabels: { app: ratings } }', '- namespaceSelector: {}\n      podSelector: { matchLabels: { app: ratings } }'),
      '/spec/egress/0/to/0/namespaceSelector',
      /not namespaces/,
    );
  });

  test('several documents: the index is part of the field path', () => {
    assert.throws(
      () => imp(`${ISTIO}\n---\n${K8S.replace('port: 9080 }\n  egress', 'port: dns }\n  egress')}`),
      (err: unknown) => err instanceof ConfigError && err.field === '/1/spec/ingress/0/ports/0/port',
    );
  });
});
