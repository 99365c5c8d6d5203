import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { validateConfig } from '../../src/config/load.js';
import { managerConfigSchema, type ManagerConfig } from '../../src/manager/config.js';
import { Manager } from '../../src/manager/manager.js';
import { table, writeResults } from '../common/report.js';
import { measureHub } from './hub.js';

/**
 * Control-plane push latency: N simulated sidecars (in child processes, each enrolled with its own
 * certificate and on its own WSS stream with it) subscribed to one in-process manager; one
 * zone change at a time; latency from the operator's change (store write included) to each
 * sidecar's ACK at the manager. Also the manager's memory per connected sidecar.
 * Args: --sizes 100,1000  --rounds 10  [--sim light|client]  [--sim-procs P]  [--history K]  [--cpu-prof DIR]
 * --sim: what each simulated sidecar runs (sim.ts): `light` (default) a bare validating stream,
 * `client` the full ControlClient. --sim-procs: simulator processes (default: cores - 1, 1 to 4).
 * --history: K small changes (each in force) before the rounds, so the rollout history is as full
 * as in a manager that has run for a while (default 0).
 * --cpu-prof: V8 CPU profiles of the rounds only (not enrollment or connection set-up): the
 * manager's in DIR/manager-N<n>.cpuprofile, each simulator process's in DIR/sim-N<n>-<i>.cpuprofile.
 */

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const WARMUP = 2;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 200));
}

function mem(): { heap: number; rss: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

/** CPU seconds (user + system) a child has used so far, from /proc; undefined where there is none. */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}

async function simCpu(sims: ChildProcess[]): Promise<number | undefined> {
  let total = 0;
  for (const s of sims) {
    const c = await cpuSeconds(s.pid);
    if (c === undefined) return undefined;
    total += c;
  }
  return total;
}

/** A command line to a simulator; resolves on the line it answers with. */
function simCommand(sim: ChildProcess, line: string, answer: string): Promise<void> {
  return new Promise((resolve) => {
    let out = '';
    const on = (d: Buffer) => {
      out += d.toString();
      if (!out.includes(`${answer}\n`)) return;
      sim.stdout!.off('data', on);
      resolve();
    };
    sim.stdout!.on('data', on);
    sim.stdin!.write(`${line}\n`);
  });
}

async function measure(n: number, rounds: number, sim: string, simProcs: number, history: number, profDir: string | undefined) {
  const dataDir = await mkdtemp(join(tmpdir(), 'etz-bench-cp-'));
  const config = validateConfig<ManagerConfig>('bench', managerConfigSchema, { dataDir, listen: { host: '127.0.0.1', port: 0 } });
  const manager = await Manager.start({ config });
  const sims: ChildProcess[] = [];
  try {
    const token = (await manager.tokens.create({ ttlMs: 3_600_000, uses: n, createdBy: 'bench' })).token;
    const caPem = await readFile(manager.caFile, 'utf8');
    await settle();
    const before = mem();
    const procs = simProcs;
    const simJs = join(dirname(fileURLToPath(import.meta.url)), 'sim.js');
    const per = Math.ceil(n / procs);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: procs }, (_, p) => {
      const count = Math.min(per, n - p * per);
      if (count <= 0) return Promise.resolve();
      const child = spawn(process.execPath, [simJs, manager.url, Buffer.from(caPem).toString('base64'), token, String(count), String(p * per), join(dataDir, `sim${p}`), sim], { stdio: ['pipe', 'pipe', 'inherit'] });
      sims.push(child);
      return new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`simulator exited ${code}`)));
      });
    }));
    const connectSeconds = (performance.now() - t0) / 1000;
    while (manager.hub.subscriberCount() < n || manager.hub.status().some((s) => s.state !== 'acked')) await new Promise((r) => setTimeout(r, 20));
    await settle();
    // Memory is read after the rounds, not here: a forced full GC right before a rollout makes V8
    // drop code the push path had warmed, which no running manager sees. Read after the rounds,
    // it also counts what the manager keeps per sidecar for rollouts.
    // A manager that has run for a while holds a full rollout history; fill it with small
    // changes of another resource type (the zone rounds' messages stay the same size).
    for (let i = 0; i < history; i++) {
      const done = new Promise<void>((resolve) => {
        const on = (ro: { version: number }) => {
          if (ro.version !== manager.hub.currentVersion) return;
          manager.hub.off('rollout-complete', on);
          resolve();
        };
        manager.hub.on('rollout-complete', on);
      });
      manager.publish('mesh', 'routes', [{ name: `history-${i}` }], 'bench history');
      await done;
    }

    const acks: number[] = [];
    // ACKs of the rounds after the first WARMUP: the first pushes after start run while V8 still
    // optimises the push and read paths. Reported next to, never instead of, all rounds.
    const warmAcks: number[] = [];
    const perRound: Array<{ publishMs: number; fanoutMs: number; ackP50Ms: number; lastAckMs: number }> = [];
    const lasts: number[] = [];
    const publishMs: number[] = [];
    // How long the publish call itself runs (encoding and writing to every stream): wrapped
    // here so the hub carries no timing code of its own.
    const fanoutMs: number[] = [];
    const hub = manager.hub;
    const publish = hub.publish.bind(hub);
    hub.publish = () => {
      const t = performance.now();
      const v = publish();
      if (v !== undefined) fanoutMs.push(performance.now() - t);
      return v;
    };
    let busyMs = 0;
    let wallMs = 0;
    const session = profDir ? new Session() : undefined;
    if (session) {
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
      await Promise.all(sims.map((s, i) => simCommand(s, `profile ${join(profDir!, `sim-N${n}-${i}.cpuprofile`)}`, 'profiling')));
    }
    const simCpu0 = await simCpu(sims);
    const cpu0 = process.cpuUsage();
    for (let r = 0; r < rounds; r++) {
      const elu0 = performance.eventLoopUtilization();
      const start = performance.now();
      let version = Infinity;
      const seen = new Set<string>();
      const lat: number[] = [];
      const done = new Promise<void>((resolve) => {
        const onPub = (v: number, targets: number) => {
          if (targets > 0) {
            version = v;
            publishMs.push(performance.now() - start);
          }
        };
        const onAck = (id: string, v: number) => {
          if (v >= version && !seen.has(id)) {
            seen.add(id);
            lat.push(performance.now() - start);
          }
        };
        const onDone = (ro: { version: number }) => {
          if (ro.version !== version) return;
          manager.hub.off('published', onPub);
          manager.hub.off('ack', onAck);
          manager.hub.off('rollout-complete', onDone);
          resolve();
        };
        manager.hub.on('published', onPub);
        manager.hub.on('ack', onAck);
        manager.hub.on('rollout-complete', onDone);
      });
      await manager.zones.create({ type: 'containment', members: [{ service: `svc-${r % 20}` }], reason: `bench round ${r}` }, 'bench');
      await done;
      const elu = performance.eventLoopUtilization(elu0);
      busyMs += elu.active;
      wallMs += elu.active + elu.idle;
      if (lat.length !== n) throw new Error(`round ${r}: ${lat.length} of ${n} ACKs`);
      acks.push(...lat);
      if (r >= WARMUP) warmAcks.push(...lat);
      perRound.push({ publishMs: publishMs.at(-1)!, fanoutMs: fanoutMs.at(-1)!, ackP50Ms: pct(lat, 50), lastAckMs: Math.max(...lat) });
      lasts.push(Math.max(...lat));
      await new Promise((res) => setTimeout(res, 50));
    }
    const cpu = process.cpuUsage(cpu0);
    const simCpu1 = await simCpu(sims);
    const after = mem();
    if (session) {
      const { profile } = await session.post('Profiler.stop');
      await writeFile(join(profDir!, `manager-N${n}.cpuprofile`), JSON.stringify(profile));
      session.disconnect();
      await Promise.all(sims.map((s) => simCommand(s, 'stop', 'profiled')));
    }
    return {
      n,
      rounds,
      sim,
      simProcs,
      history,
      connectSeconds,
      ackP50Ms: pct(acks, 50),
      ackP99Ms: pct(acks, 99),
      ackP99AfterWarmupMs: warmAcks.length ? pct(warmAcks, 99) : null,
      lastAckP50Ms: pct(lasts, 50),
      lastAckMaxMs: Math.max(...lasts),
      // Change → every push written: store fsync + debounce + the publish call.
      publishP50Ms: pct(publishMs, 50),
      fanoutP50Ms: pct(fanoutMs.slice(-rounds), 50),
      // Share of the rollout the manager's event loop was busy; the rest is network and the
      // simulated sidecars (which share the machine's cores with the manager here).
      managerBusyShare: wallMs ? busyMs / wallMs : 0,
      heapPerSidecarKiB: (after.heap - before.heap) / n / 1024,
      rssPerSidecarKiB: (after.rss - before.rss) / n / 1024,
      // CPU of the manager's process per round (user + system: TLS, socket syscalls, the hub):
      // steadier than latency on a shared machine, since other load stretches wall time only.
      managerCpuMsPerRound: (cpu.user + cpu.system) / 1000 / rounds,
      // CPU the simulated sidecars spent per round (all simulator processes; includes the 50 ms
      // pauses between rounds): with 2 cores shared, this is CPU the manager could not have.
      simCpuMsPerRound: simCpu0 !== undefined && simCpu1 !== undefined ? ((simCpu1 - simCpu0) * 1000) / rounds : null,
      pushes: manager.hub.stats.pushes,
      perRound,
    };
  } finally {
    for (const s of sims) s.stdin!.end();
    await Promise.all(sims.map((s) => new Promise((r) => (s.exitCode !== null ? r(null) : s.once('exit', r)))));
    await manager.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void> {
  const get = (k: string, d: string) => {
    const i = args.indexOf(`--${k}`);
    return i >= 0 && args[i + 1] ? args[i + 1]! : d;
  };
  const sizes = get('sizes', '100,1000').split(',').map(Number);
  const rounds = Number(get('rounds', '10'));
  const sim = get('sim', 'light');
  if (sim !== 'light' && sim !== 'client') throw new Error(`--sim: light or client, not ${sim}`);
  // One core stays the manager's: with every core running simulators, the manager would be
  // time-sliced against them and the numbers would measure the scheduler.
  const simProcs = Number(get('sim-procs', String(Math.max(1, Math.min(4, cpus().length - 1)))));
  const history = Number(get('history', '0'));
  const profDir = args.includes('--cpu-prof') ? get('cpu-prof', '') : undefined;
  if (profDir === '') throw new Error('--cpu-prof needs a directory');
  if (profDir) await mkdir(profDir, { recursive: true });
  const results = [];
  for (const n of sizes) {
    process.stderr.write(`control-plane: N=${n} (${sim} simulated sidecars) …\n`);
    results.push(await measure(n, rounds, sim, simProcs, history, profDir));
  }
  console.log(table(
    ['sidecars', 'publish ms', 'fan-out ms', 'ACK p50 ms', 'ACK p99 ms', `p99 rounds ${WARMUP + 1}+`, 'last ACK p50 ms', 'last ACK max ms', 'manager busy', 'manager CPU ms/round', 'sims CPU ms/round', 'heap KiB/sidecar', 'RSS KiB/sidecar', 'connect s'],
    results.map((r) => [r.n, r.publishP50Ms, r.fanoutP50Ms, r.ackP50Ms, r.ackP99Ms, r.ackP99AfterWarmupMs, r.lastAckP50Ms, r.lastAckMaxMs, `${(r.managerBusyShare * 100).toFixed(0)}%`, r.managerCpuMsPerRound, r.simCpuMsPerRound, r.heapPerSidecarKiB, r.rssPerSidecarKiB, r.connectSeconds]),
  ));
  if (results.length >= 2) {
    const a = results[0]!;
    const b = results[results.length - 1]!;
    console.log(`\nN ${a.n} → ${b.n} (×${b.n / a.n}): ACK p99 ×${(b.ackP99Ms / a.ackP99Ms).toFixed(2)}, time to last ACK ×${(b.lastAckP50Ms / a.lastAckP50Ms).toFixed(2)}`);
  }
  const hub = sizes.map((n) => measureHub(n));
  console.log(`\nThe hub alone (no sockets), rollout history full (${hub[0]!.history} changes):`);
  console.log(table(['sidecars', 'publish µs/sidecar', 'ACK µs/ACK'], hub.map((h) => [h.n, h.publishUsPerSidecar, h.ackUsPerAck])));
  console.log(`target: ACK p99 ≤ 100 ms at N=1000 (each round: one zone change after a quiet window, default 10 ms leading-edge debounce, store fsync included)`);
  const file = await writeResults('control-plane', { date: new Date().toISOString(), node: process.version, cpus: cpus().length, loadavg: (await import('node:os')).loadavg(), results, hub });
  console.log(`results: ${file}`);
}
