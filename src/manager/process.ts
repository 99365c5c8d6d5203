import { Manager, type ManagerOptions } from './manager.js';
import { EngineBinding } from './engine-binding.js';
import { createEngine } from './risk/index.js';
import { attachDashboard } from './dashboard/index.js';

/**
 * Start the manager as a process: the Manager plus the engines it runs (the risk engine and
 * zone automation, the risk and traffic API). Kept apart from Manager so that tests can run a
 * bare Manager, and so attaching an engine is a change to this file alone.
 */
export async function startManagerProcess(opts: ManagerOptions): Promise<Manager> {
  const manager = await Manager.start(opts);
  try {
    attachEngine(manager);
    await attachDashboard(manager);
  } catch (err) {
    await manager.close();
    throw err;
  }
  return manager;
}

export function attachEngine(manager: Manager): EngineBinding {
  const binding = new EngineBinding(createEngine(manager.engineConfig), {
    store: manager.store, audit: manager.audit, logger: manager.logger, metrics: manager.metrics, advanceMs: manager.config.advanceMs,
  });
  manager.setRiskSink(binding);
  manager.setZoneBackend(binding);
  binding.mount(manager.router);
  binding.start();
  manager.onClose(() => binding.close());
  return binding;
}
