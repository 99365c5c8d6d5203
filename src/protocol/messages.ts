import { Ajv, type ValidateFunction } from 'ajv';

/**
 * The sidecar↔manager wire protocol: JSON text frames over one WebSocket (WSS, client
 * certificate). Every frame is one object with a `type`; both ends validate every frame they
 * receive against the schemas below before acting on it, so a malformed frame is a counted
 * protocol error and never reaches the logic behind it.
 *
 * Config follows xDS state-of-the-world-per-type semantics: the first push on a stream is a full
 * `snapshot`; later pushes are `delta`s that replace whole resource types. Each push carries a
 * monotonically increasing `version` and a fresh `nonce`; the sidecar answers `ack` or `nack`
 * echoing both, and a nack leaves it on its previous version.
 */

export const PROTOCOL_VERSION = 1;
/** Sub-protocol name offered in the WebSocket handshake; bumps with PROTOCOL_VERSION. */
export const WS_SUBPROTOCOL = 'etz.v1';
export const STREAM_PATH = '/v1/stream';
export const ENROLL_PATH = '/v1/enroll';

export const RESOURCE_TYPES = ['policies', 'zones', 'routes', 'rateLimits', 'intel', 'principals', 'trustBundle', 'revoked', 'peerAuthentication'] as const;
export type ResourceType = (typeof RESOURCE_TYPES)[number];
/**
 * Types a snapshot may leave out (added after protocol 1 shipped): a snapshot from a manager that
 * predates them still validates, and the sidecar reads a missing one as "none".
 */
export const OPTIONAL_RESOURCE_TYPES: readonly ResourceType[] = ['revoked', 'peerAuthentication'];

/**
 * The whole config a sidecar enforces. Each type is a JSON list (policies, routes, trustBundle:
 * PEM strings; revoked: { serial, notAfter } of revoked certificates) or a JSON object (zones:
 * { zones }, principals: { flagged }, peerAuthentication: { mode?, portLevel? }); the sidecar validates
 * their inner shape when it applies them. An empty list means "none of this type".
 */
export type ResourceValue = unknown[] | Record<string, unknown>;
export type Resources = { [K in ResourceType]: ResourceValue };

/** An entry of the `revoked` resource: a revoked certificate, listed until it expires. */
export interface RevokedCert {
  /** Upper-case hex without colons or leading zeros (the form Node reports for a peer certificate). */
  serial: string;
  /** The certificate's notAfter, ms since the epoch. */
  notAfter: number;
}
/** Entries outlive their certificate by this much, for peers whose clocks run behind. */
export const REVOCATION_EXPIRY_MARGIN_MS = 5 * 60_000;

/** One spelling of a certificate serial for both sides of a revocation lookup. */
export function normalizeSerial(serial: string): string {
  return serial.replace(/:/g, '').toUpperCase().replace(/^0+(?=.)/, '');
}

export function emptyResources(): Resources {
  return { policies: [], zones: [], routes: [], rateLimits: [], intel: [], principals: [], trustBundle: [], revoked: [], peerAuthentication: [] };
}

/**
 * The `peerAuthentication` resource: inbound mTLS modes set by the operator at the zone manager
 * (Istio's PeerAuthentication `mtls.mode` + `portLevelMtls`). Each field present replaces the
 * sidecar's local `tls.mode` / `tls.portLevel` as a whole; an absent resource (an empty list on
 * the wire) leaves the local ones in force.
 */
export type InboundMtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';
export interface PeerAuthentication {
  mode?: InboundMtlsMode;
  portLevel?: Record<string, InboundMtlsMode>;
}
const MTLS_MODES = ['STRICT', 'PERMISSIVE', 'DISABLE'];
export const peerAuthenticationSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    mode: { enum: MTLS_MODES },
    // Port keys are range-checked by peerAuthenticationError / compilePortModes, which name the key.
    portLevel: { type: 'object', maxProperties: 1024, additionalProperties: { enum: MTLS_MODES } },
  },
};

/**
 * Why a `peerAuthentication` value is not acceptable ("/field: reason"), or undefined when it is.
 * The manager refuses such a value at the API; the sidecar checks again and NACKs it.
 */
export function peerAuthenticationError(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return '/: must be an object { mode?, portLevel? }';
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) if (k !== 'mode' && k !== 'portLevel') return `/${k}: is not a field (known: mode, portLevel)`;
  if (v.mode !== undefined && !MTLS_MODES.includes(v.mode as string)) return `/mode: must be one of ${MTLS_MODES.map((m) => JSON.stringify(m)).join(', ')}`;
  if (v.portLevel === undefined) return undefined;
  if (v.portLevel === null || typeof v.portLevel !== 'object' || Array.isArray(v.portLevel)) return '/portLevel: must be an object { "<port>": mode }';
  for (const [port, mode] of Object.entries(v.portLevel)) {
    if (!/^[1-9][0-9]{0,4}$/.test(port) || Number(port) > 65535) return `/portLevel/${port}: is not a port: port-level modes are keyed by a port number 1-65535`;
    if (!MTLS_MODES.includes(mode as string)) return `/portLevel/${port}: must be one of ${MTLS_MODES.map((m) => JSON.stringify(m)).join(', ')}`;
  }
  return undefined;
}

/** WebSocket close codes the manager uses (4000–4999 is the application range). */
export const CLOSE = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  TOO_BIG: 1009,
  BAD_MESSAGE: 4000,
  UNAUTHENTICATED: 4001,
  FORBIDDEN: 4003,
  HEARTBEAT_TIMEOUT: 4008,
  REPLACED: 4009,
  SHUTDOWN: 4010,
  /** The operator revoked this sidecar's identity: reconnecting is refused, do not retry. */
  REVOKED: 4011,
} as const;

export interface NodeInfo {
  service: string;
  instance: string;
  version?: string;
}

// ---- sidecar → manager ----------------------------------------------------------------------
export interface HelloMsg {
  type: 'hello';
  protocol: number;
  node: NodeInfo;
  /** Last version the sidecar ACKed (and persisted); the manager resumes from it. 0: none. */
  lastVersion: number;
  /** Resource types of the sidecar's last ACKed version, so the manager can send a delta. */
  lastNonce?: string;
}
export interface AckMsg { type: 'ack'; version: number; nonce: string }
export interface NackMsg { type: 'nack'; version: number; nonce: string; error: string }
export interface TelemetryMsg { type: 'telemetry'; records: unknown[]; dropped?: number }
export interface HeartbeatMsg { type: 'heartbeat'; ts: number }
/**
 * A CSR for a new certificate of the sidecar's own identity. `control`: the certificate this
 * stream authenticates with (the manager records its fingerprint); `workload`: the data plane's
 * mTLS certificate (key kept by the data plane; issued, not recorded).
 */
export interface RenewMsg { type: 'renew'; csr: string; purpose?: 'control' | 'workload' }
export type SidecarMessage = HelloMsg | AckMsg | NackMsg | TelemetryMsg | HeartbeatMsg | RenewMsg;

// ---- manager → sidecar ----------------------------------------------------------------------
export interface SnapshotMsg { type: 'snapshot'; version: number; nonce: string; resources: Resources }
export interface DeltaMsg {
  type: 'delta';
  version: number;
  nonce: string;
  /** The version the delta applies on top of: the sidecar's last ACKed version. */
  baseVersion: number;
  resources: Partial<Resources>;
}
export interface CertMsg { type: 'cert'; cert: string; chain: string[]; expiresAt: number; purpose?: 'control' | 'workload'; trustBundle?: string[] }
export interface ErrorMsg { type: 'error'; code: string; message: string }
export interface TelemetryAckMsg { type: 'telemetryAck'; accepted: number; rejected: number }
export type ManagerMessage = SnapshotMsg | DeltaMsg | HeartbeatMsg | CertMsg | ErrorMsg | TelemetryAckMsg;

// ---- schemas --------------------------------------------------------------------------------
const name = { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' };
const version = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER };
const nonce = { type: 'string', minLength: 1, maxLength: 64 };
const resourceList = { type: ['array', 'object'], maxItems: 100000 };
const resourcesSchema = (required: boolean) => ({
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(RESOURCE_TYPES.map((t) => [t, resourceList])),
  ...(required ? { required: RESOURCE_TYPES.filter((t) => !OPTIONAL_RESOURCE_TYPES.includes(t)) } : {}),
});

const sidecarSchema = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'protocol', 'node', 'lastVersion'],
      properties: {
        type: { const: 'hello' },
        protocol: { type: 'integer' },
        node: {
          type: 'object',
          additionalProperties: false,
          required: ['service', 'instance'],
          properties: { service: name, instance: name, version: { type: 'string', maxLength: 64 } },
        },
        lastVersion: version,
        lastNonce: nonce,
      },
    },
    {
      type: 'object', additionalProperties: false, required: ['type', 'version', 'nonce'],
      properties: { type: { const: 'ack' }, version, nonce },
    },
    {
      type: 'object', additionalProperties: false, required: ['type', 'version', 'nonce', 'error'],
      properties: { type: { const: 'nack' }, version, nonce, error: { type: 'string', maxLength: 4096 } },
    },
    {
      type: 'object', additionalProperties: false, required: ['type', 'records'],
      properties: {
        type: { const: 'telemetry' },
        records: { type: 'array', maxItems: 10000, items: { type: 'object' } },
        dropped: { type: 'integer', minimum: 0 },
      },
    },
    {
      type: 'object', additionalProperties: false, required: ['type', 'ts'],
      properties: { type: { const: 'heartbeat' }, ts: { type: 'number' } },
    },
    {
      type: 'object', additionalProperties: false, required: ['type', 'csr'],
      properties: { type: { const: 'renew' }, csr: { type: 'string', minLength: 1, maxLength: 16384 }, purpose: { enum: ['control', 'workload'] } },
    },
  ],
};

const managerSchema = {
  oneOf: [
    {
      type: 'object', required: ['type', 'version', 'nonce', 'resources'],
      properties: { type: { const: 'snapshot' }, version, nonce, resources: resourcesSchema(true) },
    },
    {
      type: 'object', required: ['type', 'version', 'nonce', 'baseVersion', 'resources'],
      properties: { type: { const: 'delta' }, version, nonce, baseVersion: version, resources: resourcesSchema(false) },
    },
    { type: 'object', required: ['type', 'ts'], properties: { type: { const: 'heartbeat' }, ts: { type: 'number' } } },
    {
      type: 'object', required: ['type', 'cert', 'chain', 'expiresAt'],
      properties: { type: { const: 'cert' }, cert: { type: 'string' }, chain: { type: 'array', items: { type: 'string' } }, expiresAt: { type: 'number' } },
    },
    { type: 'object', required: ['type', 'code', 'message'], properties: { type: { const: 'error' }, code: { type: 'string' }, message: { type: 'string' } } },
    {
      type: 'object', required: ['type', 'accepted', 'rejected'],
      properties: { type: { const: 'telemetryAck' }, accepted: { type: 'integer' }, rejected: { type: 'integer' } },
    },
  ],
};

// The manager is strict about what sidecars send (additionalProperties: false); sidecars accept
// unknown fields from a newer manager, so the two can be upgraded in either order.
const ajv = new Ajv({ allErrors: false, strict: false });

// One validator per frame type, chosen by `type`: a frame is checked against its own schema only
// (not every branch of a oneOf), and the error names that schema's field.
function byType(schema: { oneOf: Array<{ properties: { type: { const: string } } }> }): Map<string, ValidateFunction> {
  return new Map(schema.oneOf.map((branch) => [branch.properties.type.const, ajv.compile(branch)]));
}
const sidecarValidators = byType(sidecarSchema as never);
const managerValidators = byType(managerSchema as never);

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function parseFrame(data: string | Buffer, validators: Map<string, ValidateFunction>, side: string): unknown {
  let msg: unknown;
  try {
    msg = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    throw new ProtocolError(`${side} frame is not JSON`);
  }
  const t = msg !== null && typeof msg === 'object' && !Array.isArray(msg) ? (msg as { type?: unknown }).type : undefined;
  const validate = typeof t === 'string' ? validators.get(t) : undefined;
  if (!validate) {
    throw new ProtocolError(`invalid ${side} frame${typeof t === 'string' ? ` '${t.slice(0, 32)}'` : ''}: ${typeof t === 'string' ? 'unknown type' : '/type is required'}`);
  }
  if (!validate(msg)) {
    const e = validate.errors?.[0];
    throw new ProtocolError(`invalid ${side} frame '${t as string}': ${e ? `${e.instancePath || '/'} ${e.message}` : 'schema mismatch'}`);
  }
  return msg;
}

/** Parse and validate a frame received by the manager; throws ProtocolError. */
export function parseSidecarMessage(data: string | Buffer): SidecarMessage {
  return parseFrame(data, sidecarValidators, 'sidecar') as SidecarMessage;
}

/** Parse and validate a frame received by a sidecar; throws ProtocolError. */
export function parseManagerMessage(data: string | Buffer): ManagerMessage {
  return parseFrame(data, managerValidators, 'manager') as ManagerMessage;
}

export function encode(msg: SidecarMessage | ManagerMessage): string {
  return JSON.stringify(msg);
}

// ---- enrollment (HTTPS, before the sidecar has a certificate) -------------------------------
export interface EnrollRequest {
  csr: string;
  service: string;
  instance: string;
  version?: string;
}
export interface EnrollResponse {
  spiffeId: string;
  cert: string;
  chain: string[];
  trustBundle: string[];
  expiresAt: number;
}

export const enrollRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['csr', 'service', 'instance'],
  properties: { csr: { type: 'string', minLength: 1, maxLength: 16384 }, service: name, instance: name, version: { type: 'string', maxLength: 64 } },
};
const validateEnroll = ajv.compile(enrollRequestSchema);

export function parseEnrollRequest(body: unknown): EnrollRequest {
  if (!validateEnroll(body)) {
    const e = validateEnroll.errors?.[0];
    throw new ProtocolError(`invalid enrollment request: ${e ? `${e.instancePath || '/'} ${e.message}` : 'schema mismatch'}`);
  }
  return body as unknown as EnrollRequest;
}

/** Topics a sidecar receives: mesh-wide, its service, its instance (in merge order). */
/** True for a topic name: `mesh`, `service/<name>` or `instance/<name>`. */
export function isTopic(topic: string): boolean {
  return /^(mesh|service\/[A-Za-z0-9._-]+|instance\/[A-Za-z0-9._-]+)$/.test(topic);
}

export function topicsFor(node: { service: string; instance: string }): string[] {
  return ['mesh', `service/${node.service}`, `instance/${node.instance}`];
}
