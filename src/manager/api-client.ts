import { request } from 'node:https';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EtzError, type ErrorCode, ERRORS } from '../core/errors.js';
import { checkManagerIdentity } from '../protocol/server-identity.js';

/**
 * A small HTTPS client for the operator API, used by the CLI (etz status, zones, audit, token,
 * policy apply) and tests. Errors come back as EtzError with the server's ETZ_ERR_* code.
 */

export interface ClientOptions {
  url: string;
  ca: string;
  token?: string;
  cert?: string;
  key?: string;
  timeoutMs?: number;
}

export class ManagerClient {
  constructor(private readonly o: ClientOptions) {}

  get url(): string {
    return this.o.url;
  }

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const u = new URL(path, this.o.url);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolvePromise, reject) => {
      const req = request(u, {
        method,
        ca: this.o.ca,
        ...(this.o.cert ? { cert: this.o.cert, key: this.o.key } : {}),
        checkServerIdentity: checkManagerIdentity(),
        headers: {
          accept: 'application/json',
          ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}),
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
        timeout: this.o.timeoutMs ?? 10_000,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = text;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = json as { error?: string; reason?: string } | undefined;
            const code = e?.error && e.error in ERRORS ? (e.error as ErrorCode) : 'ETZ_ERR_INTERNAL';
            reject(new EtzError(code, `${method} ${u.pathname}: ${res.statusCode} ${e?.reason ?? text.slice(0, 200)}`, { details: { status: res.statusCode } }));
          } else {
            resolvePromise(json as T);
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.o.timeoutMs ?? 10_000} ms`)));
      req.on('error', (err) => reject(new EtzError('ETZ_ERR_MANAGER_UNREACHABLE', `cannot reach the manager at ${this.o.url}: ${err.message}`, { cause: err })));
      req.end(payload);
    });
  }
}

/**
 * Resolve how to reach the manager: explicit flags, then ETZ_MANAGER_URL / ETZ_ADMIN_TOKEN /
 * ETZ_MANAGER_CA, then the data directory the manager writes (endpoint.json, admin-token, CA).
 */
export async function clientFrom(opts: { server?: string; dataDir?: string; token?: string; tokenFile?: string; caFile?: string }, env: NodeJS.ProcessEnv = process.env): Promise<ManagerClient> {
  const dataDir = resolve(opts.dataDir ?? env.ETZ_MANAGER_DATA_DIR ?? 'etz-manager-data');
  let endpoint: { url?: string; caFile?: string } = {};
  try {
    endpoint = JSON.parse(await readFile(join(dataDir, 'endpoint.json'), 'utf8'));
  } catch {
    // No local manager data dir: flags or environment must say where the manager is.
  }
  const url = opts.server ?? env.ETZ_MANAGER_URL ?? endpoint.url;
  if (!url) throw new EtzError('ETZ_ERR_USAGE', `no manager address: pass --server URL, set ETZ_MANAGER_URL, or --data-dir of a running manager (${dataDir} has no endpoint.json)`);
  const caFile = opts.caFile ?? env.ETZ_MANAGER_CA ?? endpoint.caFile ?? join(dataDir, 'ca', 'trust-bundle.pem');
  let ca: string;
  try {
    ca = await readFile(caFile, 'utf8');
  } catch (err) {
    throw new EtzError('ETZ_ERR_USAGE', `cannot read the manager CA bundle ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (pass --ca FILE)`);
  }
  let token = opts.token ?? env.ETZ_ADMIN_TOKEN;
  if (!token) {
    const tf = opts.tokenFile ?? join(dataDir, 'admin-token');
    try {
      token = (await readFile(tf, 'utf8')).trim();
    } catch (err) {
      throw new EtzError('ETZ_ERR_USAGE', `no admin token: cannot read ${tf} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pass --token-file or set ETZ_ADMIN_TOKEN`);
    }
  }
  return new ManagerClient({ url, ca, token });
}

/** The options every operator CLI command accepts to find the manager. */
export const CLIENT_OPTIONS = {
  server: { type: 'string', short: 's' },
  'data-dir': { type: 'string', short: 'd' },
  'token-file': { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const CLIENT_USAGE = `Connection (default: the manager whose data dir is ./etz-manager-data):
  -s, --server URL       manager URL (or ETZ_MANAGER_URL)
  -d, --data-dir DIR     a local manager's data dir: its endpoint, admin token and CA
      --token-file FILE  admin token file (or ETZ_ADMIN_TOKEN)
      --ca FILE          CA bundle the manager's certificate chains to (or ETZ_MANAGER_CA)
      --json             print the raw JSON answer`;

export function clientFromFlags(v: Record<string, unknown>): Promise<ManagerClient> {
  return clientFrom({
    ...(v.server ? { server: v.server as string } : {}),
    ...(v['data-dir'] ? { dataDir: v['data-dir'] as string } : {}),
    ...(v['token-file'] ? { tokenFile: v['token-file'] as string } : {}),
    ...(v.ca ? { caFile: v.ca as string } : {}),
  });
}

/** Fixed-width table for CLI output. */
export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const w = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')).join('\n') + '\n';
}
