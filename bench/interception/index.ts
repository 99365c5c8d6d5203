// `npm run bench -- interception [--connections N] [--concurrency C]`
// The cost of transparent interception, measured side by side in one run inside a throw-away
// network namespace (needs root): installing/removing the rules, accepted connections per
// second straight over loopback vs through the REDIRECT with SO_ORIGINAL_DST per connection,
// and the lookup itself against socket.address() as a yardstick.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { must as mustRun, sh } from '../../src/sidecar/iptables/netns.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const cli = join(root, 'dist/src/cli/main.js');
const worker = fileURLToPath(new URL('./worker.js', import.meta.url));

// The workers run for as long as the measurement needs.
const must = (argv: string[]): Promise<string> => mustRun(argv, { timeoutMs: 300_000 });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

interface WorkerResult {
  addon: boolean;
  connPerSec: number;
  misses: number;
  lookupNsP50: number;
  lookupNsP99: number;
  addressNsP50: number;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { connections: { type: 'string', default: '4000' }, concurrency: { type: 'string', default: '32' } } });
  const out = join(root, 'bench/results/interception.json');
  await mkdir(join(root, 'bench/results'), { recursive: true });
  if (process.getuid?.() !== 0) {
    console.log('interception: skipped — needs root (network namespaces, iptables)');
    await writeFile(out, JSON.stringify({ skipped: 'needs root' }, null, 2) + '\n');
    return;
  }
  const tag = randomBytes(3).toString('hex');
  const ns = `etzbench${tag}`;
  const peer = `etzbenchp${tag}`;
  try {
    for (const n of [ns, peer]) await must(['ip', 'netns', 'add', n]);
    const inNs = (n: string, argv: string[]) => ['ip', 'netns', 'exec', n, ...argv];
    await must(inNs(ns, ['ip', 'link', 'set', 'lo', 'up']));
    await must(inNs(ns, ['ip', 'link', 'add', 'vA', 'type', 'veth', 'peer', 'name', 'vB', 'netns', peer]));
    await must(inNs(ns, ['ip', 'addr', 'add', '10.213.11.1/24', 'dev', 'vA']));
    await must(inNs(ns, ['ip', 'link', 'set', 'vA', 'up']));
    await must(inNs(peer, ['ip', 'link', 'set', 'vB', 'up']));

    // Rule install and removal, as an init container would run them.
    const install: number[] = [];
    const cleanup: number[] = [];
    for (let i = 0; i < 5; i++) {
      let t = performance.now();
      await must(inNs(ns, [process.execPath, cli, 'iptables', '--ipv6=off']));
      install.push(performance.now() - t);
      t = performance.now();
      await must(inNs(ns, [process.execPath, cli, 'iptables', '--cleanup', '--ipv6=off']));
      cleanup.push(performance.now() - t);
    }

    // Yardstick: starting the CLI at all.
    const start: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await must(inNs(ns, [process.execPath, cli, 'version']));
      start.push(performance.now() - t);
    }

    const conns = values.connections!;
    const conc = values.concurrency!;
    const direct = JSON.parse(await must(inNs(ns, [process.execPath, worker, '127.0.0.1', '15001', conns, conc, '0']))) as WorkerResult;
    // The worker runs as root, not as the proxy uid, so its own connects are intercepted.
    await must(inNs(ns, [process.execPath, cli, 'iptables', '--ipv6=off']));
    const redirected = JSON.parse(await must(inNs(ns, [process.execPath, worker, '10.213.11.2', '8080', conns, conc, '1']))) as WorkerResult;

    const rows: Array<[string, string]> = [
      ['etz iptables install (median of 5)', `${median(install).toFixed(0)} ms`],
      ['etz iptables --cleanup (median of 5)', `${median(cleanup).toFixed(0)} ms`],
      ['etz version, process start only (median of 5)', `${median(start).toFixed(0)} ms`],
      [`connections/s direct loopback (n=${conns}, c=${conc})`, direct.connPerSec.toFixed(0)],
      ['connections/s via REDIRECT + original dst', redirected.connPerSec.toFixed(0)],
      ['ratio redirected / direct', (redirected.connPerSec / direct.connPerSec).toFixed(2)],
      ['getOriginalDst p50 / p99', `${redirected.lookupNsP50} ns / ${redirected.lookupNsP99} ns`],
      ['socket.address() p50 (yardstick: one getsockname)', `${redirected.addressNsP50} ns`],
      ['ratio getOriginalDst / socket.address()', (redirected.lookupNsP50 / Math.max(1, redirected.addressNsP50)).toFixed(2)],
      ['lookups that found no original destination', String(redirected.misses)],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`interception (addon ${redirected.addon ? 'loaded' : 'NOT loaded: Host-header fallback'})`);
    for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
    await writeFile(out, JSON.stringify({
      date: new Date().toISOString(), node: process.version, connections: Number(conns), concurrency: Number(conc),
      installMsMedian: median(install), cleanupMsMedian: median(cleanup), cliStartMsMedian: median(start), direct, redirected,
      ratioConnPerSec: redirected.connPerSec / direct.connPerSec,
    }, null, 2) + '\n');
  } finally {
    await sh(['ip', 'netns', 'del', ns]);
    await sh(['ip', 'netns', 'del', peer]);
  }
}
