import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { ManagerClient } from '../../src/manager/api-client.js';
import { BOOKINFO, appKey, type AppSpec, type AppsMessage } from './apps.js';
import { firstPage, spawnCli, spawnWatched, stopProc, waitFile, waitFor, type Launch, type Proc } from './procs.js';

export type { Launch, Proc } from './procs.js';

/**
 * Starts the whole Bookinfo mesh as real processes on loopback: the zone manager (`etz manager`),
 * the six applications (one child process), one `etz sidecar` per application, each enrolled
 * with its own one-time bootstrap token, and an enrolled ingress gateway. Ports are all ephemeral
 * and read back from what each process reports.
 */

const APPS = fileURLToPath(new URL('./apps-main.js', import.meta.url));
const TRUST_DOMAIN = 'etz.local';
const spiffe = (service: string): string => `spiffe://${TRUST_DOMAIN}/ns/default/sa/${service}`;

export interface MeshTiming {
  /** Risk scoring window. */
  windowMs: number;
  /** Per-principal detector window (the paper's one minute). */
  principalWindowMs: number;
  coolDownMs: number;
  warmupWindows: number;
}

/** Time compressed by `speed`: windows, cool-downs and flags shrink, thresholds stay. */
export function timingFor(speed: number): MeshTiming {
  return {
    windowMs: Math.max(1000, Math.round(10_000 / speed)),
    principalWindowMs: Math.max(2000, Math.round(60_000 / speed)),
    coolDownMs: Math.max(5000, Math.round(300_000 / speed)),
    warmupWindows: 6,
  };
}

export function managerConfig(dataDir: string, t: MeshTiming, dashboardPort: number): Record<string, unknown> {
  return {
    dataDir,
    trustDomain: TRUST_DOMAIN,
    listen: { host: '127.0.0.1', port: 0 },
    dashboard: { enabled: true, host: '127.0.0.1', port: dashboardPort },
    advanceMs: Math.max(100, Math.round(t.windowMs / 4)),
    pubsub: { heartbeatMs: 2000, debounceMs: 20 },
    risk: {
      windowMs: t.windowMs,
      allowedLatenessMs: Math.min(5000, Math.round(t.windowMs / 2)),
      warmupWindows: t.warmupWindows,
            // Labels draw the standing zones; `allow` names each service's known callers, the ones an
      // isolation zone still admits.
      services: {
        ratings: { labels: ['sensitive'], allow: ['reviews'] },
        productpage: { labels: ['latency-critical'], allow: ['ingress-gateway'] },
        details: { labels: ['latency-critical'], allow: ['productpage'] },
        reviews: { allow: ['productpage'] },
      },
      // An operator rule on top of the learned baselines: no Bookinfo workload calls more than two
      // others, so a service or an instance that does is suspicious for as long as it does.
      rules: [
        { name: 'wide-fan-out', subject: 'service', feature: 'fanOut', above: 2, points: 25 },
        { name: 'wide-fan-out', subject: 'instance', feature: 'fanOut', above: 2, points: 25 },
      ],
      principals: {
        scraping: { maxRequests: 5, windowMs: t.principalWindowMs, action: 'route', to: { service: 'reviews', version: 'v1' } },
        // Credential stuffing (more than 10 refusals of a user's own requests per user window): a
        // zone's 403 further down a user's call chain is the mesh's doing and does not count.
        authFailures: { enabled: true, maxFailures: 10, windowMs: t.principalWindowMs, action: 'block' },
        flagTtlMs: t.principalWindowMs * 3,
      },
    },
    zones: {
      containment: { coolDownMs: t.coolDownMs, ttlMs: Math.max(60_000, t.coolDownMs * 6) },
      isolation: { coolDownMs: t.coolDownMs },
      performance: { coolDownMs: t.coolDownMs },
    },
  };
}

/** Mesh-wide resources the sidecars get on their first config version. */
export function meshResources(t: MeshTiming): Record<string, unknown> {
  return {
    routes: {
      detector: { threshold: 5, windowMs: t.principalWindowMs, ttlMs: t.principalWindowMs * 3 },
      rules: [
        {
          name: 'reviews',
          hosts: ['reviews'],
          route: [{ subset: { version: 'v1' }, weight: 34 }, { subset: { version: 'v2' }, weight: 33 }, { subset: { version: 'v3' }, weight: 33 }],
          suspicious: { subset: { version: 'v1' } },
        },
      ],
    },
    // Each end user may open the product page 10 times per detector window at the edge.
    rateLimits: [{ name: 'per-user', key: 'principal', requests: 10, periodMs: t.principalWindowMs, directions: ['gateway'] }],
  };
}

export interface SidecarProc extends Proc {
  spec: AppSpec | undefined;
  ports: { inbound: number; outbound: number; gateway: number };
}

export interface MeshHandles {
  dir: string;
  managerUrl: string;
  dashboardUrl: string;
  adminToken: string;
  admin: ManagerClient;
  gatewayUrl: string;
  sidecars: SidecarProc[];
  apps: AppsLink;
  appPorts: Record<string, number>;
  manager: Proc;
  send(m: AppsMessage): void;
  stats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** The running apps, however they were started: one child on loopback, one per pod. */
export interface AppsLink {
  /** Port each app listens on, by instance key (`reviews-v2`). */
  ports: Record<string, number>;
  send(m: AppsMessage): void;
  /** Exfiltration calls refused, by instance key. */
  stats(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Where one workload's sidecar runs and how its peers reach it. */
export interface Workload {
  launch?: Launch;
  /** The sidecar's listener sections; on loopback, an ephemeral inbound port beside the app. */
  listeners?: Record<string, unknown>;
  /** Address and port the other sidecars call (mTLS). */
  address: string;
  port: number;
  /** Port its own sidecar calls it on (a pod's traffic to its own address is never intercepted inbound). */
  selfPort: number;
}

/** Where the workloads run: loopback when absent; `etz demo --iptables` passes a pod network (netns.ts). */
export interface MeshNetwork {
  /** Address the manager's API listens on, reachable from every sidecar. */
  readonly managerHost: string;
  startApps(): Promise<AppsLink>;
  workload(key: string): Workload;
}

export interface StartMeshOptions {
  dir: string;
  timing: MeshTiming;
  dashboardPort?: number;
  onStep?: (msg: string) => void;
  network?: MeshNetwork;
}

export async function startMesh(o: StartMeshOptions): Promise<MeshHandles> {
  const step = o.onStep ?? (() => {});
  await mkdir(o.dir, { recursive: true });
  const dataDir = join(o.dir, 'manager');
  const cfgFile = join(o.dir, 'manager.json');
  const net = o.network;
  const mcfg = managerConfig(dataDir, o.timing, o.dashboardPort ?? 0);
  if (net) mcfg.listen = { host: net.managerHost, port: 0 };
  await writeFile(cfgFile, JSON.stringify(mcfg, null, 2));
  const procs: Proc[] = [];
  let apps: AppsLink | undefined;
  const stopAll = async (): Promise<void> => {
    // Sidecars first (newest first), then the apps and the manager.
    await Promise.all(procs.filter((p) => p.name !== 'manager').map((p) => stopProc(p.child)));
    if (apps) await apps.stop();
    await Promise.all(procs.filter((p) => p.name === 'manager').map((p) => stopProc(p.child)));
  };
  try {
    const manager = spawnCli('manager', ['manager', '--config', cfgFile]);
    procs.push(manager);
    const endpoint = JSON.parse(await waitFile(join(dataDir, 'endpoint.json'), 30_000, manager)) as { url: string; caFile: string };
    const dash = JSON.parse(await waitFile(join(dataDir, 'dashboard.json'), 30_000, manager)) as { url: string };
    const adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
    const caPem = await readFile(endpoint.caFile, 'utf8');
    const admin = new ManagerClient({ url: endpoint.url, ca: caPem, token: adminToken });
    step(`zone manager up at ${endpoint.url} (CA created, admin token in ${join(dataDir, 'admin-token')})`);

    for (const [type, items] of Object.entries(meshResources(o.timing))) await admin.call('PUT', `/v1/resources/${type}`, { items });

    apps = await (net ? net.startApps() : startApps());
    const appsLink = apps;
    const appPorts = apps.ports;
    step(`bookinfo apps listening: ${Object.entries(appPorts).map(([k, p]) => `${k} :${p}`).join(', ')}`);

    const sidecars: SidecarProc[] = [];
    const inbound = new Map<string, Array<Workload & { version: string; instance: string }>>();
    const registryFor = (services: string[], self?: string): Record<string, unknown> => Object.fromEntries(services.filter((s) => inbound.has(s)).map((s) => [s, {
      endpoints: inbound.get(s)!.map((e) => ({ address: e.address, port: e.instance === self ? e.selfPort : e.port, version: e.version, instance: e.instance })),
      spiffeId: spiffe(s),
    }]));
    const startSidecar = async (name: string, version: string, body: Record<string, unknown>, spec?: AppSpec, launch?: Launch): Promise<SidecarProc> => {
      const instance = `${name}-${version}`;
      const { token } = await admin.call<{ token: string }>('POST', '/v1/tokens', { scope: { service: name }, uses: 1, ttl: '10m', description: `etz demo ${instance}` });
      const dir = join(o.dir, 'sidecars', instance);
      await mkdir(dir, { recursive: true });
      const file = join(dir, 'sidecar.json');
      await writeFile(file, JSON.stringify({
        service: { name, version, instance },
        outbound: { port: 0 },
        admin: { enabled: false },
        logging: { level: 'warn' },
        ...body,
        manager: { url: endpoint.url, caFile: endpoint.caFile, bootstrapToken: token, dataDir: join(dir, 'data'), telemetry: { flushMs: Math.max(100, Math.round(o.timing.windowMs / 5)) } },
      }, null, 2), { mode: 0o600 });
      const p = spawnCli(instance, ['sidecar', '--config', file], undefined, launch);
      procs.push(p);
      const ports = await waitFor(p, 'its listeners', (line) => {
        const m = /^etz sidecar \S+: inbound :(\d+|null|undefined) outbound :(\d+|null|undefined).*?(?: gateway :(\d+))?$/.exec(line);
        return m ? { inbound: Number(m[1]) || 0, outbound: Number(m[2]) || 0, gateway: Number(m[3]) || 0 } : undefined;
      });
      const s: SidecarProc = { ...p, spec, ports };
      sidecars.push(s);
      return s;
    };
    // Every inbound port is reserved first, so each registry can name every sidecar it may call
    // and all sidecars start at once.
    const reserved = new Map(await Promise.all(BOOKINFO.map(async (spec): Promise<readonly [string, Workload]> => {
      const key = appKey(spec);
      if (net) return [key, net.workload(key)];
      const port = await freePort();
      return [key, { address: '127.0.0.1', port, selfPort: port }];
    })));
    for (const spec of BOOKINFO) {
      const list = inbound.get(spec.service) ?? [];
      list.push({ ...reserved.get(appKey(spec))!, version: spec.version, instance: appKey(spec) });
      inbound.set(spec.service, list);
    }
    const calls: Record<string, string[]> = {
      'productpage-v1': ['details', 'reviews'],
      'details-v1': [],
      'reviews-v1': ['ratings'],
      // reviews-v2 may reach more than it needs: what a compromised build would try first.
      'reviews-v2': ['ratings', 'details', 'productpage', 'reviews'],
      'reviews-v3': ['ratings'],
      'ratings-v1': [],
    };
    await Promise.all(BOOKINFO.map(async (spec) => {
      const w = reserved.get(appKey(spec))!;
      const s = await startSidecar(spec.service, spec.version, {
        ...(w.listeners ?? { inbound: { host: '127.0.0.1', port: w.port, appPort: appPorts[appKey(spec)] } }),
        registry: registryFor(calls[appKey(spec)] ?? [], appKey(spec)),
      }, spec, w.launch);
      step(`sidecar ${appKey(spec)} enrolled as ${spiffe(spec.service)}, inbound :${s.ports.inbound} (mTLS STRICT)`);
    }));
    const gw = await startSidecar('ingress-gateway', 'v1', {
      inbound: { enabled: false },
      outbound: { enabled: false },
      gateway: { enabled: true, host: '127.0.0.1', port: 0 },
      registry: registryFor(['productpage']),
      resources: {},
    });
    step(`ingress gateway enrolled, listening on http://127.0.0.1:${gw.ports.gateway}`);

    const outPorts = Object.fromEntries(sidecars.filter((s) => s.spec).map((s) => [appKey(s.spec!), s.ports.outbound]));
    appsLink.send({ type: 'outbound', ports: outPorts });
    // Like a readiness probe: users start once a page makes it through gateway, sidecars and apps,
    // so the story's served share measures the mesh, not its start-up.
    const gatewayUrl = `http://127.0.0.1:${gw.ports.gateway}`;
    const readyIn = await firstPage(gatewayUrl, 30_000);
    step(`first page served through the mesh ${(readyIn / 1000).toFixed(1)} s after the gateway started`);

    return {
      dir: o.dir,
      managerUrl: endpoint.url,
      dashboardUrl: dash.url,
      adminToken,
      admin,
      gatewayUrl,
      sidecars,
      apps: appsLink,
      appPorts,
      manager,
      send: (m) => appsLink.send(m),
      stats: () => appsLink.stats(),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** One apps child process (all six apps, or those `args` name), watched like the CLI children. */
export async function startAppsChild(name: string, args: string[] = [], launch?: Launch): Promise<{ child: ChildProcess; ports: Record<string, number>; link: AppsLink }> {
  const child = spawnWatched([APPS, ...args], ['ignore', 'ignore', 'inherit'], launch);
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    child.once('message', (m: { type: string; ports: Record<string, number> }) => resolve(m.ports));
    child.once('exit', (c) => reject(new Error(`${name} exited (${c})`)));
  });
  const link: AppsLink = {
    ports,
    send: (m) => {
      if (child.connected) child.send(m);
    },
    stats: () => new Promise((resolve) => {
      if (!child.connected) return resolve({});
      const t = setTimeout(() => resolve({}), 2000);
      child.once('message', (m: { type: string; refused: Record<string, number> }) => {
        clearTimeout(t);
        resolve(m.refused ?? {});
      });
      child.send({ type: 'stats' } satisfies AppsMessage);
    }),
    async stop() {
      if (child.connected) child.send({ type: 'stop' } satisfies AppsMessage);
      await stopProc(child);
    },
  };
  return { child, ports, link };
}

async function startApps(): Promise<AppsLink> {
  return (await startAppsChild('bookinfo apps')).link;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
