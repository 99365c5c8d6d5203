/**
 * The one registry of error codes etz raises. Every code here is listed in docs/errors.md, and
 * test/core/errors.test.ts fails when the two drift apart. Codes are stable: tools match on them,
 * so rename nothing; add new ones.
 *
 * `status` is the HTTP status a local reply uses when this error ends a request (0 when the code
 * never reaches an HTTP client, e.g. a CLI usage error).
 */
export const ERRORS = {
  // -- process / CLI --------------------------------------------------------------------------
  ETZ_ERR_USAGE: { status: 0, summary: 'Command-line usage error (exit status 2).' },
  ETZ_ERR_CONFIG_INVALID: { status: 0, summary: 'A config file failed validation; names the file, field path and reason (exit status 2).' },
  ETZ_ERR_CONFIG_READ: { status: 0, summary: 'A config file could not be read or parsed (exit status 2).' },
  ETZ_ERR_INTERNAL: { status: 500, summary: 'An unexpected internal error; the request is answered and the process keeps running.' },
  ETZ_ERR_DETECTOR_UNKNOWN: { status: 0, summary: 'No built-in anomaly detector has the requested name (exit status 2 from `etz detect`).' },
  ETZ_ERR_DETECT_INPUT: { status: 0, summary: 'A metric series row is malformed (missing or non-numeric value, missing header); names the line (exit status 2).' },

  // -- HTTP data plane ------------------------------------------------------------------------
  ETZ_ERR_BAD_REQUEST: { status: 400, summary: 'Malformed HTTP request (smuggling attempt, invalid header, bad chunk); never forwarded.' },
  ETZ_ERR_HEADERS_TOO_LARGE: { status: 431, summary: 'Request headers exceed the configured size or count limit.' },
  ETZ_ERR_BODY_TOO_LARGE: { status: 413, summary: 'Request body exceeds the configured limit.' },
  ETZ_ERR_NO_ROUTE: { status: 404, summary: 'No service in the registry or route matches the request.' },
  ETZ_ERR_UPSTREAM_UNAVAILABLE: { status: 503, summary: 'The upstream refused the connection or no healthy endpoint is left.' },
  ETZ_ERR_UPSTREAM_TIMEOUT: { status: 504, summary: 'The upstream did not answer within the connect, first-byte or request timeout.' },
  ETZ_ERR_UPSTREAM_RESET: { status: 502, summary: 'The upstream closed or reset the connection before a complete response.' },
  ETZ_ERR_REQUEST_TIMEOUT: { status: 408, summary: 'The client did not send the whole request within the request or idle timeout.' },
  ETZ_ERR_DRAINING: { status: 503, summary: 'The sidecar is shutting down and its drain deadline passed before the upstream answered; sent with connection: close.' },

  // -- identity / mTLS ------------------------------------------------------------------------
  ETZ_ERR_CSR_INVALID: { status: 400, summary: 'A certificate signing request was refused: unparsable, bad signature, weak key, or not exactly one SPIFFE URI SAN.' },
  ETZ_ERR_SPIFFE_ID_INVALID: { status: 400, summary: 'A SPIFFE ID is malformed or not of the form spiffe://<trust-domain>/ns/<ns>/sa/<sa>.' },
  ETZ_ERR_TRUST_DOMAIN_MISMATCH: { status: 403, summary: "An identity or request belongs to a trust domain other than the CA's." },
  ETZ_ERR_CA_EXISTS: { status: 0, summary: 'The target directory already holds a CA; nothing is overwritten without --force.' },
  ETZ_ERR_CA_INVALID: { status: 0, summary: 'CA files are missing, unreadable, or the key does not match the certificate.' },
  ETZ_ERR_CERT_INVALID: { status: 0, summary: 'A certificate is expired, not yet valid, untrusted or carries no valid workload identity.' },
  ETZ_ERR_TLS_MATERIAL: { status: 0, summary: 'TLS certificate, key or trust bundle files are missing or unusable.' },
  ETZ_ERR_UPSTREAM_TLS: { status: 503, summary: 'The mTLS handshake with the upstream sidecar failed (untrusted, expired, wrong SPIFFE ID); never retried in plaintext.' },
  ETZ_ERR_MTLS_REQUIRED: { status: 400, summary: 'Plaintext arrived on an inbound port whose mode is STRICT mTLS.' },
  ETZ_ERR_CERT_RENEWAL: { status: 0, summary: 'Renewing the workload certificate failed; the current one stays in force and renewal is retried.' },
  ETZ_ERR_TLS_REFUSED: { status: 0, summary: 'An inbound TLS connection was refused (no or untrusted client certificate, bad SPIFFE ID, old TLS version); logged with the reason.' },

  // -- transparent interception (etz iptables) --------------------------------------------
  ETZ_ERR_IPTABLES_MISSING: { status: 0, summary: 'The iptables (or ip6tables) command is not installed or not on PATH.' },
  ETZ_ERR_IPTABLES_PERMISSION: { status: 0, summary: 'Changing iptables rules was refused: run as root or with CAP_NET_ADMIN (e.g. an init container with NET_ADMIN).' },
  ETZ_ERR_IPTABLES_FAILED: { status: 0, summary: 'An iptables command failed; the message quotes the command and its error, and the etz rules in force before the run are kept.' },

  // -- zone manager (store, API, control channel) ------------------------------------------
  ETZ_ERR_STORE: { status: 500, summary: "The manager's store could not make a write durable; the change was not applied." },
  ETZ_ERR_STORE_CORRUPT: { status: 0, summary: "The manager's store is damaged beyond a torn last write; the manager refuses to start." },
  ETZ_ERR_UNAUTHENTICATED: { status: 401, summary: 'Manager API or control channel: no valid admin token, bootstrap token or client certificate.' },
  ETZ_ERR_FORBIDDEN: { status: 403, summary: "Manager API or control channel: authenticated, but not allowed to do this (e.g. another service's topic)." },
  ETZ_ERR_IDENTITY_REVOKED: { status: 403, summary: 'The sidecar identity (instance) was revoked by an operator: its control stream, renewal and re-enrollment are refused, and peers refuse mTLS with its certificates until they expire.' },
  ETZ_ERR_NOT_FOUND: { status: 404, summary: 'Manager API: no such resource (policy, zone, token, rollout).' },
  ETZ_ERR_INVALID_INPUT: { status: 400, summary: 'Manager API: the request body failed validation; the reason names the field.' },
  ETZ_ERR_PROTOCOL: { status: 0, summary: 'A control-channel frame was malformed, oversized or out of order; the connection is closed with a code and reason.' },
  ETZ_ERR_ENROLL_FAILED: { status: 0, summary: 'The sidecar could not enroll with the manager (bad or used bootstrap token, CSR refused).' },
  ETZ_ERR_MANAGER_UNREACHABLE: { status: 0, summary: "A CLI command or sidecar could not reach the manager's API." },
  ETZ_ERR_RATE_LIMITED: { status: 429, summary: 'A rate limit (per listener, source identity, end-user principal, client IP or route) is exhausted; Retry-After says when to come back.' },
  ETZ_ERR_JWT_INVALID: { status: 401, summary: 'The end-user token is missing where required, malformed, expired, or not signed by a configured key.' },
  ETZ_ERR_UPSTREAM_OVERFLOW: { status: 503, summary: 'Circuit breaking: the destination\'s connection, pending-request or concurrent-request limit is reached; answered at once.' },

  // -- policy engine --------------------------------------------------------------------------
  ETZ_ERR_POLICY_DENIED: { status: 403, summary: 'An authorization policy denied the request; the reason names the policy and rule (or the default action).' },
  ETZ_ERR_NETWORK_POLICY_DENIED: { status: 403, summary: 'A network policy denied the connection or the outbound request (ingress, egress, or egress outside the mesh).' },
  ETZ_ERR_POLICY_CONFLICT: { status: 409, summary: 'A policy set has conflicting rules (duplicate, shadowed, allow covered by deny, contradiction); refused unless forced.' },
  ETZ_ERR_POLICY_IMPORT: { status: 0, summary: 'An Istio or Kubernetes policy uses a field etz cannot map; the message names the field (exit status 2).' },
  ETZ_ERR_ZONE_DENIED: { status: 403, summary: 'An ephemeral trust zone (containment or isolation) denied the request; the reason names the zone.' },
  ETZ_ERR_THREAT_INTEL_BLOCKED: { status: 403, summary: 'The source IP, peer identity or end-user principal matches a threat-intel indicator whose severity is set to deny.' },
  ETZ_ERR_ZONE_NOT_FOUND: { status: 404, summary: 'No ephemeral trust zone with that id (it may have been dissolved).' },
  ETZ_ERR_ZONE_INVALID: { status: 400, summary: 'A zone operation was refused: unknown type, no members, missing reason, bad TTL, or a duplicate zone.' },
  ETZ_ERR_RECORD_INVALID: { status: 400, summary: 'A telemetry, vulnerability or threat-intel record or feed failed validation; the message names the line and field.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface EtzErrorOptions {
  cause?: unknown;
  /** Extra machine-readable context, logged with the error; never sent to clients. */
  details?: Record<string, unknown>;
}

/** Base class of every error etz raises on purpose. */
export class EtzError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: EtzErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EtzError';
    this.code = code;
    this.status = ERRORS[code].status;
    if (opts.details) this.details = opts.details;
  }
}

/** A config file or environment override that failed to load; the CLI prints it and exits 2. */
export class ConfigError extends EtzError {
  readonly file: string;
  readonly field: string;
  readonly reason: string;

  constructor(file: string, field: string, reason: string, code: ErrorCode = 'ETZ_ERR_CONFIG_INVALID') {
    super(code, `${file}: ${field || '(root)'}: ${reason}`);
    this.name = 'ConfigError';
    this.file = file;
    this.field = field;
    this.reason = reason;
  }
}

/** A bad command line; the CLI prints the message and a pointer to --help, and exits 2. */
export class UsageError extends EtzError {
  constructor(message: string) {
    super('ETZ_ERR_USAGE', message);
    this.name = 'UsageError';
  }
}

export function isEtzError(err: unknown): err is EtzError {
  return err instanceof EtzError;
}
