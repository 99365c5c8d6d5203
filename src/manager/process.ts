import { Manager, type ManagerOptions } from './manager.js';
import { EngineBinding } from './engine-binding.js';
import { createEngine } from './risk/index.js';
import { startFeedReloader } from './risk/feed-loader.js';
import { createAlertSink } from './zones/alerts.js';
import { attachDashboard } from './dashboard/index.js';
import { ContainmentTimer } from './zones/containment-timer.js';

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
  const cfg = manager.engineConfig;
  const logger = manager.logger;
  // The live manager scores in a worker thread, off the loop that serves the API and pub/sub;
  // `etz replay` keeps scoring inline so its output stays deterministic.
  const engine = createEngine(cfg, { worker: true, onError: (err) => logger.error({ err }, 'risk scoring step failed') });
  const binding = new EngineBinding(engine, {
    store: manager.store, audit: manager.audit, logger, metrics: manager.metrics, advanceMs: manager.config.advanceMs,
  });
  const alerts = createAlertSink(cfg.alerts, logger);
  const containment = new ContainmentTimer({
    hub: manager.hub, metrics: manager.metrics, audit: manager.audit, logger,
    // Past the hub's own re-send of an unanswered push, plus one more try.
    timeoutMs: 2 * manager.config.pubsub.ackTimeoutMs,
  });
  const unsubscribe = engine.on((e) => {
    alerts.handle(e);
    containment.onEvent(e);
  });
  const feeds = startFeedReloader(engine, cfg.risk.feeds, logger);
  manager.setRiskSink(binding);
  manager.setZoneBackend(binding);
  binding.mount(manager.router);
  binding.start();
  manager.onClose(async () => {
    binding.close();
    feeds.close();
    unsubscribe();
    containment.close();
    await engine.close();
  });
  return binding;
}
