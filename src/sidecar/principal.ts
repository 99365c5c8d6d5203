import type { CompileEnv, FilterFactory, HttpFilter, LocalReply, RequestContext } from './filter.js';
import { JwtVerifier, jwtSchema, type JwtConfig } from './principal-jwt.js';
import { rawHeader } from './routing/match.js';
import { counter } from './routing/instance-state.js';

/**
 * End-user principal extraction (the `principal` resource): who the human or client behind a
 * request is, for rate limits, adaptive routing, authorization and telemetry. Two sources:
 *
 * - a JWT verified against configured keys (the gateway's job: the token comes from outside);
 * - a header set by an earlier hop (inside the mesh the gateway forwards the verified principal
 *   as `x-etz-principal`). At the gateway with JWT configured, a client-supplied copy of that
 *   header is never trusted: only the token counts.
 *
 * Without the resource the filter reads `x-etz-principal` (costs one header scan).
 */

export interface PrincipalResource {
  /** Header carrying an already-established principal; default x-etz-principal. */
  header?: string;
  /** Trust `header` on this listener (default: yes, except at a gateway that verifies JWTs). */
  trustHeader?: boolean;
  jwt?: JwtConfig;
  /** Pass the principal upstream in `header` (default true), so the next hop sees it. */
  forward?: boolean;
}

export const PRINCIPAL_HEADER = 'x-etz-principal';

export const principalSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    header: { type: 'string', minLength: 1, pattern: '^[A-Za-z0-9-]+$' },
    trustHeader: { type: 'boolean' },
    jwt: jwtSchema,
    forward: { type: 'boolean' },
  },
} as const;

/** Principals are identifiers, not free text: bounded and printable, so they are safe in logs and keys. */
const VALID = /^[\x21-\x7e]{1,256}$/;

class PrincipalFilter implements HttpFilter {
  readonly name = 'principal';

  constructor(
    private readonly header: string,
    private readonly trustHeader: boolean,
    private readonly jwt: { verifier: JwtVerifier; header: string; bearer: boolean; required: boolean } | undefined,
    private readonly forward: boolean,
    private readonly rejected: { inc(): void },
  ) {}

  onRequest(ctx: RequestContext): LocalReply | undefined {
    const raw = ctx.req.rawHeaders;
    if (this.jwt) {
      let token = rawHeader(raw, this.jwt.header);
      if (token !== undefined && this.jwt.bearer) {
        token = token.length > 7 && token.slice(0, 7).toLowerCase() === 'bearer ' ? token.slice(7).trim() : undefined;
      }
      if (token !== undefined && token !== '') {
        const r = this.jwt.verifier.verify(token);
        if (!r.ok) return this.reject(r.reason);
        if (VALID.test(r.principal)) {
          ctx.principal = r.principal;
          if (this.forward) (ctx.upstreamHeaders ??= []).push(this.header, r.principal);
          return undefined;
        }
        return this.reject('principal claim is not a valid identifier');
      }
      if (this.jwt.required) return this.reject('token required');
    }
    if (this.trustHeader) {
      const v = rawHeader(raw, this.header);
      if (v !== undefined && VALID.test(v)) {
        ctx.principal = v;
        // The gateway forwards only what it established: this copy replaces the client's.
        if (this.forward && ctx.direction === 'gateway') (ctx.upstreamHeaders ??= []).push(this.header, v);
      }
    }
    return undefined;
  }

  private reject(reason: string): LocalReply {
    this.rejected.inc();
    return {
      status: 401,
      code: 'ETZ_ERR_JWT_INVALID',
      reason,
      headers: { 'www-authenticate': `Bearer error="invalid_token"` },
    };
  }
}

export function compilePrincipal(config: PrincipalResource | undefined, env: CompileEnv): HttpFilter | null {
  const cfg = config ?? {};
  const header = (cfg.header ?? PRINCIPAL_HEADER).toLowerCase();
  const jwt = cfg.jwt
    ? {
        verifier: new JwtVerifier(cfg.jwt, 'resources', '/principal/jwt'),
        header: (cfg.jwt.header ?? 'authorization').toLowerCase(),
        bearer: (cfg.jwt.header ?? 'authorization').toLowerCase() === 'authorization',
        required: cfg.jwt.required ?? false,
      }
    : undefined;
  const trustHeader = cfg.trustHeader ?? !(env.direction === 'gateway' && jwt !== undefined);
  const rejected = counter(env.metrics, 'etz_principal_rejected_total', 'Requests refused because the end-user token was missing or invalid.', ['direction']).labels(env.direction);
  return new PrincipalFilter(header, trustHeader, jwt, cfg.forward ?? true, rejected);
}

export const principalFilter: FilterFactory<PrincipalResource | undefined> = {
  name: 'principal',
  resource: 'principal',
  schema: principalSchema,
  compile: compilePrincipal,
};
