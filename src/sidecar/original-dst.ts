import type { Socket } from 'node:net';

/**
 * Where an intercepted connection was originally headed (iptables REDIRECT rewrites the
 * destination; SO_ORIGINAL_DST recovers it). Returns null when the socket was not redirected or
 * the mechanism is unavailable, in which case the outbound listener falls back to routing by the
 * Host header.
 */
export function getOriginalDst(_socket: Socket): { address: string; port: number } | null {
  return null;
}
