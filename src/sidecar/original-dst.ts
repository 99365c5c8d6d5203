import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';

/**
 * Original-destination recovery for intercepted connections.
 *
 * iptables REDIRECT rewrites a connection's destination to the sidecar's listener; the kernel
 * keeps the original one in the conntrack entry, readable with getsockopt(SO_ORIGINAL_DST) (and
 * IP6T_SO_ORIGINAL_DST for IPv6). Node has no getsockopt, so a tiny N-API addon
 * (native/original_dst.c, compiled by node-gyp at install, no prebuilt download) does that one
 * call. When the addon is missing (build failed, non-Linux), every lookup returns null and the
 * listeners fall back to routing by the Host header.
 */

interface Binding {
  /** [address, port] on success, else the errno (ENOENT: no conntrack entry, i.e. not redirected). */
  originalDst(fd: number, ipv6: boolean): [string, number] | number;
}

export interface OriginalDstStatus {
  available: boolean;
  /** Where the addon was loaded from, when available. */
  path?: string;
  /** Why it is unavailable, when not. */
  reason?: string;
}

const ADDON = 'etz_original_dst.node';
let binding: Binding | null | undefined; // undefined: not tried yet
let status: OriginalDstStatus = { available: false, reason: 'not loaded yet' };

function candidates(): string[] {
  // An explicit path (packagers, tests) is the only one tried: what was asked for, or nothing.
  if (process.env.ETZ_ORIGINAL_DST_ADDON) return [process.env.ETZ_ORIGINAL_DST_ADDON];
  const list: string[] = [];
  // Compiled module lives at dist/src/sidecar/; the addon at <package>/build/Release/.
  for (const rel of ['../../../build/Release/', '../../build/Release/']) {
    list.push(fileURLToPath(new URL(rel + ADDON, import.meta.url)));
  }
  return list;
}

/**
 * Load the addon once. Listeners call this at start-up so the (synchronous) dlopen never runs on
 * a request path; getOriginalDst also calls it lazily for callers that did not.
 */
export function loadOriginalDst(): OriginalDstStatus {
  if (binding !== undefined) return status;
  binding = null;
  if (process.platform !== 'linux') {
    status = { available: false, reason: `SO_ORIGINAL_DST is Linux-only (platform ${process.platform})` };
    return status;
  }
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`${path}: missing`);
      continue;
    }
    try {
      const mod = require(path) as Partial<Binding>;
      if (typeof mod.originalDst !== 'function') throw new Error('no originalDst export');
      binding = mod as Binding;
      status = { available: true, path };
      return status;
    } catch (err) {
      tried.push(`${path}: ${(err as Error).message}`);
    }
  }
  status = { available: false, reason: `native addon not available (${tried.join('; ')}); routing by Host header` };
  return status;
}

/** Whether original-destination recovery works in this process, and why not when it does not. */
export function originalDstStatus(): OriginalDstStatus {
  return loadOriginalDst();
}

function unmap(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/**
 * Where an intercepted connection was originally headed (iptables REDIRECT rewrites the
 * destination; SO_ORIGINAL_DST recovers it). Returns null when the socket was not redirected or
 * the mechanism is unavailable, in which case the outbound listener falls back to routing by the
 * Host header.
 */
export function getOriginalDst(socket: Socket): { address: string; port: number } | null {
  if (binding === undefined) loadOriginalDst();
  if (!binding) return null;
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  const local = socket.localAddress;
  if (local === undefined) return null;
  // An IPv4 peer on a dual-stack listener shows up as ::ffff:a.b.c.d; its conntrack entry is
  // IPv4, so ask with SOL_IP. Only a real IPv6 connection uses IP6T_SO_ORIGINAL_DST.
  const localAddress = unmap(local);
  const ipv6 = localAddress.includes(':');
  const r = binding.originalDst(fd, ipv6);
  if (typeof r === 'number') return null;
  const [address, port] = r;
  // A tracked but un-NATed connection reports its own destination: that is "not redirected".
  if (address === localAddress && port === socket.localPort) return null;
  return { address, port };
}
