import { Counter, Gauge, type Registry } from '../core/metrics.js';

export interface IdentityMetrics {
  certExpiry: Gauge<'identity'>;
  /** Inbound refusals also carry `mode` and `port` (a port named in tls.portLevel, else 'default'). */
  handshakeFailures: Counter<'direction' | 'reason' | 'mode' | 'port'>;
  csrRejected: Counter<'reason'>;
  rotations: Counter<'identity' | 'outcome'>;
  handshakes: Counter<'direction' | 'resumed'>;
}

// One set per registry: several listeners and the CA share the same series names.
const byRegistry = new WeakMap<Registry, IdentityMetrics>();

export function identityMetrics(registry: Registry): IdentityMetrics {
  let m = byRegistry.get(registry);
  if (m) return m;
  m = {
    certExpiry: new Gauge({ name: 'etz_cert_expiry_timestamp_seconds', help: 'notAfter of the workload certificate in force, per identity (Unix seconds).', labelNames: ['identity'], registers: [registry] }),
    handshakeFailures: new Counter({ name: 'etz_tls_handshake_failures_total', help: 'TLS connections refused, by direction and reason (inbound: also by mode and configured port).', labelNames: ['direction', 'reason', 'mode', 'port'], registers: [registry] }),
    csrRejected: new Counter({ name: 'etz_csr_rejected_total', help: 'Certificate signing requests refused by the CA, by reason.', labelNames: ['reason'], registers: [registry] }),
    handshakes: new Counter({ name: 'etz_tls_handshakes_total', help: 'Accepted mTLS connections, by direction and whether the TLS session was resumed.', labelNames: ['direction', 'resumed'], registers: [registry] }),
    rotations: new Counter({ name: 'etz_cert_rotations_total', help: 'Workload certificate renewals, by identity and outcome.', labelNames: ['identity', 'outcome'], registers: [registry] }),
  };
  byRegistry.set(registry, m);
  return m;
}
