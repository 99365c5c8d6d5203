import { loadConfig } from '../../config/load.js';
import { sidecarSchema, type SidecarConfig } from '../../config/sidecar-schema.js';
import { Sidecar, type SidecarOptions } from '../sidecar.js';
import { validateResources } from '../chain.js';
import { EXTRA_RESOURCES, FILTERS } from '../filters/index.js';

/**
 * The ingress gateway: the same proxy as the sidecar, without a local application (the role of
 * Istio's ingress gateway). Only the `gateway` listener runs: external HTTP, or HTTPS with a
 * configured certificate, goes through the gateway chain — end-user principal from a verified
 * JWT (a client's own x-etz-principal is replaced), routes, rate limits, policies, the adaptive
 * detector counting each user request once — and on into the mesh by the registry, over the
 * same upstream transport as a sidecar's outbound calls (mTLS when the mesh has it).
 */

export const GATEWAY_ENV_PREFIX = 'ETZ_GATEWAY_';

/** What makes a sidecar config a gateway config: one listener, no application behind it. */
export function asGatewayConfig(input: Record<string, unknown>): Record<string, unknown> {
  const cfg = structuredClone(input);
  cfg.service ??= { name: 'ingress-gateway' };
  cfg.inbound = { ...(cfg.inbound as object | undefined), enabled: false };
  cfg.outbound = { ...(cfg.outbound as object | undefined), enabled: false };
  cfg.gateway = { ...(cfg.gateway as object | undefined), enabled: true };
  return cfg;
}

/** Load a gateway config file (YAML/JSON) with ETZ_GATEWAY_* overrides; ConfigError names file and field. */
export async function loadGatewayConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<SidecarConfig> {
  const gatewaySchema = {
    ...(sidecarSchema as Record<string, unknown>),
    required: [],
  };
  const raw = await loadConfig<Record<string, unknown>>(file, gatewaySchema, { envPrefix: GATEWAY_ENV_PREFIX, env });
  // Resources are checked here too, so an error names the file rather than the process.
  validateResources((raw.resources ?? {}) as Record<string, unknown>, FILTERS, EXTRA_RESOURCES, file ?? '(environment)');
  return asGatewayConfig(raw) as unknown as SidecarConfig;
}

export function startGateway(config: SidecarConfig | Record<string, unknown>, opts: SidecarOptions = {}): Promise<Sidecar> {
  return Sidecar.start(asGatewayConfig(config as Record<string, unknown>), opts);
}
