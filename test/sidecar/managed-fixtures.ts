import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadSidecarConfig } from '../../src/config/sidecar-schema.js';
import { startManagedSidecar } from '../../src/sidecar/control/bootstrap.js';
import { createRegistry } from '../../src/core/metrics.js';
import { nullLogger } from '../../src/core/logger.js';
import type { startTestManager } from '../manager/helpers.js';

export type TestManager = Awaited<ReturnType<typeof startTestManager>>;
export type ManagedSidecar = Awaited<ReturnType<typeof startManagedSidecar>>;

/**
 * The sidecar "reviews" enrolled with `t` through a real config file (written to `dir`), so the
 * manager section goes through the same loader as in production. `extra` adds top-level sections.
 */
export async function startEnrolledSidecar(t: TestManager, dir: string, extra: Record<string, unknown> = {}): Promise<ManagedSidecar> {
  const token = await t.token({ service: 'reviews' });
  const file = join(dir, 'sidecar.json');
  await writeFile(file, JSON.stringify({
    service: { name: 'reviews', version: 'v1', instance: 'reviews-0' },
    inbound: { host: '127.0.0.1', port: 0, appPort: 9 },
    outbound: { port: 0 },
    admin: { port: 0, token: 'test-admin-token-0123456789' },
    logging: { level: 'silent' },
    ...extra,
    manager: { url: t.manager.url, caFile: t.manager.caFile, bootstrapToken: token, dataDir: join(dir, 'data') },
  }));
  const config = await loadSidecarConfig(file);
  assert.ok(config.manager);
  return startManagedSidecar({ ...config, manager: config.manager }, { logger: nullLogger, registry: createRegistry() });
}
