import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The dashboard in a real headless Chromium, watching a live `etz demo`: the page loads behind
// the admin token, the graph shows Bookinfo's services, and a containment zone around the
// compromised reviews-v2 instance (not the whole reviews service) appears during the attack and
// disappears after its cool-down — without reloading the page — and no other zone than the
// demo's standing ones ever shows.

/** Every zone row of the list as `type members` (members as the list prints them). */
const ZONE_ROWS = (rows: Array<{ getAttribute(name: string): string | null; children: ArrayLike<{ textContent: string | null }> }>) => rows.map((r) => `${r.getAttribute('data-zone-type')} ${r.children[1]?.textContent ?? ''}`).sort();
const STANDING = ['isolation ratings', 'performance details, productpage'];
// What the feed may report as created: the standing zones and the containment of reviews-v2.
const EXPECTED_ZONE_ID = /^(isolation-ratings|performance-details|containment-reviews-v2)-\d+$/;

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const CHROMIUM = process.env.ETZ_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));

test('dashboard in headless Chromium follows the demo live: services, containment zone in and out', {
  timeout: 170_000,
  skip: existsSync(CHROMIUM) ? false : `needs chromium at ${CHROMIUM}`,
}, async () => {
  const { chromium } = await import('playwright-core');
  const demo = spawn(process.execPath, [CLI, 'demo', '--speed', '15', '--duration', '80s', '--dashboard-port', '0', '--open'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  demo.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  demo.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<number | null>((resolve) => demo.on('exit', (c) => resolve(c)));
  const profile = await mkdtemp(join(tmpdir(), 'etz-chromium-'));
  await mkdir(ARTIFACTS, { recursive: true });
  // A fresh profile directory (playwright passes it to Chromium as --user-data-dir).
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const end = Date.now() + 60_000;
    let url: string | undefined;
    while (!url && Date.now() < end) {
      url = /dashboard: (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out)?.[1];
      if (!url) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(url, `no dashboard link in the demo output:\n${out}`);
    const base = url.replace(/\?token=.*/, '');
    const page = browser.pages()[0] ?? await browser.newPage();

    // Without the token: the sign-in page, not the dashboard.
    const anon = await page.goto(base);
    assert.equal(anon?.status(), 401);
    assert.match(await page.content(), /admin token/);

    // The sign-in link sets the session cookie and lands on the dashboard.
    await page.goto(url);
    assert.equal(new URL(page.url()).search, '', 'the token is not left in the address bar');
    for (const s of ['productpage', 'details', 'reviews', 'ratings', 'ingress-gateway']) {
      await page.waitForSelector(`#g g.node[data-service="${s}"]`, { timeout: 30_000 });
    }
    // Versions as nodes' chips: reviews v1, v2, v3.
    const versions = await page.$$eval('#g g.node[data-service="reviews"] rect[data-version]', (els) => els.map((e) => e.getAttribute('data-version')));
    assert.deepEqual(versions, ['v1', 'v2', 'v3']);
    // Standing zones from labels, drawn as groups and listed.
    await page.waitForSelector('#g g.zone[data-zone-type="isolation"]', { timeout: 30_000 });
    await page.waitForSelector('#zonerows tr[data-zone-type="performance"]', { timeout: 30_000 });
    // Traffic edges with mTLS once users browse.
    await page.waitForSelector('#g g.edge[data-edge="productpage->reviews"]', { timeout: 40_000 });
    assert.match(await page.textContent('#g g.edge[data-edge="productpage->reviews"]') ?? '', /mTLS \d+\.\d\/s · \d/);
    const firstUpdate = await page.getAttribute('body', 'data-updated');

    // The attack: a containment zone appears live, in the graph and in the zone list.
    await page.waitForSelector('#zonerows tr[data-zone-type="containment"]', { timeout: 90_000 });
    await page.waitForSelector('#g g.zone[data-zone-type="containment"]', { timeout: 5_000 });
    // The zone's member is the instance reviews-v2, not the whole service; the other zones are the
    // standing ones only (no collateral zone around the services reviews-v2 called).
    assert.deepEqual(await page.$$eval('#zonerows tr[data-zone-id]', ZONE_ROWS), ['containment reviews/reviews-v2', ...STANDING]);
    assert.match(await page.textContent('#g g.zone[data-zone-type="containment"]') ?? '', /containment \(reviews-v2\)/);
    await page.waitForSelector('#flagrows tr[data-principal="mallory"], #feed', { timeout: 5_000 });
    assert.match(await page.textContent('#feed') ?? '', /zone\.created/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-containment.png'), fullPage: true });
    assert.notEqual(await page.getAttribute('body', 'data-updated'), firstUpdate, 'the page updated itself');

    // After the attack: the zone dissolves after its cool-down, and the page shows it.
    await page.waitForSelector('#zonerows tr[data-zone-type="containment"]', { state: 'detached', timeout: 90_000 });
    assert.equal(await page.$('#g g.zone[data-zone-type="containment"]'), null);
    await page.waitForFunction("document.getElementById('feed').textContent.includes('zone.dissolved')", undefined, { timeout: 10_000 });
    assert.deepEqual(await page.$$eval('#zonerows tr[data-zone-id]', ZONE_ROWS), STANDING);
    const created = await page.$$eval('#feed div', (divs) => divs.map((d) => d.textContent ?? '').filter((t) => / zone\.created /.test(t)).map((t) => / zone\.created (\S+)/.exec(t)![1]!));
    assert.ok(created.length >= 1, 'the feed lists the zones created');
    for (const id of created) assert.match(id, EXPECTED_ZONE_ID);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-after.png'), fullPage: true });
  } finally {
    await browser.close();
    if (demo.exitCode === null) demo.kill('SIGINT');
    const code = await exited;
    await rm(profile, { recursive: true, force: true });
    assert.equal(code, 0, out);
  }
});
