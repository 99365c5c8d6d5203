import { Counter, Gauge, type Registry } from '../../core/metrics.js';

export interface ControlMetrics {
  connected: Gauge;
  version: Gauge;
  nacks: Counter;
  stale: Counter;
  reconnects: Counter;
  dropped: Counter;
}

/** `appliedAt` is read at scrape time: 0 means no config is in force yet. */
export function controlMetrics(reg: Registry, appliedAt: () => number): ControlMetrics {
  const g: ControlMetrics = {
    connected: new Gauge({ name: 'etz_control_plane_connected', help: '1 while the control stream to the manager is open', registers: [reg] }),
    version: new Gauge({ name: 'etz_control_plane_config_version', help: 'Config version in force', registers: [reg] }),
    nacks: new Counter({ name: 'etz_control_plane_nacks_total', help: 'Config versions rejected', registers: [reg] }),
    stale: new Counter({ name: 'etz_control_plane_stale_pushes_total', help: 'Pushes ignored because their version was not newer', registers: [reg] }),
    reconnects: new Counter({ name: 'etz_control_plane_reconnects_total', help: 'Control stream (re)connection attempts', registers: [reg] }),
    dropped: new Counter({ name: 'etz_telemetry_dropped_total', help: 'Telemetry records dropped (buffer full while the manager was away)', registers: [reg] }),
  };
  new Gauge({
    name: 'etz_control_plane_snapshot_age_seconds',
    help: 'Age of the config in force (since it was received or, when loaded from disk, saved)',
    registers: [reg],
    collect() {
      const at = appliedAt();
      this.set(at ? (Date.now() - at) / 1000 : -1);
    },
  });
  return g;
}
