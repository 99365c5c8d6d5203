import { mkdir, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { DEFAULT_OPTIONS } from '../../src/sidecar/iptables/index.js';
import { deleteNetns, listNetns, must, Netns, sh } from '../../src/sidecar/iptables/netns.js';
import { BOOKINFO, SERVICE_PORT, appKey } from './apps.js';
import { startAppsChild, type AppsLink, type MeshNetwork, type Workload } from './mesh.js';
import { currentOwner, ownerAlive } from './run-owner.js';

/**
 * The pods of `etz demo --iptables`: one network namespace per Bookinfo workload, each joined to
 * a bridge in the root namespace by a veth pair, with an address from a private /24 and its own
 * /etc/hosts (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over /etc/hosts) naming a
 * service address per Bookinfo service, as a cluster's DNS names ClusterIPs. In each pod the
 * interception rules are installed with `etz iptables` and its defaults, as an init container
 * would; the app listens on :9080 and calls `http://reviews:9080/…` with no proxy settings; its
 * sidecar runs with gid 1337, the group the rules exempt.
 *
 * Every name carries a short random run id (`etzd-<id>-reviews-v2`, bridge `etzd<id>br`, veths
 * `etzd<id>v<n>`). Before creating anything the run records itself in /run/etz-demo/<id>.json (pid
 * and process start time); destroy() removes everything and then that file. Whatever a killed run
 * left behind (its recorded pid no longer alive, or an `etzd` name no live run claims) is removed
 * by removeStaleRuns(), which every run calls first.
 */

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const NAME_PREFIX = 'etzd';
export const STATE_DIR = '/run/etz-demo';
// The sidecars listen where `etz iptables` sends traffic by default and run with the group its
// defaults exempt.
const { inboundPort, outboundPort, adminPort } = DEFAULT_OPTIONS;
export const PROXY_GID = DEFAULT_OPTIONS.proxyGid ?? 1337;
/** Service addresses (.200 + n) by service, in the pods' hosts files. */
const SERVICES = ['productpage', 'details', 'reviews', 'ratings'];

interface RunState {
  id: string;
  pid: number;
  /** Start time of `pid` (clock ticks since boot), so a reused pid is not taken for the run. */
  start: string;
  subnet: string;
  namespaces: string[];
  links: string[];
  forwardRule: boolean;
}

interface Pod {
  key: string;
  ns: Netns;
  address: string;
}

function forwardRule(id: string, bridge: string): string[] {
  // Bridged frames cross the root namespace's FORWARD chain when br_netfilter is loaded; a host
  // whose FORWARD policy is DROP (Docker sets one) would otherwise cut the pods off each other.
  return ['FORWARD', '-i', bridge, '-o', bridge, '-m', 'comment', '--comment', `${NAME_PREFIX}-${id}`, '-j', 'ACCEPT'];
}

async function bridgeNetfilter(): Promise<boolean> {
  try {
    return (await readFile('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8')).trim() === '1';
  } catch {
    return false;
  }
}

async function readStates(): Promise<RunState[]> {
  let files: string[] = [];
  try {
    files = (await readdir(STATE_DIR)).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out: RunState[] = [];
  for (const f of files) {
    const file = join(STATE_DIR, f);
    try {
      out.push(JSON.parse(await readFile(file, 'utf8')) as RunState);
    } catch {
      // Not a record (records are renamed into place whole): its names are swept by prefix; an
      // unreadable file a minute old is not being written any more.
      const age = await stat(file).then((st) => Date.now() - st.mtimeMs, () => 0);
      if (age > 60_000) await rm(file, { force: true });
    }
  }
  return out;
}

/** Remove what one run created; every step tolerates what is already gone. */
async function teardown(id: string, namespaces: readonly string[], links: readonly string[]): Promise<void> {
  await Promise.all(namespaces.map((n) => deleteNetns(n)));
  // The pod ends of the veths went with their namespaces, taking the host ends along; the bridge
  // and any veth whose namespace was never created remain.
  for (const l of links) await sh(['ip', 'link', 'del', l]);
  await Promise.all(namespaces.map((n) => rm(join('/etc/netns', n), { recursive: true, force: true })));
  // ip netns reads the directory only when it exists; an empty one is left by nobody but us.
  await rmdir('/etc/netns').catch(() => {});
  const rules = await sh(['iptables', '-S', 'FORWARD']);
  for (const line of rules.stdout.split('\n')) {
    if (line.startsWith('-A FORWARD ') && line.includes(`--comment ${NAME_PREFIX}-${id} `)) await sh(['iptables', '-D', ...line.slice(3).split(' ')]);
  }
  await rm(join(STATE_DIR, `${id}.json`), { force: true });
}

/**
 * Remove every namespace, link, hosts directory and FORWARD rule of a demo run that is no longer
 * alive. Returns the ids of the runs removed.
 */
export async function removeStaleRuns(): Promise<string[]> {
  const states = await readStates();
  const live = new Set<string>();
  for (const s of states) if (await ownerAlive(s)) live.add(s.id);
  const nameId = new RegExp(`^${NAME_PREFIX}-?([0-9a-f]{4})`);
  const idOf = (name: string): string | undefined => nameId.exec(name)?.[1];
  const stale = new Map<string, { namespaces: Set<string>; links: Set<string> }>();
  const entry = (id: string) => {
    let e = stale.get(id);
    if (!e) stale.set(id, (e = { namespaces: new Set(), links: new Set() }));
    return e;
  };
  for (const s of states) {
    if (live.has(s.id)) continue;
    const e = entry(s.id);
    s.namespaces.forEach((n) => e.namespaces.add(n));
    s.links.forEach((l) => e.links.add(l));
  }
  for (const n of await listNetns()) {
    const id = idOf(n);
    if (id !== undefined && !live.has(id)) entry(id).namespaces.add(n);
  }
  const links = await sh(['ip', '-o', 'link', 'show']);
  for (const m of links.stdout.matchAll(/^\d+: ([^:@\s]+)/gm)) {
    const id = idOf(m[1]!);
    if (id !== undefined && !live.has(id)) entry(id).links.add(m[1]!);
  }
  for (const d of await readdir('/etc/netns').catch(() => [] as string[])) {
    const id = idOf(d);
    if (id !== undefined && !live.has(id)) entry(id).namespaces.add(d);
  }
  for (const [id, e] of stale) await teardown(id, [...e.namespaces], [...e.links]);
  return [...stale.keys()];
}

async function pickSubnet(taken: string[]): Promise<string> {
  const inUse = (await sh(['ip', '-4', '-o', 'addr', 'show'])).stdout + (await sh(['ip', '-4', 'route', 'show'])).stdout + taken.join(' ');
  const first = randomBytes(1)[0]!;
  for (let i = 0; i < 256; i++) {
    const subnet = `10.232.${(first + i) % 256}`;
    if (!inUse.includes(`${subnet}.`)) return subnet;
  }
  throw new Error('no free /24 in 10.232.0.0/16 for the demo pods');
}

export class PodNetwork implements MeshNetwork {
  readonly managerHost: string;
  readonly bridge: string;
  private readonly pods = new Map<string, Pod>();
  private readonly state: RunState;
  private destroyed: Promise<void> | undefined;

  private constructor(state: RunState) {
    this.state = state;
    this.managerHost = `${state.subnet}.1`;
    this.bridge = `${NAME_PREFIX}${state.id}br`;
  }

  get id(): string {
    return this.state.id;
  }

  get subnet(): string {
    return `${this.state.subnet}.0/24`;
  }

  /** `etzd-<id>-*`: the names of this run's namespaces. */
  get namespacePattern(): string {
    return `${NAME_PREFIX}-${this.state.id}-*`;
  }

  get namespaces(): string[] {
    return [...this.pods.values()].map((p) => p.ns.name);
  }

  /** Address of a workload's pod (`productpage-v1`). */
  podAddress(key: string): string {
    return this.pod(key).address;
  }

  /**
   * Create the bridge and one pod per Bookinfo workload with its interception rules. On failure
   * whatever was created is removed again before the error is thrown.
   */
  static async create(onStep: (msg: string) => void = () => {}): Promise<PodNetwork> {
    const removed = await removeStaleRuns();
    if (removed.length) onStep(`removed what earlier demo runs left behind (run ${removed.join(', ')})`);
    const states = await readStates();
    let id = randomBytes(2).toString('hex');
    while (states.some((s) => s.id === id)) id = randomBytes(2).toString('hex');
    const net = new PodNetwork({
      id,
      ...(await currentOwner()),
      subnet: await pickSubnet(states.map((s) => `${s.subnet}.`)),
      namespaces: BOOKINFO.map((s) => `${NAME_PREFIX}-${id}-${appKey(s)}`),
      links: [`${NAME_PREFIX}${id}br`, ...BOOKINFO.map((_, i) => `${NAME_PREFIX}${id}v${i}`)],
      forwardRule: false,
    });
    try {
      await net.build();
    } catch (err) {
      await net.destroy();
      throw err;
    }
    onStep(`pods: ${net.pods.size} network namespaces ${net.namespacePattern} on bridge ${net.bridge} (${net.subnet}); interception installed in each with 'etz iptables'`);
    return net;
  }

  private async save(): Promise<void> {
    await mkdir(STATE_DIR, { recursive: true, mode: 0o700 });
    // Written aside and renamed: a reader never sees half a record.
    const file = join(STATE_DIR, `${this.state.id}.json`);
    await writeFile(`${file}.tmp`, JSON.stringify(this.state) + '\n', { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  private async build(): Promise<void> {
    const { id, subnet } = this.state;
    await this.save();
    await must(['ip', 'link', 'add', this.bridge, 'type', 'bridge']);
    await must(['ip', 'addr', 'add', `${subnet}.1/24`, 'dev', this.bridge]);
    await must(['ip', 'link', 'set', this.bridge, 'up']);
    if (await bridgeNetfilter()) {
      await must(['iptables', '-I', ...forwardRule(id, this.bridge)]);
      this.state.forwardRule = true;
      await this.save();
    }
    const hosts = ['127.0.0.1 localhost', '::1 localhost ip6-localhost', ...SERVICES.map((s, i) => `${subnet}.${200 + i} ${s}`)].join('\n') + '\n';
    const pods = await Promise.allSettled(BOOKINFO.map(async (spec, i) => {
      const key = appKey(spec);
      const name = this.state.namespaces[i]!;
      const ns = await Netns.add(name);
      const address = `${subnet}.${10 + i}`;
      this.pods.set(key, { key, ns, address });
      const host = `${NAME_PREFIX}${id}v${i}`;
      const peer = `${NAME_PREFIX}${id}p${i}`;
      await must(['ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', peer, 'netns', name]);
      await must(['ip', 'link', 'set', host, 'master', this.bridge]);
      await must(['ip', 'link', 'set', host, 'up']);
      await ns.must(['ip', 'link', 'set', peer, 'name', 'eth0']);
      await ns.must(['ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      await ns.must(['ip', 'link', 'set', 'eth0', 'up']);
      await mkdir(join('/etc/netns', name), { recursive: true });
      await writeFile(join('/etc/netns', name, 'hosts'), hosts);
      // What an init container runs: the defaults (inbound :15006, outbound :15001, uid/gid 1337 exempt).
      await ns.must([process.execPath, CLI, 'iptables']);
    }));
    // Every pod settled before failing, so destroy() does not race a half-made one.
    const failed = pods.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private pod(key: string): Pod {
    const p = this.pods.get(key);
    if (!p) throw new Error(`no pod for ${key}`);
    return p;
  }

  workload(key: string): Workload {
    const p = this.pod(key);
    return {
      launch: { prefix: p.ns.wrap([]), gid: PROXY_GID },
      listeners: {
        // REDIRECT in PREROUTING delivers to the pod address: the inbound listener takes all.
        inbound: { host: '0.0.0.0', port: inboundPort, appHost: '127.0.0.1', appPort: SERVICE_PORT },
        outbound: { host: '127.0.0.1', port: outboundPort },
        admin: { enabled: true, host: '127.0.0.1', port: adminPort },
      },
      address: p.address,
      // Peers call the app's own port; the pod's PREROUTING rule hands it to the inbound listener.
      port: SERVICE_PORT,
      // A sidecar calling its own pod goes out and back in over loopback, past PREROUTING.
      selfPort: inboundPort,
    };
  }

  async startApps(): Promise<AppsLink> {
    const started = new Map<string, AppsLink>();
    try {
      await Promise.all([...this.pods.values()].map(async (p) => {
        const { link } = await startAppsChild(`app ${p.key}`, ['--only', p.key, '--listen', `0.0.0.0:${SERVICE_PORT}`, '--direct'], { prefix: p.ns.wrap([]) });
        started.set(p.key, link);
      }));
    } catch (err) {
      await Promise.all([...started.values()].map((l) => l.stop()));
      throw err;
    }
    const links = [...started.values()];
    return {
      ports: Object.fromEntries(links.flatMap((l) => Object.entries(l.ports))),
      send: (m) => {
        if (m.type === 'compromise') started.get(m.key)?.send(m);
        else if (m.type !== 'outbound') for (const l of links) l.send(m);
      },
      stats: async () => Object.assign({}, ...(await Promise.all(links.map((l) => l.stats())))) as Record<string, number>,
      stop: async () => {
        await Promise.all(links.map((l) => l.stop()));
      },
    };
  }

  /** Remove every namespace, veth, bridge, hosts directory and rule of this run. Idempotent. */
  destroy(): Promise<void> {
    this.destroyed ??= teardown(this.state.id, this.state.namespaces, this.state.links);
    return this.destroyed;
  }
}
