import { Ajv, type ValidateFunction } from 'ajv';
import { EtzError } from '../../core/errors.js';
import { formatAjvError } from '../../config/load.js';
import { parseDuration } from '../../identity/index.js';
import { RESOURCE_TYPES, isTopic, parseEnrollRequest, ProtocolError, type ResourceType } from '../../protocol/messages.js';
import type { Registry } from '../../core/metrics.js';
import type { AuditLog } from '../audit.js';
import type { BootstrapTokens } from '../auth.js';
import type { EnrollmentService } from '../enroll.js';
import type { ConfigHub } from '../pubsub/hub.js';
import type { PolicyService } from '../policies.js';
import type { ResourceService } from '../resources.js';
import type { RevocationService } from '../revocation.js';
import type { TelemetryIntake } from '../telemetry-intake.js';
import type { ZoneBackend } from '../zone-backend.js';
import { invalid, type Router } from './http.js';
import { openApiDocument } from './openapi.js';

/** The parts of the manager the API reads and drives. */
export interface ApiContext {
  hub: ConfigHub;
  audit: AuditLog;
  tokens: BootstrapTokens;
  enrollment: EnrollmentService;
  policies: PolicyService;
  resources: ResourceService;
  intake: TelemetryIntake;
  zones(): ZoneBackend;
  metrics: Registry;
  defaultTokenTtlMs: number;
  startedAt: number;
  version: string;
  revocations: RevocationService;
  /** Close the control streams of an instance; returns how many were open. */
  closeStreams(instance: string, reason: string): number;
}

const ajv = new Ajv({ allErrors: false, strict: false, useDefaults: true });
const member = {
  type: 'object',
  additionalProperties: false,
  required: ['service'],
  properties: { service: { type: 'string', minLength: 1 }, version: { type: 'string' }, instance: { type: 'string' } },
};
const schemas: Record<string, ValidateFunction> = {
  zone: ajv.compile({
    type: 'object',
    additionalProperties: false,
    required: ['type', 'members', 'reason'],
    properties: {
      type: { enum: ['containment', 'isolation', 'performance'] },
      members: { type: 'array', minItems: 1, maxItems: 1000, items: member },
      reason: { type: 'string', minLength: 1, maxLength: 1024 },
      ttl: { type: ['string', 'integer'] },
      pinned: { type: 'boolean' },
    },
  }),
  revoke: ajv.compile({
    type: 'object', additionalProperties: false, required: ['reason'],
    properties: { reason: { type: 'string', minLength: 1, maxLength: 1024 } },
  }),
  dissolve: ajv.compile({
    type: 'object', additionalProperties: false, required: ['reason'],
    properties: { reason: { type: 'string', minLength: 1, maxLength: 1024 } },
  }),
  extend: ajv.compile({
    type: 'object', additionalProperties: false, required: ['ttl', 'reason'],
    properties: { ttl: { type: ['string', 'integer'] }, reason: { type: 'string', minLength: 1, maxLength: 1024 } },
  }),
  pin: ajv.compile({ type: 'object', additionalProperties: false, properties: { pinned: { type: 'boolean', default: true } } }),
  token: ajv.compile({
    type: 'object',
    additionalProperties: false,
    properties: {
      scope: { type: 'object', additionalProperties: false, properties: { service: { type: 'string', minLength: 1 }, namespace: { type: 'string', minLength: 1 } } },
      ttl: { type: ['string', 'integer'] },
      uses: { type: 'integer', minimum: 1, maximum: 100000, default: 1 },
      description: { type: 'string', maxLength: 256 },
    },
  }),
  resources: ajv.compile({
    type: 'object', additionalProperties: false, required: ['items'],
    properties: { items: { type: ['array', 'object'], maxItems: 100000 } },
  }),
  telemetry: ajv.compile({
    type: 'object', additionalProperties: false, required: ['records'],
    properties: { records: { type: 'array', maxItems: 100000 } },
  }),
};

function validate<T>(name: string, body: unknown): T {
  const v = schemas[name]!;
  const data = body ?? {};
  if (!v(data)) {
    const { field, reason } = formatAjvError(v.errors![0]!);
    throw invalid(field, reason);
  }
  return data as T;
}

function ttlMs(v: string | number | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v, what);
  } catch (err) {
    throw invalid(`/${what}`, (err as Error).message);
  }
}

export function registerRoutes(router: Router, ctx: ApiContext): void {
  const { hub, audit } = ctx;

  router.route('GET', '/healthz', 'none', () => ({ status: 'ok' }));
  router.route('GET', '/v1/openapi.json', 'none', () => openApiDocument(router.list()));

  router.route('POST', '/v1/enroll', 'bootstrap', async (r) => {
    const m = /^Bearer\s+(\S+)$/i.exec(r.req.headers.authorization ?? '');
    let req;
    try {
      req = parseEnrollRequest(await r.body());
    } catch (err) {
      if (err instanceof ProtocolError) throw new EtzError('ETZ_ERR_INVALID_INPUT', err.message);
      throw err;
    }
    try {
      if (!m) throw new EtzError('ETZ_ERR_UNAUTHENTICATED', 'a bootstrap token is required (Authorization: Bearer etzb_…)');
      const { response, record } = await ctx.enrollment.enroll(m[1]!, req);
      await audit.record({ actor: `token:${record.tokenId}`, action: 'sidecar.enroll', outcome: 'ok', target: `${record.service}/${record.instance}`, details: { spiffeId: record.spiffeId } });
      return response;
    } catch (err) {
      await audit.record({ actor: r.req.socket.remoteAddress ?? '?', action: 'sidecar.enroll', outcome: 'denied', target: `${req.service}/${req.instance}`, reason: (err as Error).message });
      throw err;
    }
  });

  router.route('GET', '/v1/status', 'admin', () => {
    const subs = hub.status();
    const latest = hub.listRollouts()[0];
    return {
      version: ctx.version,
      uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000),
      configVersion: hub.currentVersion,
      sidecars: { enrolled: ctx.enrollment.list().length, connected: subs.length, acked: subs.filter((s) => s.state === 'acked').length, nacked: subs.filter((s) => s.state === 'nacked').length, pending: subs.filter((s) => s.state === 'pending').length },
      zones: ctx.zones().list().length,
      policies: ctx.policies.list().length,
      latestRollout: latest ? { version: latest.version, reason: latest.reason, inForce: latest.inForce, counts: latest.counts } : null,
    };
  });

  router.route('GET', '/v1/sidecars', 'admin', () => {
    const live = new Map(hub.status().map((s) => [s.id, s]));
    return {
      items: ctx.enrollment.list().map((e) => {
        const s = live.get(e.instance);
        return {
          instance: e.instance, service: e.service, version: s?.node.version ?? e.version ?? null, spiffeId: e.spiffeId,
          connected: !!s, configVersion: s?.ackedVersion ?? null, state: s?.state ?? 'disconnected',
          ...(s?.lastError ? { lastError: s.lastError } : {}),
          lastSeen: s ? new Date(s.lastSeen).toISOString() : null, certExpiresAt: new Date(e.certExpiresAt).toISOString(),
        };
      }),
    };
  });

  // ---- revocation: evict a sidecar's identity now, not when its certificate expires ----
  router.route('DELETE', '/v1/sidecars/{instance}', 'admin', async (r) => {
    const b = validate<{ reason: string }>('revoke', await r.body());
    const instance = r.params.instance!;
    const rec = ctx.enrollment.get(instance);
    if (!rec) {
      if (ctx.revocations.get(instance)) throw new EtzError('ETZ_ERR_IDENTITY_REVOKED', `instance '${instance}' is already revoked`);
      throw new EtzError('ETZ_ERR_NOT_FOUND', `no enrolled sidecar '${instance}'`);
    }
    // Records written before serials were kept list none: the current certificate's expiry still
    // bounds the entry, but its serial is unknown, so say so rather than claim it is refused.
    const certs = rec.certs ?? [];
    let revoked = await ctx.revocations.revoke({ instance, service: rec.service, spiffeId: rec.spiffeId, actor: r.actor, reason: b.reason, certs });
    // A renewal that was being signed as the revocation began is caught by this second read.
    const again = ctx.enrollment.get(instance);
    if (again?.certs && again.certs.some((c) => !revoked.certs.some((x) => x.serial === c.serial))) {
      revoked = await ctx.revocations.revoke({ instance, service: rec.service, spiffeId: rec.spiffeId, actor: r.actor, reason: b.reason, certs: again.certs });
    }
    await ctx.enrollment.remove(instance);
    const closed = ctx.closeStreams(instance, b.reason);
    await audit.record({
      actor: r.actor, action: 'sidecar.revoke', outcome: 'ok', target: `${rec.service}/${instance}`, reason: b.reason,
      details: { spiffeId: rec.spiffeId, serials: revoked.certs.map((c) => c.serial), streamsClosed: closed, ...(rec.certs ? {} : { warning: 'enrolled before serials were recorded; no certificate serial listed' }) },
    });
    return { revoked: instance, certificates: revoked.certs.map((c) => ({ serial: c.serial, notAfter: new Date(c.notAfter).toISOString() })), streamsClosed: closed, configVersion: hub.currentVersion };
  });
  router.route('GET', '/v1/revocations', 'admin', () => ({
    items: ctx.revocations.list().map((x) => ({ ...x, revokedAt: new Date(x.revokedAt).toISOString(), certs: x.certs.map((c) => ({ serial: c.serial, notAfter: new Date(c.notAfter).toISOString() })) })),
  }));

  router.route('GET', '/v1/services', 'admin', () => {
    const live = new Map(hub.status().map((s) => [s.id, s]));
    const by = new Map<string, { service: string; instances: number; connected: number; acked: number; versions: Set<string> }>();
    for (const e of ctx.enrollment.list()) {
      let s = by.get(e.service);
      if (!s) by.set(e.service, (s = { service: e.service, instances: 0, connected: 0, acked: 0, versions: new Set() }));
      s.instances++;
      const l = live.get(e.instance);
      if (l) s.connected++;
      if (l?.state === 'acked') s.acked++;
      if (e.version) s.versions.add(e.version);
    }
    return { items: [...by.values()].map((s) => ({ ...s, versions: [...s.versions].sort() })) };
  });

  // ---- policies ----
  router.route('GET', '/v1/policies', 'admin', () => ({ items: ctx.policies.list() }));
  router.route('GET', '/v1/policies/{name*}', 'admin', (r) => {
    const p = ctx.policies.get(r.params.name!);
    if (!p) throw new EtzError('ETZ_ERR_NOT_FOUND', `no policy '${r.params.name}'`);
    return p;
  });
  router.route('PUT', '/v1/policies/{name*}', 'admin', async (r) => {
    const doc = await r.body();
    const dryRun = r.query.get('dryRun') === 'true';
    const res = await ctx.policies.apply(r.params.name!, doc, { dryRun, force: r.query.get('force') === 'true' });
    if (!dryRun) await audit.record({ actor: r.actor, action: 'policy.apply', outcome: 'ok', target: r.params.name!, details: { warnings: res.warnings.length } });
    return { ...res, configVersion: hub.currentVersion };
  });
  router.route('POST', '/v1/policies', 'admin', async (r) => {
    const body = (await r.body()) as { items?: unknown } | undefined;
    const dryRun = r.query.get('dryRun') === 'true';
    const res = await ctx.policies.apply(undefined, body && Array.isArray(body.items) ? body.items : body, { dryRun, force: r.query.get('force') === 'true' });
    if (!dryRun) await audit.record({ actor: r.actor, action: 'policy.apply', outcome: 'ok', target: res.applied.join(','), details: { warnings: res.warnings.length } });
    return { ...res, configVersion: hub.currentVersion };
  });
  router.route('DELETE', '/v1/policies/{name*}', 'admin', async (r) => {
    if (!(await ctx.policies.remove(r.params.name!))) throw new EtzError('ETZ_ERR_NOT_FOUND', `no policy '${r.params.name}'`);
    await audit.record({ actor: r.actor, action: 'policy.delete', outcome: 'ok', target: r.params.name! });
    return { deleted: r.params.name };
  });

  // ---- zones ----
  router.route('GET', '/v1/zones', 'admin', () => ({ items: ctx.zones().list() }));
  router.route('GET', '/v1/zones/{id}', 'admin', (r) => {
    const z = ctx.zones().get(r.params.id!);
    if (!z) throw new EtzError('ETZ_ERR_NOT_FOUND', `no zone '${r.params.id}'`);
    return z;
  });
  router.route('POST', '/v1/zones', 'admin', async (r) => {
    const b = validate<{ type: 'containment' | 'isolation' | 'performance'; members: []; reason: string; ttl?: string | number; pinned?: boolean }>('zone', await r.body());
    const ttl = ttlMs(b.ttl, 'ttl');
    const z = await ctx.zones().create({ type: b.type, members: b.members, reason: b.reason, ...(ttl ? { ttlMs: ttl } : {}), ...(b.pinned !== undefined ? { pinned: b.pinned } : {}) }, r.actor);
    await audit.record({ actor: r.actor, action: 'zone.create', outcome: 'ok', target: z.id, reason: b.reason, details: { type: z.type, members: z.members, ...(ttl ? { ttlMs: ttl } : {}) } });
    return z;
  });
  router.route('POST', '/v1/zones/{id}/dissolve', 'admin', async (r) => {
    const b = validate<{ reason: string }>('dissolve', await r.body());
    const z = await ctx.zones().dissolve(r.params.id!, b.reason, r.actor);
    await audit.record({ actor: r.actor, action: 'zone.dissolve', outcome: 'ok', target: z.id, reason: b.reason });
    return { dissolved: z.id };
  });
  router.route('POST', '/v1/zones/{id}/pin', 'admin', async (r) => {
    const b = validate<{ pinned: boolean }>('pin', await r.body());
    const z = await ctx.zones().pin(r.params.id!, b.pinned, r.actor);
    await audit.record({ actor: r.actor, action: b.pinned ? 'zone.pin' : 'zone.unpin', outcome: 'ok', target: z.id });
    return z;
  });

  router.route('POST', '/v1/zones/{id}/extend', 'admin', async (r) => {
    const b = validate<{ ttl: string | number; reason: string }>('extend', await r.body());
    const ms = ttlMs(b.ttl, 'ttl')!;
    const backend = ctx.zones();
    if (!backend.extend) throw new EtzError('ETZ_ERR_INVALID_INPUT', 'this zone backend does not extend zones');
    const z = await backend.extend(r.params.id!, ms, b.reason, r.actor);
    await audit.record({ actor: r.actor, action: 'zone.extend', outcome: 'ok', target: z.id, reason: b.reason, details: { ttlMs: ms, expiresAt: z.expiresAt } });
    return z;
  });

  // ---- raw resources (routes, rate limits, intel …) per topic ----
  router.route('GET', '/v1/resources/{type}', 'admin', (r) => {
    const type = resourceType(r.params.type!);
    return { topic: r.query.get('topic') ?? 'mesh', type, items: ctx.resources.get(r.query.get('topic') ?? 'mesh', type) };
  });
  router.route('PUT', '/v1/resources/{type}', 'admin', async (r) => {
    const type = resourceType(r.params.type!);
    if (type === 'revoked') throw new EtzError('ETZ_ERR_INVALID_INPUT', 'the revocation list is kept by the manager: revoke with DELETE /v1/sidecars/{instance}');
    const topic = r.query.get('topic') ?? 'mesh';
    if (!isTopic(topic)) throw invalid('topic', 'must be mesh, service/<name> or instance/<name>');
    const b = validate<{ items: unknown[] | Record<string, unknown> }>('resources', await r.body());
    await ctx.resources.set(topic, type, b.items);
    const count = Array.isArray(b.items) ? b.items.length : 1;
    await audit.record({ actor: r.actor, action: 'resources.set', outcome: 'ok', target: `${topic}/${type}`, details: { items: count } });
    return { topic, type, items: count, configVersion: hub.currentVersion };
  });

  // ---- rollouts ----
  router.route('GET', '/v1/rollouts', 'admin', (r) => {
    const limit = Math.min(Number(r.query.get('limit') ?? 20) || 20, 200);
    return { items: hub.listRollouts().slice(0, limit).map(summary) };
  });
  router.route('GET', '/v1/rollouts/{version}', 'admin', (r) => {
    const ro = hub.getRollout(Number(r.params.version));
    if (!ro) throw new EtzError('ETZ_ERR_NOT_FOUND', `no rollout for version ${r.params.version}`);
    return ro;
  });

  // ---- audit ----
  router.route('GET', '/v1/audit', 'admin', (r) => {
    const before = r.query.get('before');
    const action = r.query.get('action');
    return audit.page({ limit: Number(r.query.get('limit') ?? 50) || 50, ...(before ? { before: Number(before) } : {}), ...(action ? { action } : {}) });
  });

  // ---- bootstrap tokens ----
  router.route('GET', '/v1/tokens', 'admin', () => ({ items: ctx.tokens.list() }));
  router.route('POST', '/v1/tokens', 'admin', async (r) => {
    const b = validate<{ scope?: { service?: string; namespace?: string }; ttl?: string | number; uses: number; description?: string }>('token', await r.body());
    const res = await ctx.tokens.create({ ttlMs: ttlMs(b.ttl, 'ttl') ?? ctx.defaultTokenTtlMs, uses: b.uses, createdBy: r.actor, ...(b.scope ? { scope: b.scope } : {}), ...(b.description ? { description: b.description } : {}) });
    await audit.record({ actor: r.actor, action: 'token.create', outcome: 'ok', target: res.record.id, details: { scope: res.record.scope, uses: res.record.usesLeft } });
    return res;
  });
  router.route('DELETE', '/v1/tokens/{id}', 'admin', async (r) => {
    if (!(await ctx.tokens.revoke(r.params.id!))) throw new EtzError('ETZ_ERR_NOT_FOUND', `no token '${r.params.id}'`);
    await audit.record({ actor: r.actor, action: 'token.revoke', outcome: 'ok', target: r.params.id! });
    return { revoked: r.params.id };
  });

  // ---- operator telemetry upload (vuln scans, intel feeds, traces) ----
  router.route('POST', '/v1/telemetry', 'admin', async (r) => {
    const b = validate<{ records: unknown[] }>('telemetry', await r.body());
    return ctx.intake.accept(null, b.records);
  });

  router.route('GET', '/metrics', 'admin', async (r) => {
    const text = await ctx.metrics.metrics();
    r.res.writeHead(200, { 'content-type': ctx.metrics.contentType });
    r.res.end(text);
    return undefined;
  });
}

function resourceType(t: string): ResourceType {
  if (!(RESOURCE_TYPES as readonly string[]).includes(t)) throw new EtzError('ETZ_ERR_NOT_FOUND', `unknown resource type '${t}' (one of ${RESOURCE_TYPES.join(', ')})`);
  return t as ResourceType;
}

function summary(r: ReturnType<ConfigHub['listRollouts']>[number]) {
  return { version: r.version, reason: r.reason, startedAt: new Date(r.startedAt).toISOString(), ...(r.completedAt ? { completedAt: new Date(r.completedAt).toISOString() } : {}), inForce: r.inForce, counts: r.counts };
}
