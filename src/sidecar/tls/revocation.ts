import type { Socket } from 'node:net';
import { REVOCATION_EXPIRY_MARGIN_MS, normalizeSerial, type RevokedCert } from '../../protocol/messages.js';

/**
 * The certificates the zone manager revoked (resource `revoked`: [{ serial, notAfter }]), as one
 * Set compiled per config version. The inbound guard and the outbound connector look a peer's
 * serial up once per handshake, and only when the list is non-empty. Connections are remembered
 * with their peer's serial while they are open, so a version that revokes a live peer closes its
 * connections instead of letting a keep-alive outlive the revocation.
 */

export const revokedSchema = {
  type: 'array',
  maxItems: 100000,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['serial', 'notAfter'],
    properties: {
      serial: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[0-9A-Fa-f:]+$' },
      notAfter: { type: 'integer', minimum: 0 },
    },
  },
};

const EMPTY: ReadonlySet<string> = new Set();

/** Validated entries → the Set a version enforces; certificates long expired are left out. */
export function compileRevoked(entries: readonly RevokedCert[] | undefined, now = Date.now()): ReadonlySet<string> {
  if (entries === undefined || entries.length === 0) return EMPTY;
  const out = new Set<string>();
  for (const e of entries) if (e.notAfter + REVOCATION_EXPIRY_MARGIN_MS > now) out.add(normalizeSerial(e.serial));
  return out.size === 0 ? EMPTY : out;
}

export class RevocationList {
  #serials: ReadonlySet<string> = EMPTY;
  // Open mTLS connections and their peer's serial; entries leave on 'close', so the map is
  // bounded by the listener's and pools' connection limits.
  readonly #live = new Map<Socket, string>();
  #generation = 0;

  /**
   * Changes whenever a different list comes into force. TLS clients skip the peer check on a
   * resumed session, so the outbound connector drops its session cache when this changes.
   */
  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#serials.size;
  }

  /** One Set lookup; nothing but a size check while the list is empty. */
  has(serial: string | undefined): boolean {
    return this.#serials.size !== 0 && serial !== undefined && this.#serials.has(normalizeSerial(serial));
  }

  /** Remember an accepted connection's peer serial until the socket closes. */
  track(socket: Socket, serial: string | undefined): void {
    if (serial === undefined || serial === '' || socket.destroyed) return;
    this.#live.set(socket, normalizeSerial(serial));
    socket.once('close', () => this.#live.delete(socket));
  }

  /** Put a compiled list in force; open connections of newly revoked peers are closed. Returns how many. */
  set(serials: ReadonlySet<string>): number {
    if (serials !== this.#serials) this.#generation++;
    this.#serials = serials;
    if (serials.size === 0) return 0;
    let closed = 0;
    for (const [socket, serial] of this.#live) {
      if (!serials.has(serial)) continue;
      this.#live.delete(socket);
      socket.destroy();
      closed++;
    }
    return closed;
  }
}
