import { VERSION } from '../../core/version.js';
import type { Auth } from './http.js';

/**
 * The OpenAPI 3.1 document of the operator API, served at /v1/openapi.json. Paths come from the
 * router itself, so a route cannot exist without being documented; summaries and bodies are
 * listed here.
 */

const DOCS: Record<string, { summary: string; body?: string; query?: string[] }> = {
  'GET /healthz': { summary: 'Liveness; no authentication.' },
  'GET /v1/openapi.json': { summary: 'This document.' },
  'POST /v1/enroll': { summary: 'Enroll a sidecar: bootstrap token (Bearer) + CSR → SPIFFE certificate.', body: 'EnrollRequest' },
  'GET /v1/status': { summary: 'Manager summary: config version, sidecars by ACK state, zones, latest rollout.' },
  'GET /v1/sidecars': { summary: 'Enrolled sidecars with connection, ACKed config version, state, last seen.' },
  'DELETE /v1/sidecars/{instance}': { summary: 'Revoke a sidecar\'s identity now: { reason } required. Closes its control stream, refuses its reconnection, renewal and re-enrollment (403 ETZ_ERR_IDENTITY_REVOKED), and pushes the serials of every live certificate issued to it to all sidecars (resource `revoked`), which then refuse mTLS with them.', body: 'Revoke' },
  'GET /v1/revocations': { summary: 'Revoked instances: who revoked them, when, why, and the certificates listed until they expire.' },
  'GET /v1/services': { summary: 'Services with instance, connected and ACKed counts.' },
  'GET /v1/policies': { summary: 'All policy documents.' },
  'GET /v1/policies/{name}': { summary: 'One policy document (name, or namespace/name).' },
  'PUT /v1/policies/{name}': { summary: 'Lint and apply one policy document; ?dryRun=true lints only; a conflict with the stored set is refused (409) unless ?force=true.', body: 'PolicyDocument', query: ['dryRun', 'force'] },
  'POST /v1/policies': { summary: 'Lint and apply several documents ({ items: [...] }); ?dryRun=true lints only; a conflict with the stored set is refused (409) unless ?force=true.', body: 'PolicyList', query: ['dryRun', 'force'] },
  'DELETE /v1/policies/{name}': { summary: 'Delete a policy.' },
  'GET /v1/zones': { summary: 'Zones in force.' },
  'GET /v1/zones/{id}': { summary: 'One zone.' },
  'POST /v1/zones': { summary: 'Create a zone by hand: type, members, reason, optional ttl and pinned.', body: 'CreateZone' },
  'POST /v1/zones/{id}/dissolve': { summary: 'Dissolve a zone, with a reason.', body: 'Dissolve' },
  'POST /v1/zones/{id}/extend': { summary: 'Push a zone\'s expiry further: { ttl: "30m", reason }.', body: 'Extend' },
  'POST /v1/zones/{id}/pin': { summary: 'Pin (or unpin with { pinned: false }) a zone: automation leaves it alone.', body: 'Pin' },
  'GET /v1/resources/{type}': { summary: 'Operator-set resources of one type on a topic (?topic=mesh|service/NAME|instance/NAME).', query: ['topic'] },
  'PUT /v1/resources/{type}': { summary: 'Replace the resources of one type on a topic ({ items: [...] }). For peerAuthentication, items is { mode?, portLevel? }: inbound mTLS modes that sidecars apply to new connections without restart. `revoked` is refused: DELETE /v1/sidecars/{instance} sets it.', body: 'Resources', query: ['topic'] },
  'GET /v1/rollouts': { summary: 'Recent config changes with rollout counts (acked, nacked, pending) and whether in force.', query: ['limit'] },
  'GET /v1/rollouts/{version}': { summary: 'One change: the state of every targeted sidecar.' },
  'GET /v1/audit': { summary: 'Audit log, newest first; page with ?before=<seq>&limit=N; filter ?action=prefix.', query: ['limit', 'before', 'action'] },
  'GET /v1/tokens': { summary: 'Bootstrap tokens (never their secrets).' },
  'POST /v1/tokens': { summary: 'Create a bootstrap token; the secret is returned once.', body: 'CreateToken' },
  'DELETE /v1/tokens/{id}': { summary: 'Revoke a bootstrap token.' },
  'POST /v1/telemetry': { summary: 'Upload telemetry records (vulnerability scans, intel, traces) as { records: [...] }.', body: 'Telemetry' },
  'GET /v1/risk': { summary: 'Risk scores of all subjects (when the risk engine is running).' },
  'GET /v1/risk/{subject}': { summary: 'Risk of one subject with explanations.' },
  'GET /v1/traffic': { summary: 'Traffic between services over a window (?window=5m).', query: ['window'] },
  'GET /metrics': { summary: 'Prometheus metrics.' },
};

const SCHEMAS = {
  Error: { type: 'object', required: ['error', 'reason'], properties: { error: { type: 'string', description: 'ETZ_ERR_* code' }, reason: { type: 'string' } } },
  EnrollRequest: { type: 'object', required: ['csr', 'service', 'instance'], properties: { csr: { type: 'string' }, service: { type: 'string' }, instance: { type: 'string' }, version: { type: 'string' } } },
  PolicyDocument: { type: 'object', required: ['apiVersion', 'kind', 'metadata'], properties: { apiVersion: { const: 'etz.io/v1' }, kind: { enum: ['AuthorizationPolicy', 'NetworkPolicy', 'PolicyDefaults'] }, metadata: { type: 'object' }, spec: { type: 'object' } } },
  PolicyList: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: { $ref: '#/components/schemas/PolicyDocument' } } } },
  CreateZone: {
    type: 'object', required: ['type', 'members', 'reason'],
    properties: {
      type: { enum: ['containment', 'isolation', 'performance'] },
      members: { type: 'array', items: { type: 'object', required: ['service'], properties: { service: { type: 'string' }, version: { type: 'string' }, instance: { type: 'string' } } } },
      reason: { type: 'string' }, ttl: { type: 'string', examples: ['30m'] }, pinned: { type: 'boolean' },
    },
  },
  Revoke: { type: 'object', required: ['reason'], properties: { reason: { type: 'string' } } },
  Dissolve: { type: 'object', required: ['reason'], properties: { reason: { type: 'string' } } },
  Pin: { type: 'object', properties: { pinned: { type: 'boolean', default: true } } },
  Extend: { type: 'object', required: ['ttl', 'reason'], properties: { ttl: { type: 'string', examples: ['30m'] }, reason: { type: 'string' } } },
  Resources: { type: 'object', required: ['items'], properties: { items: { type: 'array' } } },
  CreateToken: { type: 'object', properties: { scope: { type: 'object', properties: { service: { type: 'string' }, namespace: { type: 'string' } } }, ttl: { type: 'string', examples: ['1h'] }, uses: { type: 'integer', default: 1 }, description: { type: 'string' } } },
  Telemetry: { type: 'object', required: ['records'], properties: { records: { type: 'array', items: { type: 'object' } } } },
};

export function openApiDocument(routes: Array<{ method: string; path: string; auth: Auth }>): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const d = DOCS[`${r.method} ${r.path.replace(/\*/g, "")}`] ?? { summary: '' };
    const params = [...r.path.matchAll(/\{(\w+)\*?\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    for (const q of d.query ?? []) params.push({ name: q, in: 'query', required: false, schema: { type: 'string' } });
    const op: Record<string, unknown> = {
      summary: d.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(d.body ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${d.body}` } } } } } : {}),
      security: r.auth === 'admin' ? [{ adminToken: [] }, { adminCert: [] }] : r.auth === 'bootstrap' ? [{ bootstrapToken: [] }] : [],
      responses: {
        200: { description: 'OK', content: { 'application/json': { schema: { type: 'object' } } } },
        ...(r.auth !== 'none' ? { 401: { description: 'Not authenticated', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } } : {}),
        400: { description: 'Invalid input', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    };
    const p = r.path.replace(/\{(\w+)\*\}/g, '{$1}');
    (paths[p] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: { title: 'etz zone manager API', version: VERSION, description: 'Operator API of the etz zone manager. HTTPS; authenticate with the admin token (Bearer) or an admin client certificate.' },
    paths,
    components: {
      schemas: SCHEMAS,
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'The admin token from <dataDir>/admin-token.' },
        adminCert: { type: 'mutualTLS', description: 'A client certificate whose SPIFFE ID is in api.adminIdentities.' },
        bootstrapToken: { type: 'http', scheme: 'bearer', description: 'A bootstrap token from `etz manager token create`.' },
      },
    },
  };
}
