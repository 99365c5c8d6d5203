import { createServer } from 'node:net';
import type { Command } from '../run.js';
import { parseCommandArgs } from '../run.js';
import { UsageError } from '../../core/errors.js';

const USAGE = `Usage: etz demo [--duration TIME] [--speed N] [--no-attack] [--open] [--dashboard-port N] [--iptables]

Run Istio's Bookinfo sample on a live etz mesh, all on loopback: the zone manager, productpage,
details, ratings and reviews v1/v2/v3, each behind its own enrolled etz sidecar (mTLS), and an
ingress gateway. Normal users browse; then an end user scrapes the site (> 5 requests a minute
→ served by reviews v1 only) and a compromised reviews-v2 starts calling services it never
called, sending far more data (→ containment zone, dissolved after the cool-down). ratings is
labelled sensitive (isolation zone); productpage and details latency-critical (performance zone).
The terminal tells the story; the dashboard shows it live.

Options:
      --duration TIME      stop after TIME (e.g. 90s, 5m); default: tell the story, then run
                           until Ctrl-C
      --speed N            compress time N× (shorter windows and cool-downs; default 5)
      --no-attack          normal traffic only
      --open               print a dashboard link that signs in with the admin token
      --dashboard-port N   dashboard port (default 15080, or any free port when it is taken)
      --iptables           (root) each workload in its own network namespace: apps call
                           http://reviews:9080 and 'etz iptables' rules hand the calls to the
                           sidecars (transparent interception); needs ip and iptables
  -h, --help               show this help

Ctrl-C stops every process the demo started (and with --iptables removes the namespaces,
veths and bridge); a demo killed outright takes its processes along, and the next --iptables run
removes the namespaces it left.
`;

export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim());
  if (!m) throw new UsageError(`invalid duration '${s}' (use e.g. 500ms, 5s, 2m)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return Math.round(n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000));
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export const command: Command = {
  summary: 'Run the Bookinfo demo on a live mesh: zone manager, sidecars, attack and dashboard',
  async run(argv) {
    const parsed = parseCommandArgs(argv, {
      duration: { type: 'string' },
      speed: { type: 'string' },
      'no-attack': { type: 'boolean' },
      open: { type: 'boolean' },
      'dashboard-port': { type: 'string' },
      iptables: { type: 'boolean' },
    }, USAGE);
    if (parsed === null) return 0;
    const v = parsed.values;
    const durationMs = v.duration === undefined ? 0 : parseDuration(v.duration as string);
    const speed = v.speed === undefined ? 5 : Number(v.speed);
    if (!Number.isFinite(speed) || speed < 0.1 || speed > 100) throw new UsageError(`invalid speed '${v.speed as string}' (a number from 0.1 to 100)`);
    let dashboardPort = v['dashboard-port'] === undefined ? 15080 : Number(v['dashboard-port']);
    if (!Number.isInteger(dashboardPort) || dashboardPort < 0 || dashboardPort > 65535) throw new UsageError(`invalid dashboard port '${v['dashboard-port'] as string}'`);
    if (v['dashboard-port'] === undefined && !(await portFree(dashboardPort))) dashboardPort = 0;

    if (v.iptables) {
      const { netnsUnavailable } = await import('../../sidecar/iptables/netns.js');
      const why = netnsUnavailable();
      if (why) {
        process.stderr.write(`etz: demo --iptables ${why}; run it as root, or without --iptables for the loopback demo\n`);
        return 2;
      }
    }

    const { runStory } = await import('../../../examples/bookinfo/story.js');
    let onStop: () => void = () => {};
    const stopSignal = new Promise<void>((resolve) => (onStop = resolve));
    const stop = (): void => onStop();
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    let pods: import('../../../examples/bookinfo/netns.js').PodNetwork | undefined;
    try {
      if (v.iptables) {
        const { PodNetwork } = await import('../../../examples/bookinfo/netns.js');
        pods = await PodNetwork.create((m) => process.stdout.write(`etz demo: ${m}\n`));
      }
      await runStory({ speed, durationMs, attack: !v['no-attack'], dashboardPort, showLoginUrl: !!v.open, out: process.stdout, stopSignal, ...(pods ? { network: pods } : {}) });
    } finally {
      if (pods) {
        await pods.destroy();
        process.stdout.write(`etz demo: removed namespaces ${pods.namespacePattern}, their veths, bridge ${pods.bridge} and /etc/netns entries\n`);
      }
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  },
};
