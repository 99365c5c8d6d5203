import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMesh, timingFor, type MeshHandles, type MeshNetwork, type MeshTiming } from './mesh.js';
import { TrafficGenerator, type UserStats } from './traffic.js';
import { ownedTempDir, removeDeadOwnersDirs } from './run-owner.js';

/**
 * The Bookinfo demo's script: warm up with normal readers, then a scraping end user, then a
 * compromised reviews-v2, then calm; the terminal tells what the mesh does about each, from what
 * the zone manager reports (zones, audit, rollouts), and ends with a summary table.
 */

export interface StoryOptions {
  speed: number;
  /** Stop after this long (ms); 0 = run the story, then keep going until stopped. */
  durationMs: number;
  attack: boolean;
  dashboardPort: number;
  showLoginUrl: boolean;
  out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Resolves when the user asks to stop (Ctrl-C). */
  stopSignal: Promise<void>;
  /** Pods to run the workloads in (`--iptables`); loopback when absent. */
  network?: MeshNetwork;
}

interface ZoneView { id: string; type: string; members: Array<{ service: string; version?: string; instance?: string }>; reason: string; createdAt: number; detectedAt?: number }
interface AuditView { seq: number; ts: string; action: string; target?: string; reason?: string; details?: Record<string, unknown> }

export interface StorySummary {
  containmentCreated: boolean;
  containmentDissolved: boolean;
  /** Members of the (first) containment zone, as `members()` prints them. */
  containedMembers?: string;
  /** First anomalous window → zone decided: the hysteresis windows and the wait for late telemetry. */
  decideMs?: number;
  /** Zone decided → every sidecar ACKed the version carrying it (the manager's own measurement). */
  pushMs?: number;
  /** First anomalous window → enforced by every sidecar (the manager's zone.enforced record). */
  timeToContainmentMs?: number;
  zonesSeen: Record<string, number>;
  /** Every zone seen: `type members` (e.g. `containment reviews-v2`). */
  zoneList: string[];
  /** Normal users' page views while the containment zone held, and how many were served. */
  duringContainment?: { requests: number; ok: number };
  flagged: string[];
  completed: boolean;
}

/** `$TMPDIR/etz-demo-<pid>-<start>-XXXXXX`: the run's state (manager data, sidecar configs and keys). */
export const TEMP_PREFIX = 'etz-demo-';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const members = (z: ZoneView): string => z.members.map((m) => m.instance ?? (m.version ? `${m.service}@${m.version}` : m.service)).join(', ');
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const ms = (x: number): string => `${Math.round(x)} ms`;

export async function runStory(o: StoryOptions): Promise<StorySummary> {
  const t: MeshTiming = timingFor(o.speed);
  // A killed run cannot remove its directory (it holds the admin token and the sidecars' keys):
  // the next run removes those whose run is no longer alive.
  const swept = await removeDeadOwnersDirs(tmpdir(), TEMP_PREFIX);
  const dir = await ownedTempDir(tmpdir(), TEMP_PREFIX);
  const started = Date.now();
  const tty = !!o.out.isTTY;
  let progress = '';
  let phase = 'starting';
  const clock = (): string => {
    const s = Math.floor((Date.now() - started) / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  };
  const say = (msg: string): void => {
    if (tty && progress) o.out.write('\r\x1b[2K');
    o.out.write(`[${clock()}] ${msg}\n`);
    if (tty && progress) o.out.write(progress);
  };
  let stopped = false;
  void o.stopSignal.then(() => {
    stopped = true;
  });
  const wait = async (ms: number, until?: () => boolean): Promise<boolean> => {
    const end = Date.now() + ms;
    while (Date.now() < end && !stopped && !deadlinePassed()) {
      if (until?.()) return true;
      await sleep(Math.min(200, end - Date.now()));
    }
    return until?.() ?? false;
  };
  const deadlinePassed = (): boolean => o.durationMs > 0 && Date.now() - started >= o.durationMs;

  const summary: StorySummary = { containmentCreated: false, containmentDissolved: false, zonesSeen: {}, zoneList: [], flagged: [], completed: false };
  say(`etz demo: Bookinfo on a live etz mesh (speed ×${o.speed}: scoring window ${secs(t.windowMs)}, user window ${secs(t.principalWindowMs)}, cool-down ${secs(t.coolDownMs)})`);
  if (swept.length) say(`removed the temporary directories of ${swept.length} earlier demo run${swept.length > 1 ? 's' : ''} that ended without cleaning up: ${swept.join(', ')}`);
  let mesh: MeshHandles | undefined;
  let traffic: TrafficGenerator | undefined;
  let poller: NodeJS.Timeout | undefined;
  let ticker: NodeJS.Timeout | undefined;
  try {
    mesh = await startMesh({ dir, timing: t, dashboardPort: o.dashboardPort, onStep: (m) => say(m), ...(o.network ? { network: o.network } : {}) });
    const m = mesh;
    say(`dashboard: ${m.dashboardUrl}${o.showLoginUrl ? `?token=${m.adminToken}` : ' (sign in with the admin token; --open prints a sign-in link)'}`);

    // ---- what the manager reports, turned into story lines ----
    const zones = new Map<string, ZoneView>();
    let lastSeq = 0;
    let containment: ZoneView | undefined;
    // Normal users' totals when the containment zone came and went: what they saw meanwhile.
    const duringContainment: { start?: UserStats; end?: UserStats } = {};
    const poll = async (): Promise<void> => {
      const [zl, audit] = await Promise.all([
        m.admin.call<{ items: ZoneView[] }>('GET', '/v1/zones'),
        m.admin.call<{ entries: AuditView[] }>('GET', '/v1/audit?limit=100'),
      ]);
      const now = Date.now();
      for (const z of zl.items) {
        const known = zones.get(z.id);
        if (known) {
          // Members change when risk spreads (an instance zone grows to the whole service).
          if (members(known) !== members(z)) {
            say(`${z.type} zone ${z.id} now around ${members(z)}`);
            summary.zoneList.push(`${z.type} ${members(z)}`);
            zones.set(z.id, z);
          }
          continue;
        }
        zones.set(z.id, z);
        summary.zonesSeen[z.type] = (summary.zonesSeen[z.type] ?? 0) + 1;
        summary.zoneList.push(`${z.type} ${members(z)}`);
        if (z.type === 'containment') {
          containment = z;
          summary.containedMembers ??= members(z);
          summary.containmentCreated = true;
          say(`⚠  CONTAINMENT zone ${z.id} around ${members(z)}: ${z.reason}`);
          const inst = z.members.filter((x) => x.instance !== undefined);
          if (inst.length === z.members.length) say(`   only ${members(z)} is contained: its own calls are refused and callers route around it to its sibling instances`);
          if (traffic) duringContainment.start = { ...traffic.normalTotals() };
        } else {
          say(`${z.type === 'isolation' ? '🔒' : '⚡'} ${z.type} zone ${z.id}: ${members(z)} — ${z.reason}`);
        }
      }
      for (const [id, z] of zones) {
        if (zl.items.some((x) => x.id === id)) continue;
        zones.delete(id);
        if (z.type === 'containment') {
          summary.containmentDissolved = true;
          if (traffic && duringContainment.start && !duringContainment.end) duringContainment.end = { ...traffic.normalTotals() };
          say(`✔  containment zone ${id} dissolved (${members(z)} calm for the cool-down) after ${secs(now - z.createdAt)}`);
        } else say(`${z.type} zone ${id} dissolved`);
      }
      const fresh = audit.entries.filter((e) => e.seq > lastSeq).reverse();
      if (fresh.length) lastSeq = Math.max(lastSeq, ...fresh.map((e) => e.seq));
      for (const e of fresh) {
        if (e.action === 'principal.flagged') {
          if (!summary.flagged.includes(e.target ?? '')) summary.flagged.push(e.target ?? '');
          const to = e.details?.to as { service: string; version: string } | undefined;
          say(`🚩 end user '${e.target}' flagged by the risk engine: ${e.reason} → ${e.details?.action ?? 'route'}${to ? ` to ${to.service} ${to.version}` : ''}`);
        } else if (e.action === 'principal.cleared') say(`   end user '${e.target}' cleared: ${e.reason}`);
        else if (e.action === 'alert') say(`   alert: ${e.reason}`);
        else if (e.action === 'zone.enforced' && e.target === containment?.id && summary.timeToContainmentMs === undefined) {
          // The manager measures this itself, on its clock: the first anomalous window's start to
          // the last ACK of the version that carries the zone.
          const d = e.details as { timeToContainmentSeconds: number; pushSeconds: number; sidecars: number; version: number };
          summary.timeToContainmentMs = d.timeToContainmentSeconds * 1000;
          summary.pushMs = d.pushSeconds * 1000;
          summary.decideMs = summary.timeToContainmentMs - summary.pushMs;
          say(`   time to containment: ${secs(summary.timeToContainmentMs)} from the first anomalous window to enforcement by all ${d.sidecars} sidecars (config v${d.version}; zone decided → last ACK ${ms(summary.pushMs)})`);
        }
      }
    };
    let polling = false;
    poller = setInterval(() => {
      if (polling) return;
      polling = true;
      poll().catch(() => {}).finally(() => (polling = false));
    }, 400);

    traffic = new TrafficGenerator({ url: m.gatewayUrl, windowMs: t.principalWindowMs });
    const tr = traffic;
    let refused = 0;
    const line = (): string => {
      const n = tr.normalTotals();
      const ma = tr.stats.get('mallory');
      const z = [...zones.values()].map((x) => x.type[0]!.toUpperCase()).sort().join('') || '-';
      return `[${clock()}] ${phase.padEnd(22)} users ${n.requests} req ${n.requests ? ((n.ok / n.requests) * 100).toFixed(1) : '100.0'}% ok` +
        (ma ? ` | mallory ${ma.requests} (v1 ${ma.reviews.v1 ?? 0}, 429 ${ma.rateLimited})` : '') + ` | zones ${z} | blocked ${refused}`;
    };
    ticker = setInterval(() => {
      void m.stats().then((s) => (refused = s['reviews-v2'] ?? refused));
      const cols = (o.out.columns ?? 120) - 1;
      if (tty) {
        progress = line().slice(0, cols);
        o.out.write(`\r\x1b[2K${progress}`);
      }
    }, 500);
    // Without a terminal the progress line is printed now and then instead of redrawn.
    const plain = tty ? undefined : setInterval(() => o.out.write(`${line()}\n`), 10_000);

    phase = 'normal traffic';
    tr.startNormal();
    say(`normal users browse /productpage through the ingress gateway (reviews v1/v2/v3 split ~1/3 each); the risk engine learns the baseline for ${t.warmupWindows} windows`);
    await wait((t.warmupWindows + 4) * t.windowMs);

    if (o.attack && !stopped && !deadlinePassed()) {
      phase = 'attack 1: scraping user';
      const before = { ...(tr.stats.get('mallory')?.reviews ?? {}) };
      say(`ATTACK 1: end user 'mallory' scrapes the product page (${30} requests per ${secs(t.principalWindowMs)}; the limit is 5)`);
      tr.startAttack(30);
      await wait(Math.round(t.principalWindowMs * 1.5));
      tr.stopAttack();
      const ma = tr.user('mallory');
      const v1 = (ma.reviews.v1 ?? 0) - (before.v1 ?? 0);
      const others = Object.entries(ma.reviews).filter(([v]) => v !== 'v1').reduce((a, [, c]) => a + c, 0);
      say(`   mallory: ${ma.requests} requests, ${ma.ok} pages served — ${v1} by reviews v1 (no stars), ${others} by v2/v3 before the flag; ${ma.rateLimited} refused by the rate limit (429)`);

      phase = 'attack 2: compromised';
      say('ATTACK 2: reviews-v2 is compromised: it starts calling details, productpage, reviews and ratings /admin/export: twenty 64 KiB uploads a second');
      m.send({ type: 'compromise', key: 'reviews-v2', on: true });
      const contained = await wait(40 * t.windowMs, () => summary.containmentCreated);
      if (contained) await wait(4 * t.windowMs);
      else if (!stopped && !deadlinePassed()) say('   (no containment zone yet — the engine needs more evidence)');
      m.send({ type: 'compromise', key: 'reviews-v2', on: false });
      const s = await m.stats();
      refused = s['reviews-v2'] ?? refused;
      say(`   the attack stops; reviews-v2's sidecar refused ${refused} of its exfiltration calls`);

      phase = 'recovery (cool-down)';
      if (summary.containmentCreated) {
        say(`waiting for the cool-down (${secs(t.coolDownMs)} below the exit score) before the containment zone dissolves`);
        await wait(t.coolDownMs + 30 * t.windowMs, () => summary.containmentDissolved);
      }
      summary.completed = summary.containmentCreated && summary.containmentDissolved;
    } else summary.completed = true;

    phase = 'normal traffic';
    if (o.durationMs > 0) await wait(Math.max(0, o.durationMs - (Date.now() - started)));
    else if (!stopped) {
      say('story complete; traffic continues — press Ctrl-C to stop');
      await o.stopSignal;
    }
    if (stopped) say('stopping (Ctrl-C)');
    clearInterval(plain);
    clearInterval(ticker);
    if (tty) {
      o.out.write('\r\x1b[2K');
      progress = '';
    }
    tr.stop();
    await sleep(300);
    clearInterval(poller);
    await poll().catch(() => {});
    const d0 = duringContainment.start;
    const d1 = duringContainment.end ?? tr.normalTotals();
    if (d0) summary.duringContainment = { requests: d1.requests - d0.requests, ok: d1.ok - d0.ok };
    printSummary(o.out, tr, summary, refused);
    return summary;
  } finally {
    clearInterval(poller);
    clearInterval(ticker);
    traffic?.stop();
    if (mesh) {
      o.out.write('stopping the mesh: sidecars, apps, zone manager…\n');
      await mesh.stop();
    }
    await rm(dir, { recursive: true, force: true }).catch(() => {});
    o.out.write('etz demo: stopped; every process ended\n');
  }
}

function printSummary(out: NodeJS.WritableStream, tr: TrafficGenerator, s: StorySummary, refused: number): void {
  const n = tr.normalTotals();
  const ma = tr.stats.get('mallory');
  const rows: Array<[string, string]> = [
    ['normal users: requests (ok)', `${n.requests} (${n.requests ? ((n.ok / n.requests) * 100).toFixed(1) : '0'}%)`],
    ['normal users: served by reviews v1/v2/v3', `${n.reviews.v1 ?? 0}/${n.reviews.v2 ?? 0}/${n.reviews.v3 ?? 0}`],
    ['mallory: requests / 429 / by v1 / by v2,v3', ma ? `${ma.requests} / ${ma.rateLimited} / ${ma.reviews.v1 ?? 0} / ${(ma.reviews.v2 ?? 0) + (ma.reviews.v3 ?? 0)}` : '-'],
    ['end users flagged by the engine', s.flagged.join(', ') || '-'],
    ['containment zone created', s.containmentCreated ? `yes, around ${s.containedMembers}` : 'no'],
    ['normal users while contained: requests (ok)', s.duringContainment ? `${s.duringContainment.requests} (${s.duringContainment.requests ? ((s.duringContainment.ok / s.duringContainment.requests) * 100).toFixed(1) : '100.0'}%)` : '-'],
    ['first anomalous window → zone decided', s.decideMs !== undefined ? secs(s.decideMs) : '-'],
    ['zone decided → acked by every sidecar', s.pushMs !== undefined ? ms(s.pushMs) : '-'],
    ['time to containment (→ enforced everywhere)', s.timeToContainmentMs !== undefined ? secs(s.timeToContainmentMs) : '-'],
    ['calls of reviews-v2 refused by its sidecar', String(refused)],
    ['containment zone dissolved', s.containmentDissolved ? 'yes' : 'no'],
    ['zones seen (containment/isolation/performance)', `${s.zonesSeen.containment ?? 0}/${s.zonesSeen.isolation ?? 0}/${s.zonesSeen.performance ?? 0}`],
  ];
  for (const z of s.zoneList) rows.push(['  zone', z]);
  const w = Math.max(...rows.map(([k]) => k.length));
  out.write(`\nSummary\n${'─'.repeat(w + 20)}\n`);
  for (const [k, v] of rows) out.write(`${k.padEnd(w)}  ${v}\n`);
  out.write(`${'─'.repeat(w + 20)}\n`);
}
