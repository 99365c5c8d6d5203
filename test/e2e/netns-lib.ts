// Helpers for tests that build real "pods" out of Linux network namespaces. Everything here is
// real: ip netns, veth pairs, iptables, child processes inside the namespaces. Callers must
// run cleanup() in `after`/finally; it kills children first, then deletes the namespaces.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { netnsUnavailable, type Netns } from '../../src/sidecar/iptables/netns.js';

export { Netns, sh, type Run } from '../../src/sidecar/iptables/netns.js';

let cached: string | false | undefined;

/** Why namespace tests cannot run here, or false when they can. */
export function netnsSkipReason(): string | false {
  if (cached !== undefined) return cached;
  const missing = netnsUnavailable(['ip', 'iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'curl', 'setpriv', 'tcpdump']);
  if (missing) return (cached = missing.startsWith('needs root') ? `${missing}; run as root, as CI does` : missing);
  const probe = `etzprobe${randomBytes(3).toString('hex')}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.status !== 0) return (cached = `cannot create network namespaces: ${r.stderr.trim()}`);
  spawnSync('ip', ['netns', 'del', probe]);
  return (cached = false);
}

export interface VethAddrs {
  a4: string;
  b4: string;
  a6?: string;
  b6?: string;
}

/** Connect two namespaces with a veth pair (`vA` in a, `vB` in b) and address both ends. */
export async function vethPair(a: Netns, b: Netns, addrs: VethAddrs): Promise<void> {
  await a.must(['ip', 'link', 'add', 'vA', 'type', 'veth', 'peer', 'name', 'vB', 'netns', b.name]);
  for (const [ns, dev, v4, v6] of [[a, 'vA', addrs.a4, addrs.a6], [b, 'vB', addrs.b4, addrs.b6]] as const) {
    await ns.must(['ip', 'addr', 'add', `${v4}/24`, 'dev', dev]);
    // nodad: the address is usable at once instead of after duplicate-address detection.
    if (v6) await ns.must(['ip', '-6', 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
    await ns.must(['ip', 'link', 'set', dev, 'up']);
  }
}

export interface Child {
  proc: ChildProcess;
  /** stdout+stderr so far, for failure messages. */
  output(): string;
}

/**
 * Start a process inside a namespace, optionally as another uid/gid (setpriv), and wait until
 * it prints a line containing `ready`.
 */
export async function startIn(ns: Netns, argv: string[], opts: { uid?: number; gid?: number; ready: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Child> {
  const prefix = opts.uid === undefined && opts.gid === undefined ? [] : [
    'setpriv',
    ...(opts.uid === undefined ? [] : [`--reuid=${opts.uid}`]),
    ...(opts.gid === undefined ? [] : [`--regid=${opts.gid}`]),
    '--clear-groups',
  ];
  const proc = spawn('ip', ['netns', 'exec', ns.name, ...prefix, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  let out = '';
  const child: Child = { proc, output: () => out };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready in ${ns.name}: ${out}`)), opts.timeoutMs ?? 15_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(opts.ready)) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')} exited ${code} in ${ns.name}: ${out}`));
    });
  });
  return child;
}

/** Kill children (whole `ip netns exec` process) and wait for them to exit. */
export async function stopAll(children: Child[]): Promise<void> {
  await Promise.all(children.map((c) => new Promise<void>((resolve) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
    c.proc.once('exit', () => resolve());
    c.proc.kill('SIGKILL');
  })));
}

/** Packets of a classic pcap file (as tcpdump -w writes it), raw frame bytes each. */
export function pcapPackets(buf: Buffer): Buffer[] {
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && buf.readUInt32BE(0) !== 0xa1b2c3d4 && buf.readUInt32BE(0) !== 0xa1b23c4d) throw new Error('not a pcap file');
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= buf.length;) {
    const incl = u32(off + 8);
    out.push(buf.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
  }
  return out;
}

/**
 * Capture all frames on one interface of a namespace until stop() is called (no BPF filter:
 * some kernels drop every packet under a compiled 'tcp' filter); stop() returns the
 * packets. --immediate-mode and -U hand each packet to the file at once (otherwise packets
 * still in the ring buffer are lost at SIGINT); -Z root keeps tcpdump able to write our tmp dir.
 */
export async function startCapture(ns: Netns, dev: string, file: string): Promise<{ stop(): Promise<Buffer[]>; child: Child }> {
  const child = await startIn(ns, ['tcpdump', '-i', dev, '-n', '-U', '--immediate-mode', '-Z', 'root', '-s', '0', '-w', file], { ready: 'listening on' });
  return {
    child,
    async stop() {
      await new Promise<void>((resolve) => {
        if (child.proc.exitCode !== null) return resolve();
        child.proc.once('exit', () => resolve());
        child.proc.kill('SIGINT');
      });
      const { readFile } = await import('node:fs/promises');
      return pcapPackets(await readFile(file));
    },
  };
}
