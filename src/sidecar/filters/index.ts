import type { Schema } from 'ajv';
import type { FilterFactory } from '../filter.js';
import { requestIdFilter } from './request-id.js';
import { accessLogFilter } from './access-log.js';
import { metricsFilter } from './metrics.js';
import { identityFilter } from './identity.js';
import { routerFilter } from './router.js';
import { principalFilter } from '../principal.js';
import { rateLimitFilter } from './rate-limit.js';
import { authorizationFilter } from './authorization.js';
import { networkPolicyFilter } from './network-policy.js';
import { zoneRulesFilter } from './zone-rules.js';
import { threatIntelFilter } from './threat-intel.js';
import { riskScoringFilter } from './risk-scoring.js';
import { routingFilter, principalsSchema } from '../routing/filter.js';
import { revokedSchema } from '../tls/revocation.js';

/**
 * THE filter registry, in chain order. Add a filter with one import and one entry; the chain
 * core never changes. Order (by design): request-id, access-log, metrics, identity, threat-intel,
 * zone-rules, authorization, network-policy, rate-limit, risk-scoring, routing, router. The
 * router is always last: it is the terminal filter.
 */
export const FILTERS: readonly FilterFactory<any>[] = [
  requestIdFilter,
  accessLogFilter,
  metricsFilter,
  identityFilter,
  principalFilter,
  threatIntelFilter,
  zoneRulesFilter,
  authorizationFilter,
  networkPolicyFilter,
  rateLimitFilter,
  riskScoringFilter,
  routingFilter,
  routerFilter,
];

/**
 * Dynamic resource keys consumed outside the filter chain (e.g. `trustBundle` by the TLS layer),
 * with their schemas. A key owned by no filter and absent here is a validation error.
 */
export const EXTRA_RESOURCES: Record<string, Schema> = {
  // Principals flagged by the zone manager; read by the routing filter's adaptive detector.
  principals: principalsSchema,
  // Certificates the zone manager revoked; enforced by the mTLS layer at each handshake.
  revoked: revokedSchema,
};
