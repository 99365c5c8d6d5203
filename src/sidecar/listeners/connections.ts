import type { Socket } from 'node:net';
import type { ConnectionInfo, Direction, PeerIdentity } from '../filter.js';
import type { Ctx } from '../context.js';

/**
 * What the listener remembers about each live downstream connection, for connection admission
 * when a new config version comes into force (a revoked peer's keep-alive connection or tunnel
 * must not outlive the policy that allowed it).
 */
export class LiveConnection implements ConnectionInfo {
  readonly direction: Direction;
  readonly remoteAddress: string;
  readonly localPort: number;
  peer?: PeerIdentity = undefined;
  // Bounded by the registry's service count.
  readonly destinations = new Set<string>();
  /** Original destination (outbound interception), looked up once per connection. */
  originalDst: { address: string; port: number } | null | undefined = undefined;
  inflight = 0;

  constructor(direction: Direction, socket: Socket) {
    this.direction = direction;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.localPort = socket.localPort ?? 0;
  }
}

export const kConn = Symbol('etz.connection');

export function connectionOf(socket: Socket | null | undefined): LiveConnection | undefined {
  // IncomingMessage drops its socket reference once the connection is gone.
  return socket == null ? undefined : (socket as Socket & { [kConn]?: LiveConnection })[kConn];
}

export function attachConnection(socket: Socket, conn: LiveConnection): void {
  (socket as Socket & { [kConn]?: LiveConnection })[kConn] = conn;
}

/** The router calls this once a request is allowed upstream. */
export function noteUpstreamUse(ctx: Ctx): void {
  const conn = connectionOf(ctx.req.socket);
  if (conn === undefined) return;
  if (ctx.peer !== undefined && conn.peer === undefined) conn.peer = ctx.peer;
  const d = ctx.destination;
  if (d !== undefined && !conn.destinations.has(d.service)) conn.destinations.add(d.service);
}
