import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/core/errors.js';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';

const EXAMPLE = fileURLToPath(new URL('../../../config/sidecar.yaml', import.meta.url));

test('the commented example config/sidecar.yaml is valid', async () => {
  const c = await loadSidecarConfig(EXAMPLE, {});
  assert.equal(c.service.name, 'reviews');
  assert.equal(c.registry.ratings!.endpoints[0]!.version, 'v1');
});

test('defaults fill every section and env overrides win over the file', async () => {
  const c = await loadSidecarConfig(EXAMPLE, { ETZ_SIDECAR_TIMEOUTS__CONNECT_MS: '250', ETZ_SIDECAR_SERVICE__NAME: 'ratings', OTHER_VAR: 'x' });
  assert.equal(c.timeouts.connectMs, 250);
  assert.equal(c.service.name, 'ratings');
  const bare = await loadSidecarConfig(undefined, { ETZ_SIDECAR_SERVICE__NAME: 'bare' });
  assert.equal(bare.inbound.port, 15006);
  assert.equal(bare.outbound.port, 15001);
  assert.equal(bare.admin.port, 15000);
  assert.equal(bare.admin.host, '127.0.0.1');
  assert.equal(bare.limits.maxHeaders, 100);
});

test('invalid fields are named with their path', async () => {
  await assert.rejects(loadSidecarConfig(undefined, {}), (e: unknown) => e instanceof ConfigError && e.field === '/service');
  await assert.rejects(
    loadSidecarConfig(undefined, { ETZ_SIDECAR_SERVICE__NAME: 'ok', ETZ_SIDECAR_REGISTRY: '{"x":{"endpoints":[{"address":"a","port":0}]}}' }),
    (e: unknown) => e instanceof ConfigError && e.field === '/registry/x/endpoints/0/port' && /must be >= 1/.test(e.reason),
  );
  await assert.rejects(
    loadSidecarConfig(undefined, { ETZ_SIDECAR_SERVICE__NAME: 'Not_A_Name' }),
    (e: unknown) => e instanceof ConfigError && e.field === '/service/name',
  );
  await assert.rejects(
    loadSidecarConfig(undefined, { ETZ_SIDECAR_SERVICE__NAME: 'ok', ETZ_SIDECAR_ADMIN__TOKEN: 'short' }),
    (e: unknown) => e instanceof ConfigError && e.field === '/admin/token',
  );
});
