import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Manager } from '../manager.js';
import { Dashboard, DASHBOARD_FILE } from './server.js';

export { Dashboard, DASHBOARD_FILE } from './server.js';
export type { Snapshot } from './state.js';

/**
 * Serve the dashboard for a running manager (config `dashboard`). A port already in use is
 * reported and the manager runs on without a dashboard: the control plane matters more.
 */
export async function attachDashboard(manager: Manager): Promise<Dashboard | undefined> {
  const c = manager.config.dashboard;
  // A file left by an earlier run must not point at a dashboard that is not there.
  await rm(join(manager.dataDir, DASHBOARD_FILE), { force: true });
  if (!c?.enabled) return undefined;
  try {
    const d = await Dashboard.start({
      host: c.host, port: c.port, refreshMs: c.refreshMs, dataDir: manager.dataDir, router: manager.router, logger: manager.logger,
      flagged: () => manager.zones.flagged?.() ?? [],
    });
    manager.onClose(() => d.close());
    manager.logger.info({ url: d.url }, 'dashboard listening');
    return d;
  } catch (err) {
    manager.logger.warn({ err, host: c.host, port: c.port }, 'dashboard not started');
    return undefined;
  }
}
