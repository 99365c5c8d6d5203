import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { EtzError } from '../core/errors.js';
import { COLL, type Store } from './store/store.js';

/**
 * Who may talk to the manager. Operators: the admin token (a random secret kept in the data dir,
 * mode 0600) or a client certificate whose SPIFFE ID is listed in api.adminIdentities.
 * Sidecars: a bootstrap token once, to enroll; their certificate afterwards.
 *
 * Secrets are stored only as SHA-256 hashes and compared in constant time; a token is shown
 * once, when it is created.
 */

export const ADMIN_TOKEN_FILE = 'admin-token';

function hash(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

function sameHash(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads the admin token, creating it on first start. Returns it and whether it is new. */
export async function ensureAdminToken(dataDir: string): Promise<{ token: string; created: boolean }> {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  try {
    return { token: (await readFile(file, 'utf8')).trim(), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = `etza_${randomBytes(32).toString('base64url')}`;
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  return { token, created: true };
}

export class AdminAuth {
  private readonly tokenHash: Buffer;
  constructor(token: string, private readonly identities: ReadonlySet<string>) {
    this.tokenHash = hash(token);
  }

  /** `authorization` header value and the verified client certificate's SPIFFE ID, if any. */
  check(authorization: string | undefined, certSpiffeId: string | undefined): { ok: true; actor: string } | { ok: false; reason: string } {
    if (certSpiffeId && this.identities.has(certSpiffeId)) return { ok: true, actor: certSpiffeId };
    const m = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization) : null;
    if (m && sameHash(hash(m[1]!), this.tokenHash)) return { ok: true, actor: 'admin-token' };
    if (m) return { ok: false, reason: 'invalid admin token' };
    if (certSpiffeId) return { ok: false, reason: `identity ${certSpiffeId} is not an admin` };
    return { ok: false, reason: 'no credentials' };
  }
}

export interface TokenScope {
  service?: string;
  namespace?: string;
}

export interface TokenRecord {
  id: string;
  hash: string;
  scope: TokenScope;
  createdAt: number;
  expiresAt: number;
  /** Enrollments left; a one-time token starts at 1. */
  usesLeft: number;
  createdBy: string;
  description?: string;
}

export type PublicToken = Omit<TokenRecord, 'hash'>;

/** Bootstrap tokens: `etzb_<id>.<secret>`; the id finds the record, the secret proves it. */
export class BootstrapTokens {
  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  async create(opts: { scope?: TokenScope; ttlMs: number; uses?: number; createdBy: string; description?: string }): Promise<{ token: string; record: PublicToken }> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const rec: TokenRecord = {
      id,
      hash: hash(secret).toString('hex'),
      scope: opts.scope ?? {},
      createdAt: this.now(),
      expiresAt: this.now() + opts.ttlMs,
      usesLeft: opts.uses ?? 1,
      createdBy: opts.createdBy,
      ...(opts.description ? { description: opts.description } : {}),
    };
    await this.store.put(COLL.tokens, id, rec);
    return { token: `etzb_${id}.${secret}`, record: publicToken(rec) };
  }

  list(): PublicToken[] {
    return this.store.list<TokenRecord>(COLL.tokens).map(([, r]) => publicToken(r));
  }

  revoke(id: string): Promise<boolean> {
    return this.store.delete(COLL.tokens, id);
  }

  /**
   * Checks the token and that it may enroll `service`, and spends one use durably before the
   * caller issues anything: a crash right after cannot leave a one-time token usable twice.
   */
  async consume(token: string, service: string): Promise<TokenRecord> {
    const m = /^etzb_([0-9a-f]{12})\.([A-Za-z0-9_-]{16,64})$/.exec(token);
    if (!m) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', 'malformed bootstrap token');
    const rec = this.store.get<TokenRecord>(COLL.tokens, m[1]!);
    if (!rec || !sameHash(hash(m[2]!), Buffer.from(rec.hash, 'hex'))) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', 'unknown bootstrap token');
    if (rec.expiresAt <= this.now()) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', `bootstrap token ${rec.id} expired`);
    if (rec.usesLeft <= 0) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', `bootstrap token ${rec.id} was already used`);
    if (rec.scope.service && rec.scope.service !== service) {
      throw new EtzError('ETZ_ERR_FORBIDDEN', `bootstrap token ${rec.id} may enroll only service '${rec.scope.service}', not '${service}'`);
    }
    const next = { ...rec, usesLeft: rec.usesLeft - 1 };
    await this.store.put(COLL.tokens, rec.id, next);
    return next;
  }
}

function publicToken(r: TokenRecord): PublicToken {
  const { hash: _h, ...rest } = r;
  return rest;
}
