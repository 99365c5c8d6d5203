import { Agent, request } from 'node:http';

/**
 * Plays Bookinfo's users against the ingress gateway: normal readers who each open the product
 * page a few times per detector window, and the scripted attacker (`mallory`) who scrapes it far
 * faster. Each user is an end-user principal (x-etz-principal), as an identity-aware gateway
 * would establish it.
 */

export interface UserStats {
  requests: number;
  ok: number;
  rateLimited: number;
  denied: number;
  failed: number;
  /** Which reviews version served the user's pages (v1 = no stars). */
  reviews: Record<string, number>;
}

export interface TrafficOptions {
  /** http://127.0.0.1:PORT of the ingress gateway. */
  url: string;
  /** The detector window (ms): normal users stay at 3 requests per window. */
  windowMs: number;
  users?: number;
}

const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'ken', 'lena'];

export class TrafficGenerator {
  readonly stats = new Map<string, UserStats>();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 32 });
  private readonly timers = new Set<NodeJS.Timeout>();
  private attacker: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private stopped = false;

  constructor(private readonly o: TrafficOptions) {}

  startNormal(): void {
    const n = Math.min(this.o.users ?? 8, NAMES.length);
    const every = this.o.windowMs / 3;
    for (let i = 0; i < n; i++) {
      const user = NAMES[i]!;
      // Spread users over the interval so load is smooth.
      const first = setTimeout(() => {
        this.timers.delete(first);
        void this.visit(user);
        const t = setInterval(() => void this.visit(user), every);
        this.timers.add(t);
      }, (every * i) / n);
      this.timers.add(first);
    }
  }

  /** The scraping attacker: `perWindow` requests per detector window. */
  startAttack(perWindow = 30, user = 'mallory'): void {
    if (this.attacker) return;
    this.attacker = setInterval(() => void this.visit(user), this.o.windowMs / perWindow);
  }

  stopAttack(): void {
    clearInterval(this.attacker);
    this.attacker = undefined;
  }

  user(name: string): UserStats {
    let s = this.stats.get(name);
    if (!s) this.stats.set(name, (s = { requests: 0, ok: 0, rateLimited: 0, denied: 0, failed: 0, reviews: {} }));
    return s;
  }

  /** Totals over the normal users (everyone but `except`). */
  normalTotals(except = 'mallory'): UserStats {
    const t: UserStats = { requests: 0, ok: 0, rateLimited: 0, denied: 0, failed: 0, reviews: {} };
    for (const [name, s] of this.stats) {
      if (name === except) continue;
      t.requests += s.requests;
      t.ok += s.ok;
      t.rateLimited += s.rateLimited;
      t.denied += s.denied;
      t.failed += s.failed;
      for (const [v, c] of Object.entries(s.reviews)) t.reviews[v] = (t.reviews[v] ?? 0) + c;
    }
    return t;
  }

  private visit(user: string): Promise<void> {
    // Never pile up requests on a slow mesh: a user whose page is still loading skips a beat.
    if (this.stopped || this.inFlight > 64) return Promise.resolve();
    this.inFlight++;
    const s = this.user(user);
    s.requests++;
    return new Promise<void>((resolve) => {
      let settled = false;
      const settle = (count: () => void): void => {
        if (settled) return;
        settled = true;
        // A page still loading when the demo stops was cut short by the demo, not refused by the
        // mesh: it is not counted at all, so Ctrl-C never shows up as failed requests. An error
        // status that arrived complete still counts, whenever it came.
        if (this.stopped && count === broken) s.requests--;
        else count();
        this.inFlight--;
        resolve();
      };
      const fail = (): void => void s.failed++;
      // The connection ended without a whole answer (reset, timeout, or the demo's own stop).
      const broken = (): void => void s.failed++;
      const req = request(`${this.o.url}/productpage`, { agent: this.agent, headers: { host: 'productpage', 'x-etz-principal': user }, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status === 200) {
            settle(() => {
              s.ok++;
              try {
                const v = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { reviews?: string }).reviews ?? '?';
                s.reviews[v] = (s.reviews[v] ?? 0) + 1;
              } catch {
                /* a non-JSON page counts as served, without a version */
              }
            });
          } else if (status === 429) settle(() => void s.rateLimited++);
          else if (status === 403) settle(() => void s.denied++);
          else settle(fail);
        });
        res.on('error', () => settle(broken));
        res.on('aborted', () => settle(broken));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => settle(broken));
      req.end();
    });
  }

  stop(): void {
    this.stopped = true;
    this.stopAttack();
    for (const t of this.timers) {
      clearInterval(t);
      clearTimeout(t);
    }
    this.timers.clear();
    this.agent.destroy();
  }
}
