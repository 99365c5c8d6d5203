import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpiffeId, formatSpiffeId, isSpiffeId, uriSans, assertTrustDomain } from '../../src/identity/index.js';
import { EtzError } from '../../src/core/errors.js';

test('parses a workload SPIFFE ID into its parts', () => {
  assert.deepEqual(parseSpiffeId('spiffe://etz.local/ns/default/sa/reviews'), {
    spiffeId: 'spiffe://etz.local/ns/default/sa/reviews', trustDomain: 'etz.local', namespace: 'default', serviceAccount: 'reviews',
  });
  assert.equal(formatSpiffeId('prod.example-1', 'shop', 'cart_v2'), 'spiffe://prod.example-1/ns/shop/sa/cart_v2');
});

test('refuses malformed SPIFFE IDs with ETZ_ERR_SPIFFE_ID_INVALID and a reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['http://etz.local/ns/a/sa/b', /scheme/],
    ['SPIFFE://etz.local/ns/a/sa/b', /scheme/],
    ['spiffe://ETZ.local/ns/a/sa/b', /lower-case/],
    ['spiffe://etz.local:8443/ns/a/sa/b', /no port/],
    ['spiffe://user@etz.local/ns/a/sa/b', /user info/],
    ['spiffe:///ns/a/sa/b', /empty trust domain/],
    ['spiffe://etz.local', /needs a path/],
    ['spiffe://etz.local/ns//sa/b', /empty path segment/],
    ['spiffe://etz.local/ns/../sa/b', /'\.' and '\.\.'/],
    ['spiffe://etz.local/ns/a/sa/b?x=1', /query/],
    ['spiffe://etz.local/ns/a/sa/b#f', /fragment/],
    ['spiffe://etz.local/ns/a/sa/b%20', /percent/],
    ['spiffe://etz.local/ns/a/sa/b/', /empty path segment/],
    ['spiffe://etz.local/workload/a', /\/ns\/<namespace>\/sa/],
    ['spiffe://etz.local/ns/a/xx/b', /\/ns\/<namespace>\/sa/],
    [`spiffe://etz.local/ns/a/sa/${'x'.repeat(2100)}`, /2048 bytes/],
  ];
  for (const [id, reason] of bad) {
    assert.throws(() => parseSpiffeId(id), (err: unknown) => err instanceof EtzError && err.code === 'ETZ_ERR_SPIFFE_ID_INVALID' && reason.test(err.message), id);
    assert.equal(isSpiffeId(id), false);
  }
  assert.throws(() => assertTrustDomain('Etz.Local'), /invalid trust domain/);
});

test('uriSans reads URI entries of a Node subjectAltName string, keeping quoted values whole', () => {
  assert.deepEqual(uriSans('DNS:a.example, URI:spiffe://etz.local/ns/a/sa/b, IP Address:127.0.0.1'), ['spiffe://etz.local/ns/a/sa/b']);
  assert.deepEqual(uriSans('URI:spiffe://x/ns/a/sa/b, URI:spiffe://x/ns/c/sa/d'), ['spiffe://x/ns/a/sa/b', 'spiffe://x/ns/c/sa/d']);
  const quoted = uriSans('URI:"spiffe://x/ns/a/sa/b, URI:spiffe://x/ns/evil/sa/e"');
  assert.equal(quoted.length, 1);
  assert.equal(isSpiffeId(quoted[0]!), false);
  assert.deepEqual(uriSans(undefined), []);
});
