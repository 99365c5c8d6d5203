import { Manager, type ManagerOptions } from './manager.js';

/**
 * Start the manager as a process: the Manager plus whatever engines are available to attach
 * (risk engine, zone automation, traffic views). Kept apart from Manager so that tests can run a
 * bare Manager, and so attaching an engine is a change to this file alone.
 */
export async function startManagerProcess(opts: ManagerOptions): Promise<Manager> {
  const manager = await Manager.start(opts);
  return manager;
}
