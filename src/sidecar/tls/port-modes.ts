import type { Socket } from 'node:net';
import { ConfigError } from '../../core/errors.js';
import { getOriginalDst } from '../original-dst.js';
import type { InboundMode } from './options.js';

/**
 * Inbound mTLS mode per workload port (Istio's PeerAuthentication `mtls.mode` plus
 * `portLevelMtls`). Compiled once per config into a map; a connection's mode is one map lookup,
 * decided when it is accepted and before any byte is read, so a STRICT port never parses
 * plaintext HTTP and a DISABLE port never starts a TLS handshake.
 *
 * The workload port is where the client was connecting: the original destination port when
 * iptables redirected the connection to the sidecar, else the local port it reached (the main
 * inbound port or one of `inbound.extraPorts`).
 */

export const INBOUND_MODES: readonly InboundMode[] = ['STRICT', 'PERMISSIVE', 'DISABLE'];

/** `tls.portLevel`: workload port (a decimal string, as YAML/JSON keys are) → mode. */
export type PortLevelConfig = Readonly<Record<string, InboundMode>>;

export interface PortModes {
  /** The workload-wide mode (`tls.mode`). */
  readonly workload: InboundMode;
  /** Overrides; empty when the config has none, so no connection pays for a lookup. */
  readonly byPort: ReadonlyMap<number, InboundMode>;
  /** Some port may speak mTLS: the guard (and an identity) is needed. */
  readonly needsTls: boolean;
}

const PORT = /^[1-9][0-9]{0,4}$/;

/**
 * Validate and compile `tls.portLevel`. Throws ConfigError naming `/tls/portLevel/<key>` for a
 * key that is not a port 1–65535 or a mode that is not one of the three.
 */
export function compilePortModes(workload: InboundMode, portLevel: PortLevelConfig | undefined, source: string, field = '/tls/portLevel'): PortModes {
  const byPort = new Map<number, InboundMode>();
  for (const [key, mode] of Object.entries(portLevel ?? {})) {
    const n = Number(key);
    if (!PORT.test(key) || n > 65535) throw new ConfigError(source, `${field}/${key}`, 'is not a port: port-level modes are keyed by a port number 1-65535');
    if (!INBOUND_MODES.includes(mode)) throw new ConfigError(source, `${field}/${key}`, `must be one of ${INBOUND_MODES.map((m) => JSON.stringify(m)).join(', ')}`);
    // An override equal to the workload mode changes nothing; keeping it would only cost lookups.
    if (mode !== workload) byPort.set(n, mode);
  }
  const needsTls = workload !== 'DISABLE' || [...byPort.values()].some((m) => m !== 'DISABLE');
  return { workload, byPort, needsTls };
}

export interface ConnectionMode {
  mode: InboundMode;
  /** The workload port the mode was chosen for. */
  port: number;
  /** Looked up only when there are overrides; undefined means not looked up. */
  originalDst?: { address: string; port: number } | null;
  /** The modes in force when the connection was accepted (a pushed version may replace them later). */
  modes: PortModes;
}

/** The mode in force for a freshly accepted connection. */
export function modeOfConnection(modes: PortModes, socket: Socket): ConnectionMode {
  if (modes.byPort.size === 0) return { mode: modes.workload, port: socket.localPort ?? 0, modes };
  const originalDst = getOriginalDst(socket);
  const port = originalDst?.port ?? socket.localPort ?? 0;
  return { mode: modes.byPort.get(port) ?? modes.workload, port, originalDst, modes };
}

/**
 * The `port` label of a refusal: the port when the config names it (bounded by the config), else
 * `default` (the workload-wide mode applied). Built per connection only on refusal paths.
 */
export function portLabel(modes: PortModes, port: number): string {
  return modes.byPort.has(port) ? String(port) : 'default';
}
