import { ConfigError } from '../../core/errors.js';
import type { SidecarConfig } from '../../config/sidecar-schema.js';
import { peerAuthenticationError, type PeerAuthentication } from '../../protocol/messages.js';
import type { InboundMode } from './options.js';
import { compilePortModes, type PortLevelConfig, type PortModes } from './port-modes.js';

/**
 * Inbound mTLS modes pushed by the zone manager (resource `peerAuthentication`), merged over the
 * sidecar's own `tls.mode` / `tls.portLevel`: each field the resource has replaces the local one
 * as a whole, an absent resource leaves the local config in force. Compiled once per config
 * version, before the swap, so a bad value fails the version (NACK) and the previous modes stay.
 */

export { peerAuthenticationSchema } from '../../protocol/messages.js';

export interface LocalInboundModes {
  mode: InboundMode;
  portLevel: PortLevelConfig;
}

/** The modes the sidecar's file (or env) sets; STRICT when it says nothing. */
export function localInboundModes(config: SidecarConfig): LocalInboundModes {
  const t = (config as SidecarConfig & { tls?: Partial<LocalInboundModes> }).tls;
  return { mode: t?.mode ?? 'STRICT', portLevel: t?.portLevel ?? {} };
}

/**
 * The modes in force for a version. `hasIdentity` false (the sidecar runs without mTLS because its
 * file says DISABLE and it has no identity): a value that needs TLS on any port is refused, since
 * it could only be honoured by accepting plaintext where mTLS was asked for.
 */
export function resolvePortModes(local: LocalInboundModes, pushed: unknown, source: string, hasIdentity: boolean): PortModes {
  const field = '/resources/peerAuthentication';
  if (pushed === undefined) return compilePortModes(local.mode, local.portLevel, source);
  const why = peerAuthenticationError(pushed);
  if (why !== undefined) {
    const i = why.indexOf(': ');
    throw new ConfigError(source, `${field}${why.slice(0, i) === '/' ? '' : why.slice(0, i)}`, why.slice(i + 2));
  }
  const p = pushed as PeerAuthentication;
  const modes = compilePortModes(p.mode ?? local.mode, p.portLevel ?? local.portLevel, source, p.portLevel ? `${field}/portLevel` : '/tls/portLevel');
  if (modes.needsTls && !hasIdentity) {
    throw new ConfigError(source, field, 'needs mTLS on some port but this sidecar has no identity (it runs with tls.mode: DISABLE and no certificate); the previous modes stay in force');
  }
  return modes;
}

/** A stable text of what a PortModes enforces, to log only when a version changes it. */
export function describePortModes(m: PortModes): string {
  return [m.workload, ...[...m.byPort].sort((a, b) => a[0] - b[0]).map(([p, mode]) => `${p}:${mode}`)].join(' ');
}
