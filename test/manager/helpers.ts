import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/load.js';
import { managerConfigSchema, type ManagerConfig } from '../../src/manager/config.js';
import { Manager } from '../../src/manager/manager.js';
import { ManagerClient } from '../../src/manager/api-client.js';

/** A real manager on 127.0.0.1:0 in a fresh data dir, with an admin client. */
export async function startTestManager(overrides: Record<string, unknown> = {}, opts: { recordFile?: string; dataDir?: string } = {}) {
  const dataDir = opts.dataDir ?? await mkdtemp(join(tmpdir(), 'etz-mgr-'));
  const config = validateConfig<ManagerConfig>('test', managerConfigSchema, {
    dataDir,
    listen: { host: '127.0.0.1', port: 0 },
    ...overrides,
  });
  let adminToken = '';
  const manager = await Manager.start({
    config,
    ...(opts.recordFile ? { recordFile: opts.recordFile } : {}),
    onAdminTokenCreated: (t) => (adminToken = t),
  });
  if (!adminToken) adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  const caPem = await readFile(manager.caFile, 'utf8');
  const admin = new ManagerClient({ url: manager.url, ca: caPem, token: adminToken });
  return {
    manager,
    dataDir,
    caPem,
    adminToken,
    admin,
    async token(scope?: { service?: string }, uses = 1): Promise<string> {
      const r = await admin.call<{ token: string }>('POST', '/v1/tokens', { ...(scope ? { scope } : {}), uses });
      return r.token;
    },
    async close(keepDir = false): Promise<void> {
      await manager.close();
      if (!keepDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export async function until(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  const check = async () => {
    try {
      return await pred();
    } catch {
      return false;
    }
  };
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
